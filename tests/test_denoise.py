"""denoise end to end: data alignment, the shape check, learning, resume, search, and every bad input."""

import json

import numpy as np
import pytest
from test_charlm_cli import assert_user_error, params_of, run_cli

from rnnlab.backends import jax_backend as jb
from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import ModelSpec, init_params
from rnnlab.config import DenoiseConfig
from rnnlab.data.ou import OUProcess, generate_ou_process, kalman
from rnnlab.tasks import denoise

# Small and fast: a few hundred sequences per eval, 2,000 test sequences.
SMALL = ["--batch-size", "32", "--eval-every", "10", "--val-sequences", "500", "--test-sequences", "2000", "--quiet"]


def test_predict_pairs_are_one_step_ahead_and_filter_pairs_aligned():
    clean, noisy = generate_ou_process(5, 8, seed=0)
    x, y = denoise.model_pairs(clean, noisy, "predict", np.float32)
    assert x.shape == y.shape == (5, 7, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], noisy[:, :-1].astype(np.float32))
    np.testing.assert_array_equal(y[..., 0], clean[:, 1:].astype(np.float32))
    x, y = denoise.model_pairs(clean, noisy, "filter", np.float64)
    np.testing.assert_array_equal(x[..., 0], noisy)
    np.testing.assert_array_equal(y[..., 0], clean)
    proc = OUProcess()
    assert denoise.kalman_estimate(noisy, proc, "predict").shape == (5, 7)
    np.testing.assert_array_equal(denoise.kalman_estimate(noisy, proc, "filter"), kalman(noisy, proc)["filter"])


@pytest.mark.parametrize("backend", [nb, jb])
def test_mse_refuses_the_broadcasting_mistake(backend):
    """Targets [B, T] against outputs [B, T, 1] would broadcast to [B, T, T] and train to the mean."""
    spec = ModelSpec("gru", 1, 4, 1, 1, "dense_relu")
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    clean, noisy = generate_ou_process(3, 6, seed=1)
    inputs = noisy[:, :-1, None]
    carry = nb.init_carry(spec, 3, np.float64)
    with pytest.raises(ValueError, match="broadcast"):
        backend.loss_and_grads(params, spec, carry, inputs, clean[:, 1:], "mse")
    value, _, _ = backend.loss_and_grads(params, spec, carry, inputs, clean[:, 1:, None], "mse")
    assert np.isfinite(value)


def test_lag_and_roughness_measures():
    rng = np.random.default_rng(0)
    truth = np.cumsum(rng.standard_normal((2000, 12)), axis=1)
    delayed = np.concatenate([truth[:, :1], truth[:, :-1]], axis=1)  # estimate[t] = truth[t-1]
    assert denoise._lag_steps(truth, truth) == 0.0
    assert denoise._lag_steps(delayed, truth) == pytest.approx(1.0, abs=0.05)
    assert denoise._roughness(np.ones((3, 5))) == 0.0
    clean = np.concatenate([truth[:, :1], truth], axis=1)
    on_time = truth + 0.1 * rng.standard_normal(truth.shape)
    numbers, text = denoise.compare(clean, clean + rng.standard_normal(clean.shape), delayed, on_time, "predict")
    assert numbers["model_lag_steps"] == pytest.approx(1.0, abs=0.05)
    assert numbers["kalman_lag_steps"] == 0.0
    assert numbers["model_rmse"] > numbers["kalman_rmse"]
    assert "It lags" in text and "x[t+1] from y[0..t]" in text and "further from" in text


