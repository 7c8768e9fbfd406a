"""rnnlab.load: a saved model stepped one input at a time equals its whole-sequence forward, on
every backend and task; sample and predict through it; and its mistakes are one line."""

import numpy as np
import pytest

import rnnlab
from rnnlab.config import BACKEND_NAMES, CharLMConfig, DenoiseConfig, ForecastConfig
from rnnlab.errors import UserError
from rnnlab.runner import train_run

BACKENDS = list(BACKEND_NAMES)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, text_path):
    """One tiny float64 run of each task (LSTM for charlm: a two-part state)."""
    root = tmp_path_factory.mktemp("model")
    train_run(
        CharLMConfig(
            text=text_path,
            cell="lstm",
            hidden_size=8,
            layers=2,
            seq_len=8,
            batch_size=4,
            max_steps=4,
            eval_every=2,
            dtype="float64",
            sample_length=0,
            eval_max_chars=200,
        ),
        root / "charlm",
        quiet=True,
    )
    train_run(
        DenoiseConfig(
            hidden_size=4,
            steps=4,
            eval_every=2,
            batch_size=8,
            val_sequences=16,
            test_sequences=16,
            dtype="float64",
            backend="numpy",
        ),
        root / "denoise",
        quiet=True,
    )
    train_run(
        ForecastConfig(
            builtin_points=300,
            window=6,
            hidden_size=4,
            epochs=2,
            dtype="float64",
            backend="numpy",
            cell="gru",
            target="returns",
            head="gaussian",
        ),
        root / "forecast",
        quiet=True,
    )
    return root


@pytest.fixture(scope="module")
def text_path(tmp_path_factory):
    from conftest import make_text

    path = tmp_path_factory.mktemp("text") / "t.txt"
    path.write_text(make_text(3000))
    return str(path)


def _sequence(model, rng, B=3, T=5):
    if model.task == "charlm":
        return rng.integers(0, model.spec.input_size, (B, T))
    return rng.standard_normal((B, T, model.spec.input_size))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", ["charlm", "denoise", "forecast"])
def test_step_by_step_equals_the_whole_sequence(runs_dir, task, backend):
    pytest.importorskip(backend) if backend != "numpy" else None
    m = rnnlab.load(runs_dir / task, backend=backend)
    assert m.task == task and m.backend == backend
    rng = np.random.default_rng(0)
    x = _sequence(m, rng)
    warm, _ = m(x[:, :2])  # a non-zero state to start from
    state_seq, y_seq = m(x, warm)
    state = warm
    for t in range(x.shape[1]):
        state, y = m.step(state, x[:, t])
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_seq)[:, t], rtol=1e-9, atol=1e-12)
    flat = [np.asarray(a) for c in state for a in (c if isinstance(c, tuple) else (c,))]
    flat_seq = [np.asarray(a) for c in state_seq for a in (c if isinstance(c, tuple) else (c,))]
    for a, b in zip(flat, flat_seq):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # The whole sequence from zeros equals feeding it from reset().
    _, y0 = m(x)
    _, y1 = m(x, m.reset(x.shape[0]))
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(y1))


def test_every_backend_gives_the_same_outputs(runs_dir):
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    x = np.random.default_rng(1).integers(0, 10, (2, 6))
    outputs = [np.asarray(rnnlab.load(runs_dir / "charlm", backend=b)(x)[1]) for b in BACKENDS]
    for y in outputs[1:]:
        np.testing.assert_allclose(y, outputs[0], rtol=1e-9, atol=1e-12)


def test_sample_and_predict_through_the_model(runs_dir, capsys):
    from rnnlab.cli import main

    m = rnnlab.load(runs_dir / "charlm")
    text = m.sample(30, prime="th", seed=3)
    assert len(text) == 30 and text == m.sample(30, prime="th", seed=3)
    assert m.decode(m.encode("the")) == "the"
    assert (
        main(
            [
                "charlm",
                "sample",
                "--run",
                str(runs_dir / "charlm"),
                "--length",
                "30",
                "--prime",
                "th",
                "--seed",
                "3",
                "--best",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == "th" + text
    f = rnnlab.load(runs_dir / "forecast")
    result = f.predict()
    assert result["interval_80"][0] < result["forecast"] < result["interval_80"][1]
    assert "Model(forecast: gru H=4" in repr(f)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.step(m.reset(2), np.array([[1, 2]])), "expected inputs [B]"),
        (lambda m: m(np.array([1.5, 2.0])[None]), "integer character ids"),
        (lambda m: m(np.array([[0, 999]])), "character ids must be in"),
        (lambda m: m.reset(0), "batch_size must be at least 1"),
        (lambda m: m.predict(), "holds a 'charlm' model: predict needs a forecast or series run"),
    ],
)
def test_mistakes_are_one_line_user_errors(runs_dir, call, match):
    m = rnnlab.load(runs_dir / "charlm")
    with pytest.raises(UserError, match=match.replace("[", r"\[").replace("]", r"\]")):
        call(m)


def test_load_refuses_what_is_not_a_model(tmp_path, runs_dir):
    with pytest.raises(UserError, match="holds no best model"):
        rnnlab.load(tmp_path)
    with pytest.raises(UserError, match="which must be one of"):
        rnnlab.load(runs_dir / "charlm", which="last")
    with pytest.raises(UserError, match="is for the torch backend"):
        rnnlab.load(runs_dir / "denoise", backend="numpy", device="cpu")
    (tmp_path / "best.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="best.json is not valid JSON"):
        rnnlab.load(tmp_path)
    (tmp_path / "best.json").write_text(
        '{"format": "rnnlab.checkpoint", "version": 1, "task": "poetry", "spec": {}, "config": {}}', encoding="utf-8"
    )
    with pytest.raises(UserError, match="best.json names no rnnlab task"):
        rnnlab.load(tmp_path)
