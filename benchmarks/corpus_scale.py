"""Prepared corpora at growing sizes: does training stay flat while the corpus grows?

For generated texts of ``--sizes`` megabytes (default 1, 10, 100, 1000), each written into a
temporary directory and removed afterwards, this measures in fresh processes:

* ``prepare``: wall seconds and peak resident memory of ``rnnlab charlm prepare``;
* ``first_step``: wall seconds of ``charlm train --data DIR --max-steps 1 --val-chars 1000``
  (process start, manifest check, maps, model, one step, a 1,000-character evaluation), the file
  cache warm from the preparation;
* ``train``: peak resident memory and chars/s of ``--max-steps 200`` on the prepared data, and
  for texts up to ``--in-memory-up-to`` MB the same run from ``--text`` for comparison.

Peak memory is the kernel's high-water mark of the process's resident set (``wait4``'s
``ru_maxrss``).  Pages of a memory map would count once touched; training reads the prepared
ids with positioned reads instead, so only what a step reads is resident.

Targets: training memory and time to the first step flat from 1 MB to 1 GB (within 10%);
preparation time linear in the size with bounded memory; chars/s within noise of the
in-memory path.

    python benchmarks/corpus_scale.py [--sizes 1,10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN = [
    "--backend",
    "numpy",
    "--hidden-size",
    "128",
    "--seq-len",
    "64",
    "--batch-size",
    "32",
    "--sample-length",
    "0",
    "--quiet",
]


def write_text(path: Path, megabytes: int, seed: int = 0) -> None:
    """``megabytes`` MB of word-like ASCII text: one random 1 MB block, rotated for each MB."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     \n.,ETAOINS", dtype=np.uint8)
    block = letters[rng.integers(0, len(letters), 1 << 20)].tobytes()
    with open(path, "wb") as f:
        for i in range(megabytes):
            shift = (i * 7919) % len(block)
            f.write(block[shift:] + block[:shift])


def measured(args: list[str]) -> dict:
    """Run ``python -m rnnlab ARGS``; its wall seconds and peak resident memory (MB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "rnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rnnlab {' '.join(args)} failed:\n{out}\n{err}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def chars_per_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r.get("chars_per_s") or 0 for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="megabytes, comma-separated")
    parser.add_argument("--steps", type=int, default=200, help="training steps of the throughput run")
    parser.add_argument("--in-memory-up-to", type=int, default=10, help="also train from --text up to this size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-corpus-scale-") as tmp:
        tmp = Path(tmp)
        for mb in sizes:
            text, data = tmp / f"text_{mb}.txt", tmp / f"data_{mb}"
            write_text(text, mb)
            row = {
                "megabytes": mb,
                "prepare": measured(["charlm", "prepare", "--text", str(text), "--out", str(data), "--quiet"]),
            }
            row["first_step"] = measured(
                [
                    "charlm",
                    "train",
                    "--data",
                    str(data),
                    "--max-steps",
                    "1",
                    "--val-chars",
                    "1000",
                    "--eval-every",
                    "1",
                    "--out",
                    str(tmp / f"first_{mb}"),
                    *TRAIN,
                ]
            )
            steps = ["--max-steps", str(args.steps), "--eval-every", str(args.steps), "--val-chars", "20000"]
            row["train"] = measured(
                ["charlm", "train", "--data", str(data), *steps, "--out", str(tmp / f"run_{mb}"), *TRAIN]
            )
            row["train"]["chars_per_s"] = round(chars_per_s(tmp / f"run_{mb}"))
            if mb <= args.in_memory_up_to:
                row["train_from_text"] = measured(
                    ["charlm", "train", "--text", str(text), *steps, "--out", str(tmp / f"text_run_{mb}"), *TRAIN]
                )
                row["train_from_text"]["chars_per_s"] = round(chars_per_s(tmp / f"text_run_{mb}"))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            for path in (text, data, tmp / f"first_{mb}", tmp / f"run_{mb}", tmp / f"text_run_{mb}"):
                subprocess.run(["rm", "-rf", str(path)], check=True)
    first, last = rows[0], rows[-1]

    def spread(key, field):
        return round(last[key][field] / first[key][field] - 1, 3)

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "memory_note": "peak resident set of each process (ru_maxrss); training reads the prepared ids "
        "with pread, so file pages sit in the page cache, not in the resident set",
        "rows": rows,
        "train_memory_growth": spread("train", "peak_rss_mb"),
        "first_step_time_growth": spread("first_step", "seconds"),
        "prepare_seconds_per_mb": [round(r["prepare"]["seconds"] / r["megabytes"], 3) for r in rows],
        "prepare_peak_rss_mb": [r["prepare"]["peak_rss_mb"] for r in rows],
    }
    result["targets_met"] = abs(result["train_memory_growth"]) <= 0.10 and abs(result["first_step_time_growth"]) <= 0.10
    print(json.dumps(result))


if __name__ == "__main__":
    main()
