"""Run directories written before tasks were plug-ins and the run an object (rnnlab at 12b9278,
``tests/fixtures/runs_12b9278``) still load to the same outputs and resume to the same metrics."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import rnnlab
from rnnlab.config import from_dict
from rnnlab.runner import train_run
from rnnlab.tasks import TASKS

FIXTURES = Path(__file__).parent / "fixtures" / "runs_12b9278"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
TIMING = {"train_seconds", "chars_per_s", "seqs_per_s", "windows_per_s"}  # the clock's, not the run's


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_an_old_run_loads_and_resumes_as_it_did(task, tmp_path):
    expected = EXPECTED[task]
    model = rnnlab.load(FIXTURES / task, which="best")
    x = np.asarray(expected["inputs"])
    _, y = model(x.astype(np.int64) if task == "charlm" else x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected["best_outputs"]), rtol=1e-12, atol=1e-12)

    run = tmp_path / task
    shutil.copytree(FIXTURES / task, run)
    meta = json.loads((run / "checkpoint.json").read_text())
    override = expected["resume_override"]
    cfg = dataclasses.replace(from_dict(TASKS[task].config_cls, meta["config"]), **override)
    train_run(cfg, run, resume=True, overrides=override, quiet=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(expected["resumed_metrics"])
    for got, want in zip(rows, expected["resumed_metrics"]):
        assert got.keys() == want.keys()
        for key in got.keys() - TIMING:
            if want[key] is None or isinstance(want[key], str):
                assert got[key] == want[key], (task, key)
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12, nan_ok=True), (task, key)
