"""A run survives a crash at any instant, a full disk and a stop signal, and continues exactly.

The crash test stops a run at every point where a save changes what is on disk (after each
write, fsync, rename and log append): ``checkpoint.fault_point`` copies the run directory at
that instant, which is what a ``kill -9`` there would leave.  Each copy is then resumed and
must end equal, in every saved field except timings, to the run that never stopped.
"""

import builtins
import errno
import io
import json
import os
import shutil
import signal

import pytest
from conftest import make_text
from runfiles import differences, run_cli, saved_fields

from rnnlab import checkpoint
from rnnlab.tasks import forecast

TINY = [
    "--backend",
    "numpy",
    "--hidden-size",
    "8",
    "--seq-len",
    "8",
    "--batch-size",
    "2",
    "--sample-length",
    "16",
    "--quiet",
]


@pytest.fixture
def small_text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(3000), encoding="utf-8")
    return path


def test_a_crash_at_every_save_point_leaves_a_run_that_resumes_exactly(tmp_path, small_text, capsys, monkeypatch):
    out = tmp_path / "run"
    snapshots = []

    def snapshot(point, path):
        copy = tmp_path / f"crash{len(snapshots):03d}"
        shutil.copytree(out, copy)
        snapshots.append((point, path.name, copy))

    monkeypatch.setattr(checkpoint, "fault_point", snapshot)
    args = ["charlm", "train", "--text", small_text, "--max-steps", "4", "--eval-every", "2", *TINY]
    code, _, err = run_cli(capsys, *args, "--out", out)
    monkeypatch.setattr(checkpoint, "fault_point", checkpoint._no_fault)
    assert code == 0, err
    expected = saved_fields(out)
    assert len(expected["metrics.jsonl"]) == 2 and len(expected["samples.jsonl"]) == 3
    points = {p for p, _, _ in snapshots}
    assert points == {"written", "synced", "renamed", "appended"}
    assert len(snapshots) > 30  # three checkpoints, two best models, logs, config, plots, report

    for point, name, copy in snapshots:
        holds_config = (copy / "config.toml").exists()
        # Before config.toml exists nothing was committed: the same command starts the run anew.
        again = ["--resume"] if holds_config else []
        code, _, err = run_cli(capsys, *args, "--out", copy, *again)
        assert code == 0, (point, name, err)
        assert not differences(saved_fields(copy), expected), f"a crash {point} {name} changed the run"
        assert not list(copy.glob(".*.tmp")) and not list(copy.glob("*.next.safetensors")), (point, name)


def test_a_save_cut_between_commit_and_rename_loads_and_is_completed(tmp_path, small_text, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "charlm", "train", "--text", small_text, "--max-steps", "2", "--eval-every", "2", *TINY, "--out", out
    )
    assert code == 0, err
    tensors, meta = checkpoint.load(out)
    # The state a crash between step 2 (JSON committed) and step 3 (rename) leaves: the JSON names
    # the staged tensors, the old tensor file is still in place, and a temporary file lies about.
    os.replace(out / "checkpoint.safetensors", out / "checkpoint.next.safetensors")
    (out / "checkpoint.safetensors").write_bytes(b"older tensors")
    (out / ".checkpoint.json.abc123.tmp").write_bytes(b"half a file")
    again, meta_again = checkpoint.load(out)
    assert meta_again == meta and again.keys() == tensors.keys()
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--out", out, "--max-steps", "4")
    assert code == 0, err
    assert "completed the interrupted save" in err
    assert not (out / "checkpoint.next.safetensors").exists() and not (out / ".checkpoint.json.abc123.tmp").exists()
    assert checkpoint.load(out)[1]["loop"]["step"] == 4


