"""The whole matrix, task x backend x cell, from real run directories: a checkpoint written on
NumPy (float64) loads on JAX and torch; on a batch drawn by the task itself, forward outputs,
gradients and one optimizer step (continuing the saved optimizer state) equal NumPy's; and
resuming the run on another backend ends where resuming it on NumPy does."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import make_text
from test_backends_equal import DISTINCT_CELLS

from rnnlab import checkpoint, runs
from rnnlab.backends import get_backend
from rnnlab.config import BACKEND_NAMES, CharLMConfig, DenoiseConfig, ForecastConfig, SeriesConfig
from rnnlab.data.table import builtin_frame
from rnnlab.runner import train_run
from rnnlab.tasks import charlm, denoise, forecast, series

OTHER_BACKENDS = [name for name in BACKEND_NAMES if name != "numpy"]  # the reference is NumPy
TASKS = ["charlm", "denoise", "forecast", "series"]
TOL = 1e-9


def rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(make_text(4000), encoding="utf-8")
    builtin_frame(160).to_csv(path.with_name("table.csv"), index=False)  # the series task's, beside it
    return str(path)


def config_of(task: str, cell: str, corpus: str):
    # weight_decay > 0 and adam_beta2 != 0.999: every backend's step must decay the weight matrices alike
    # and use the same Adam (and resume both); ema_decay: every backend continues the saved average.
    common = dict(
        cell=cell,
        hidden_size=5,
        layers=2,
        dtype="float64",
        backend="numpy",
        seed=3,
        weight_decay=0.05,
        adam_beta2=0.99,
        ema_decay=0.7,
    )
    if task == "charlm":
        return CharLMConfig(
            text=corpus,
            seq_len=6,
            batch_size=3,
            max_steps=2,
            eval_every=2,
            eval_max_chars=300,
            sample_length=5,
            optimizer="adagrad",
            clip="value",
            loss_reduction="sum",
            **common,
        )
    if task == "denoise":
        return DenoiseConfig(
            seq_len=6, batch_size=8, steps=4, eval_every=2, val_sequences=20, test_sequences=20, **common
        )
    if task == "series":  # MAE: every backend's gradient of |x| alike; covariates read beside the target
        table = str(Path(corpus).with_name("table.csv"))
        return SeriesConfig(
            csv=table,
            targets="load,demand",
            lookback=8,
            horizon=4,
            segment=4,
            season=4,
            batch_size=6,
            epochs=1,
            **common,
        )
    return ForecastConfig(
        builtin_points=120, window=6, batch_size=16, epochs=1, target="returns", loss_steps="all", **common
    )


LONGER = {"charlm": {"max_steps": 4}, "denoise": {"steps": 8}, "forecast": {"epochs": 2}, "series": {"epochs": 2}}


def loss_of(cfg):
    if isinstance(cfg, CharLMConfig):
        return "cross_entropy", cfg.loss_reduction
    return getattr(cfg, "loss", "mse"), "mean"


def task_batch(task: str, cfg):
    """A batch the task itself draws (so inputs and targets have the task's real shapes)."""
    if task == "charlm":
        from rnnlab.data.text import read_text

        return charlm.CharLMTask(cfg, read_text(cfg.text)).next_batch()[:2]
    if task == "denoise":
        return denoise.DenoiseTask(cfg).next_batch()[:2]
    if task == "series":
        return series.SeriesTask(cfg, series.read_table(cfg)).next_batch()[:2]
    return forecast.ForecastTask(cfg, forecast.load_series(cfg)).next_batch()[:2]


@pytest.fixture(scope="module")
def numpy_runs(tmp_path_factory, corpus):
    """One short float64 NumPy run per task x cell, made once."""
    root = tmp_path_factory.mktemp("matrix")
    made = {}
    for task in TASKS:
        for cell in DISTINCT_CELLS:
            out = root / f"{task}-{cell}"
            train_run(config_of(task, cell, corpus), out, quiet=True)
            made[task, cell] = out
    return made


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell", DISTINCT_CELLS)
@pytest.mark.parametrize("task", TASKS)
def test_checkpoint_loads_and_every_computation_agrees(numpy_runs, corpus, task, cell, backend):
    pytest.importorskip(backend)
    out = numpy_runs[task, cell]
    saved = runs.resume_run(out, task, type(config_of(task, cell, corpus)), {}, set())
    cfg, spec = saved.cfg, saved.spec
    inputs, targets = task_batch(task, cfg)
    loss, reduction = loss_of(cfg)
    carry = saved.state.carry if task == "charlm" else get_backend("numpy").init_carry(spec, len(inputs), np.float64)

    # Forward and gradients from the loaded parameters.
    np_mod, other = get_backend("numpy"), get_backend(backend)
    y_np, _ = np_mod.forward(saved.params, spec, carry, inputs)
    y_o, _ = other.forward(saved.params, spec, carry, inputs)
    assert rel(y_o, y_np) < TOL
    v_np, g_np, _ = np_mod.loss_and_grads(saved.params, spec, carry, inputs, targets, loss, reduction)
    v_o, g_o, _ = other.loss_and_grads(saved.params, spec, carry, inputs, targets, loss, reduction)
    assert v_o == pytest.approx(v_np, rel=1e-12)
    for k in g_np:
        assert rel(g_o[k], g_np[k]) < TOL, k

    # One optimizer step each, both continuing the optimizer state saved in the checkpoint.
    trainers = {}
    for name in ("numpy", backend):
        again = runs.resume_run(out, task, type(cfg), {}, set())
        trainers[name] = runs.make_trainer(
            dataclasses.replace(cfg, backend=name), spec, again.params, again.optimizer, loss, reduction
        )
        trainers[name].train_step(carry, inputs, targets, 0.01)
    p_np, p_o = trainers["numpy"].params, trainers[backend].params
    for k in p_np:
        assert rel(p_o[k], p_np[k]) < TOL, k
    s_np, s_o = trainers["numpy"].state_tensors(), trainers[backend].state_tensors()
    for k in s_np:
        assert rel(s_o[k], s_np[k]) < TOL, k


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("task", TASKS)
def test_resume_on_another_backend_ends_where_numpy_does(numpy_runs, tmp_path, corpus, task, backend):
    pytest.importorskip(backend)
    import shutil

    ends = {}
    for name in ("numpy", backend):
        copy = tmp_path / name
        shutil.copytree(numpy_runs[task, "lstm"], copy)
        train_run(
            config_of(task, "lstm", corpus), copy, resume=True, quiet=True, overrides={"backend": name, **LONGER[task]}
        )
        tensors, meta = checkpoint.load(copy)
        assert meta["backend"] == name
        ends[name] = {f"params/{k}": v for k, v in checkpoint.group(tensors, "params").items()}
        ends[name].update({f"average/{k}": v for k, v in checkpoint.group(tensors, "average").items()})
    assert len(ends["numpy"]) == 2 * len(checkpoint.group(tensors, "params"))
    for k in ends["numpy"]:
        assert rel(ends[backend][k], ends["numpy"][k]) < 1e-8, k


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_cli_sample_eval_and_predict_on_another_backend(numpy_runs, capsys, backend):
    """What a user types: the same run, --backend chosen at load time, the same answers."""
    import json

    from test_charlm_cli import run_cli

    pytest.importorskip(backend)
    lm = numpy_runs["charlm", "gru"]
    outputs = {}
    for name in ("numpy", backend):
        code, text, err = run_cli(
            capsys,
            "charlm",
            "sample",
            "--run",
            lm,
            "--length",
            "40",
            "--temperature",
            "0.7",
            "--seed",
            "5",
            "--backend",
            name,
        )
        assert code == 0, err
        code, ev, err = run_cli(capsys, "charlm", "eval", "--run", lm, "--json", "--backend", name)
        assert code == 0, err
        code, pred, err = run_cli(
            capsys, "forecast", "predict", "--run", numpy_runs["forecast", "lstm"], "--json", "--backend", name
        )
        assert code == 0, err
        outputs[name] = (text, json.loads(ev)["nats_per_char"], json.loads(pred)["forecast"])
    assert outputs[backend][0] == outputs["numpy"][0]
    assert outputs[backend][1] == pytest.approx(outputs["numpy"][1], rel=1e-9)
    assert outputs[backend][2] == pytest.approx(outputs["numpy"][2], rel=1e-9)
