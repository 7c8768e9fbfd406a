"""A run is an object: the runner opens the run directory once (``runs.RunDir``), the loop and the
task's hooks write through it, and it holds the best model in memory, so nothing reads a
checkpoint back from disk while a run trains and tests."""

import ast
from pathlib import Path

import rnnlab
from rnnlab import checkpoint
from rnnlab.config import DenoiseConfig, ForecastConfig
from rnnlab.runner import train_run

SRC = Path(rnnlab.__file__).resolve().parent
CHECKPOINT_FILES = {"save", "load", "load_meta", "exists", "recover"}


def test_only_the_run_directory_module_touches_checkpoint_files():
    """``checkpoint.save/load/load_meta/exists`` are called in ``runs.py`` alone."""
    callers = set()
    for path in SRC.rglob("*.py"):
        if path.name == "checkpoint.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in CHECKPOINT_FILES
                and isinstance(node.value, ast.Name)
                and node.value.id == "checkpoint"
            ):
                callers.add(str(path.relative_to(SRC)))
    assert callers == {"runs.py"}


def count_reads(monkeypatch):
    reads = []
    original = checkpoint.load

    def counting(run_dir, stem="checkpoint"):
        reads.append(stem)
        return original(run_dir, stem)

    monkeypatch.setattr(checkpoint, "load", counting)
    return reads


def test_a_fresh_run_tests_its_best_model_from_memory(tmp_path, monkeypatch):
    reads = count_reads(monkeypatch)
    # lr 0.03, seed 0: the best epoch (4) is not the last (5), so testing the last weights would show
    forecast = ForecastConfig(
        backend="numpy", builtin_points=300, window=6, hidden_size=4, epochs=5, head="gaussian", lr=0.03, seed=0
    )
    summary = train_run(forecast, tmp_path / "fc", quiet=True)
    denoise = DenoiseConfig(backend="numpy", steps=40, eval_every=20, val_sequences=50, test_sequences=200)
    train_run(denoise, tmp_path / "ou", quiet=True)
    assert reads == []  # neither the loop nor the tests read a checkpoint back
    # and what was tested is the best model: its validation RMSE is the one logged at the best epoch
    rows = [r for r in rnnlab.Run(tmp_path / "fc").metrics.to_dict("records")]
    best_row = min(rows, key=lambda r: r["val_loss"])
    assert summary["test"]["step"] == best_row["step"] != rows[-1]["step"]
    assert summary["test"]["val"]["rmse"] == best_row["val_rmse"]


def test_a_resumed_run_reads_its_best_model_once(tmp_path, monkeypatch):
    cfg = ForecastConfig(backend="numpy", builtin_points=300, window=6, hidden_size=4, epochs=2)
    train_run(cfg, tmp_path / "fc", quiet=True)
    reads = count_reads(monkeypatch)
    summary = train_run(cfg, tmp_path / "fc", resume=True, overrides={"epochs": 4}, quiet=True)
    assert sorted(reads) == ["best", "checkpoint"]  # opened once, at the start
    assert summary["test"]["step"] == rnnlab.load(tmp_path / "fc").loaded.meta["step"]