class _DiskFull(io.RawIOBase):
    """A file that takes half of the first write and then reports a full disk."""

    def __init__(self, real, name):
        self.real, self.name = real, name

    def write(self, data):
        self.real.write(bytes(data)[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, "No space left on device", self.name)

    def close(self):
        self.real.close()

    def fileno(self):
        return self.real.fileno()


def test_a_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, small_text, capsys, monkeypatch):
    out, straight = tmp_path / "run", tmp_path / "straight"
    args = ["charlm", "train", "--text", small_text, "--eval-every", "2", *TINY]
    assert run_cli(capsys, *args, "--max-steps", "6", "--out", straight)[0] == 0
    assert run_cli(capsys, *args, "--max-steps", "2", "--out", out)[0] == 0
    before = saved_fields(out)

    real_open = io.open

    def open_on_a_full_disk(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        # Whatever file the checkpoint's JSON goes through (a temporary one, or checkpoint.json
        # itself if it were ever written in place), its first write fills the disk; the staged
        # tensors before it are written.
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
        if "checkpoint.json" in os.path.basename(name) and ("w" in mode or "a" in mode):
            return _DiskFull(f, name)
        return f

    monkeypatch.setattr(io, "open", open_on_a_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--out", out, "--max-steps", "6")
    monkeypatch.undo()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and "--resume" in lines[0], err
    assert saved_fields(out)["checkpoint.json"] == before["checkpoint.json"]  # the last checkpoint, intact
    assert not list(out.glob(".*.tmp"))
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--out", out, "--max-steps", "6")
    assert code == 0, err
    assert not differences(saved_fields(out), saved_fields(straight))


def test_sigterm_mid_epoch_saves_and_the_forecast_resumes_exactly(tmp_path, capsys, monkeypatch):
    args = [
        "forecast",
        "train",
        "--backend",
        "numpy",
        "--builtin-points",
        "300",
        "--window",
        "8",
        "--hidden-size",
        "8",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--quiet",
    ]
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert run_cli(capsys, *args, "--out", straight)[0] == 0
    epoch_steps = [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    per_epoch = epoch_steps[1]
    assert epoch_steps == [0, per_epoch, 2 * per_epoch, 3 * per_epoch] and per_epoch > 4

    real_next = forecast.ForecastTask.next_batch
    calls = {"n": 0}

    def next_batch_then_sigterm(self):
        calls["n"] += 1
        if calls["n"] == per_epoch + per_epoch // 2:  # inside the second epoch
            os.kill(os.getpid(), signal.SIGTERM)
        return real_next(self)

    monkeypatch.setattr(forecast.ForecastTask, "next_batch", next_batch_then_sigterm)
    code, stdout, err = run_cli(capsys, *args, "--out", out)
    monkeypatch.undo()
    assert code == 143, err
    assert "SIGTERM" in stdout and "--resume" in stdout
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["loop"]["step"] == per_epoch + per_epoch // 2  # stopped inside the second epoch
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, per_epoch]  # no extra evaluation at the stop
    code, _, err = run_cli(capsys, "forecast", "train", "--resume", "--out", out, "--quiet")
    assert code == 0, err
    assert not differences(saved_fields(out), saved_fields(straight))


def test_fifteen_plus_fifteen_steps_equal_thirty_in_every_saved_field(tmp_path, small_text, capsys):
    """Resume restores everything, the sampling RNG included: the last sample and the RNG state
    of a run stopped at step 15 and resumed equal those of a run trained straight to 30."""
    args = ["charlm", "train", "--text", small_text, "--eval-every", "5", *TINY]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert run_cli(capsys, *args, "--max-steps", "30", "--out", straight)[0] == 0
    assert run_cli(capsys, *args, "--max-steps", "15", "--out", halves)[0] == 0
    assert run_cli(capsys, "charlm", "train", "--resume", "--max-steps", "30", "--out", halves, "--quiet")[0] == 0
    expected = saved_fields(straight)
    assert len(expected["samples.jsonl"]) == 7 and len(expected["metrics.jsonl"]) == 6
    assert not differences(saved_fields(halves), expected)


def test_resume_accepts_the_same_text_by_another_path(tmp_path, small_text, capsys, monkeypatch):
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "charlm",
            "train",
            "--text",
            small_text,
            "--max-steps",
            "2",
            "--eval-every",
            "2",
            *TINY,
            "--out",
            out,
        )[0]
        == 0
    )
    monkeypatch.chdir(small_text.parent)
    code, _, err = run_cli(
        capsys, "charlm", "train", "--resume", "--text", small_text.name, "--max-steps", "4", "--out", out
    )
    assert code == 0, err
    other = tmp_path / "other.txt"
    other.write_text("something else entirely", encoding="utf-8")
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--text", other, "--max-steps", "6", "--out", out)
    assert code == 2 and "cannot change --text" in err


def test_a_checkpoint_from_before_the_log_lengths_and_loss_sums_still_loads_and_resumes(tmp_path, small_text, capsys):
    """Checkpoints written before this version lack ``logs`` and the loop's loss sums since the last
    evaluation: they still evaluate, sample and resume."""
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "charlm",
            "train",
            "--text",
            small_text,
            "--max-steps",
            "4",
            "--eval-every",
            "2",
            *TINY,
            "--out",
            out,
        )[0]
        == 0
    )
    meta_path = out / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    del meta["logs"], meta["loop"]["loss_sum_since_eval"], meta["loop"]["steps_since_eval"]
    meta_path.write_text(json.dumps(meta))
    assert run_cli(capsys, "charlm", "eval", "--run", out, "--json")[0] == 0
    assert run_cli(capsys, "charlm", "sample", "--run", out, "--length", "5")[0] == 0
    code, _, err = run_cli(capsys, "charlm", "train", "--resume", "--out", out, "--max-steps", "6")
    assert code == 0, err
    assert json.loads(meta_path.read_text())["loop"]["step"] == 6