def test_train_learns_and_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys,
        "denoise",
        "train",
        "--backend",
        "numpy",
        "--out",
        out,
        "--steps",
        "300",
        "--lr",
        "0.01",
        "--schedule",
        "constant",
        *SMALL,
    )
    assert code == 0, err
    for name in (
        "config.toml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "checkpoint.json",
        "best.safetensors",
        "best.json",
        "test.json",
        "loss.png",
        "traces.png",
    ):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 301, 10))
    assert rows[-1]["val_mse_ratio_to_kalman"] < rows[0]["val_mse_ratio_to_kalman"]
    test = json.loads((out / "test.json").read_text())
    assert test["test_sequences"] == 2000 and test["model"] == "best"
    # Learned to denoise: well below "the latest observation is the estimate", near the Kalman optimum.
    assert test["model_mse"] < 0.6 * test["comparison"]["noisy_rmse"] ** 2
    assert 0.9 < test["mse_ratio_to_kalman"] < 1.15
    assert test["mse_ratio_to_kalman"] == pytest.approx(test["model_mse"] / test["kalman_mse"])
    assert test["kalman_smoother_mse"] < test["kalman_filter_mse"] < test["kalman_predict_mse"]
    assert "mse_ratio_to_kalman" in stdout and "smoother than the noisy input" in stdout

    code, ev, _ = run_cli(capsys, "denoise", "eval", "--run", out, "--best", "--sequences", "3000", "--json")
    result = json.loads(ev)
    assert code == 0 and result["test_sequences"] == 3000 and result["step"] == test["step"]
    assert result["mse_ratio_to_kalman"] == pytest.approx(test["mse_ratio_to_kalman"], abs=0.05)


def test_default_test_set_is_100k_sequences():
    assert DenoiseConfig().test_sequences >= 100_000


@pytest.mark.parametrize("backend", ["numpy", "jax", "torch"])
def test_resume_is_bit_exact_and_seeded(tmp_path, capsys, backend):
    """Stopped early by its time budget, then resumed, a cosine run ends where a straight run does."""
    common = ["denoise", "train", "--backend", backend, "--hidden-size", "6", "--seq-len", "6", "--steps", "30", *SMALL]
    straight, again, split = tmp_path / "straight", tmp_path / "again", tmp_path / "split"
    assert run_cli(capsys, *common, "--out", straight)[0] == 0
    assert run_cli(capsys, *common, "--out", again)[0] == 0
    assert run_cli(capsys, *common, "--out", split, "--max-minutes", "1e-5")[0] == 0
    assert 0 < json.loads((split / "checkpoint.json").read_text())["loop"]["step"] < 30
    assert run_cli(capsys, "denoise", "train", "--resume", "--out", split, "--max-minutes", "0", "--quiet")[0] == 0
    a, b, c = params_of(straight), params_of(again), params_of(split)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # same seed, same run
        np.testing.assert_array_equal(a[k], c[k], err_msg=k)  # stopped + resumed == straight
    assert (
        json.loads((split / "test.json").read_text())["model_mse"]
        == json.loads((straight / "test.json").read_text())["model_mse"]
    )


def test_resume_with_a_new_cosine_horizon_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "denoise", "train", "--backend", "numpy", "--steps", "10", "--out", out, *SMALL)[0] == 0
    code, _, err = run_cli(capsys, "denoise", "train", "--resume", "--out", out, "--steps", "20", "--quiet")
    assert code == 0 and "cosine" in err and "10 to 20" in err
    assert json.loads((out / "checkpoint.json").read_text())["loop"]["step"] == 20


def test_filter_target_and_lstm(tmp_path, capsys):
    out = tmp_path / "filter"
    code, _, err = run_cli(
        capsys,
        "denoise",
        "train",
        "--backend",
        "numpy",
        "--target",
        "filter",
        "--cell",
        "lstm",
        "--steps",
        "20",
        "--out",
        out,
        *SMALL,
    )
    assert code == 0, err
    test = json.loads((out / "test.json").read_text())
    assert test["target"] == "filter" and test["kalman_mse"] == pytest.approx(test["kalman_filter_mse"])


