"""benchmarks/gpu.py's dry run: every code path of the GPU check, on the CPU with tiny sizes (the
GPU part is the script itself, run when a GPU is lent)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_the_gpu_script_runs_every_check_on_the_cpu():
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["tasks"]) == {"charlm", "denoise", "forecast"}
    assert set(result["agreement"]) == {"rnn", "gru", "gru_reset_after", "lstm", "mingru"}
    assert len(result["round_trip"]) == 2 and all(
        r["tensors_identical_through_file"] for r in result["round_trip"].values()
    )
    assert {r["cell"] for r in result["throughput"]} == {"rnn", "gru_reset_after", "lstm", "mingru"}
    assert result["process_group"]["backend"] == "gloo" and result["checks_ok"] is True
