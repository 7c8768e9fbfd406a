"""Data-parallel training under torchrun: 2 CPU processes (gloo, localhost) against one process
with the combined batch, checkpoints across process counts, and refusals."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

from test_charlm_cli import run_cli  # noqa: E402

from rnnlab import checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, processes=2):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "rnnlab",
        *map(str, args),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def saved(run_dir):
    tensors, meta = checkpoint.load(run_dir)
    return tensors, meta


def assert_same_state(a, b, tol=1e-5):
    (ta, ma), (tb, mb) = saved(a), saved(b)
    assert ma["loop"]["step"] == mb["loop"]["step"]
    assert set(ta) == set(tb)
    for key in ta:  # parameters, optimizer moments and the carry of every batch row
        scale = max(1.0, float(np.abs(tb[key]).max()))
        assert np.abs(ta[key] - tb[key]).max() <= tol * scale, key


def task_args(task, text_file):
    if task == "charlm":
        return [
            "charlm",
            "train",
            "--text",
            text_file,
            "--backend",
            "torch",
            "--cell",
            "lstm",
            "--hidden-size",
            "16",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--eval-every",
            "2",
            "--eval-max-chars",
            "400",
            "--quiet",
        ]
    # 300 points -> 180 training windows of 20: batches of 16 leave a last batch of 4, split 2 + 2
    return [
        "forecast",
        "train",
        "--builtin-points",
        "300",
        "--backend",
        "torch",
        "--batch-size",
        "16",
        "--hidden-size",
        "8",
        "--quiet",
    ]


@pytest.mark.parametrize("task", ["charlm", "forecast"])
def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path, capsys, text_file, task):
    budget = ["--max-steps", "4"] if task == "charlm" else ["--epochs", "2"]
    more = ["--max-steps", "6"] if task == "charlm" else ["--epochs", "3"]
    args = task_args(task, text_file)
    two, one = tmp_path / "two", tmp_path / "one"
    done = torchrun(*args, *budget, "--out", two)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_cli(capsys, *args, *budget, "--out", one)[0] == 0
    assert_same_state(two, one)
    assert len((two / "metrics.jsonl").read_text().splitlines()) == len(
        (one / "metrics.jsonl").read_text().splitlines()
    )
    assert not list(tmp_path.glob("rnnlab-rank*"))
    # The 2-process checkpoint continues in one process, and under torchrun, as the 1-process run does.
    assert run_cli(capsys, *args[:2], "--resume", *more, "--out", one, "--quiet")[0] == 0
    done = torchrun(*args[:2], "--resume", *more, "--out", two, "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(two, one)
    code, _, err = run_cli(
        capsys,
        *args[:2],
        "--resume",
        *["--max-steps", "8"] if task == "charlm" else ["--epochs", "4"],
        "--out",
        two,
        "--quiet",
    )
    assert code == 0, err


def test_refusals_under_torchrun(tmp_path, text_file):
    args = task_args("charlm", text_file)
    done = torchrun(*args[:4], "--backend", "numpy", "--max-steps", "2", "--out", tmp_path / "a")
    # torchrun's agent reports the failed children with its own traceback; ours print one line each.
    assert done.returncode != 0 and "needs --backend torch" in done.stderr and "]: Traceback" not in done.stderr
    done = torchrun(*args, "--batch-size", "1", "--max-steps", "2", "--out", tmp_path / "b")
    assert done.returncode != 0 and "smaller than the 2 torchrun processes" in done.stderr


def test_two_processes_on_prepared_data_equal_one_process_on_the_text(tmp_path, capsys, text_file):
    """Each rank reads its own rows' streams from the prepared files; together they train what
    one process trains from the text."""
    assert run_cli(capsys, "charlm", "prepare", "--text", text_file, "--out", tmp_path / "data", "--quiet")[0] == 0
    args = task_args("charlm", text_file)
    from_data = ["--data", tmp_path / "data", *args[4:]]
    done = torchrun(*args[:2], *from_data, "--max-steps", "4", "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_cli(capsys, *args, "--max-steps", "4", "--out", tmp_path / "one")[0] == 0
    assert_same_state(tmp_path / "two", tmp_path / "one")