def test_search_runs_every_rate_and_names_the_best(tmp_path, capsys):
    out = tmp_path / "search"
    code, stdout, err = run_cli(
        capsys,
        "denoise",
        "search",
        "--backend",
        "numpy",
        "--lrs",
        "1e-4,1e-2,1e3",
        "--optimizer",
        "sgd",
        "--clip",
        "none",
        "--steps",
        "40",
        "--out",
        out,
        *SMALL,
    )
    assert code == 0, err
    result = json.loads((out / "search.json").read_text())
    status = {r["lr"]: r["status"] for r in result["runs"]}
    assert status == {1e-4: "ok", 1e-2: "ok", 1e3: "diverged"}
    assert result["best_lr"] == 1e-2
    assert "Best learning rate: 0.01" in stdout and (out / "lr_search.png").exists()
    assert (out / "lr_0.0001" / "test.json").exists()
    assert run_cli(capsys, "denoise", "search", "--lrs", "1e-3", "--out", out, "--quiet")[0] == 2  # no overwrite


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    line = assert_user_error(
        capsys,
        "denoise",
        "train",
        "--backend",
        "numpy",
        "--optimizer",
        "sgd",
        "--lr",
        "1e3",
        "--clip",
        "none",
        "--steps",
        "200",
        "--out",
        out,
        *SMALL,
        match="at step",
    )
    assert "last good checkpoint" in line
    meta = json.loads((out / "checkpoint.json").read_text())
    step = int(line.split("at step ")[1].split(";")[0])
    assert meta["loop"]["step"] < step
    assert all(np.isfinite(v).all() for v in params_of(out).values())


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--tau", "0"], "--tau"),
        (["--tau", "-2"], "--tau"),
        (["--dt", "0"], "--dt"),
        (["--sigma", "-1"], "--sigma"),
        (["--noise-var", "0"], "--noise-var"),
        (["--hidden-size", "0"], "--hidden-size"),
        (["--steps", "0"], "--steps"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-1e-3"], "--lr"),
        (["--dt", "2", "--tau", "2"], "unstable"),
        (["--dt", "3"], "unstable"),
        (["--seq-len", "1"], "--seq-len"),
        (["--batch-size", "0"], "--batch-size"),
        (["--tau", "nan"], "--tau"),
        (["--backend", "tf"], "--backend"),
        (["--lrs", "1e-3,x"], "--lrs"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, flags, match):
    verb = "search" if "--lrs" in flags else "train"
    assert_user_error(capsys, "denoise", verb, "--out", tmp_path / "bad", *flags, match=match)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("tau", -1.0, "--tau"),
        ("dt", 5.0, "unstable"),
        ("seq_len", 1, "--seq-len"),
        ("noise_var", 0.0, "--noise-var"),
        ("nonsense", 1, "unknown key"),
    ],
)
def test_bad_config_file_is_one_line(tmp_path, capsys, key, value, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"{key} = {value}\n")
    assert_user_error(capsys, "denoise", "train", "--config", cfg, "--out", tmp_path / "run", match=match)


def test_config_file_reproduces_a_run(tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--backend", "numpy", "--hidden-size", "5", "--steps", "12", "--tau", "3", *SMALL]
    assert run_cli(capsys, "denoise", "train", "--out", first, *common)[0] == 0
    second = tmp_path / "second"
    assert run_cli(capsys, "denoise", "train", "--config", first / "config.toml", "--out", second, "--quiet")[0] == 0
    a, b = params_of(first), params_of(second)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_refuses_a_model_change_and_a_charlm_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "denoise", "train", "--backend", "numpy", "--steps", "5", "--out", out, *SMALL)[0] == 0
    assert_user_error(
        capsys, "denoise", "train", "--resume", "--out", out, "--hidden-size", "20", match="cannot change --hidden-size"
    )
    assert_user_error(capsys, "charlm", "sample", "--run", out, match="not charlm")
    assert_user_error(capsys, "denoise", "train", "--backend", "numpy", "--out", out, match="already holds a run")
