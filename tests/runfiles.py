"""Helpers for tests that compare run directories: every saved field except timings."""

import json
from pathlib import Path

from safetensors.numpy import load_file

from rnnlab.cli import main

# Fields that measure time or the machine, not the run: the only ones allowed to differ
# between a run that stopped and resumed and one that never stopped.
TIMING_KEYS = {
    "train_seconds",
    "wall_seconds",
    "machine",
    "chars_per_s",
    "windows_per_s",
    "sequences_per_s",
    # the hash of the tensor file's bytes: the tensors themselves are compared, and
    # safetensors may order its header differently from one save to the next
    "tensors_sha256",
    # byte lengths of the logs, which hold timings
    "logs",
}


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def saved_fields(run_dir) -> dict:
    """Everything a run saved that must not depend on whether it stopped on the way: tensors
    (bytes), checkpoint and best JSON, config, metrics rows, samples, test results."""
    run_dir = Path(run_dir)
    out = {}
    for stem in ("checkpoint", "best"):
        if (run_dir / f"{stem}.json").exists():
            out[f"{stem}.json"] = _without_timings(json.loads((run_dir / f"{stem}.json").read_text()))
            out[f"{stem}.safetensors"] = {
                k: (v.dtype.str, v.shape, v.tobytes())
                for k, v in load_file(str(run_dir / f"{stem}.safetensors")).items()
            }
    for name in ("metrics.jsonl", "samples.jsonl"):
        if (run_dir / name).exists():
            out[name] = [_without_timings(json.loads(line)) for line in (run_dir / name).read_text().splitlines()]
    for name in ("config.toml",):
        if (run_dir / name).exists():
            out[name] = (run_dir / name).read_text()
    if (run_dir / "test.json").exists():
        out["test.json"] = _without_timings(json.loads((run_dir / "test.json").read_text()))
    return out


def tree_bytes(directory) -> dict:
    """Every file under ``directory`` (relative path -> bytes), to prove nothing changed."""
    directory = Path(directory)
    # The lock file included: a refused command puts back the record of the run's last writer.
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def differences(a, b, path: str = "") -> list[str]:
    """Paths at which two ``saved_fields`` results differ (empty when equal), for assertion messages."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:80]} != {str(b)[:80]}"]
