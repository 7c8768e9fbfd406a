"""Each task at its default sizes on each backend, on a quiet machine and beside busy jobs: which
backend and how many threads a user's first run should get.

A user's first run is ``rnnlab TASK train`` with the defaults, often on a laptop that is doing
other things.  For each task this times that command (wall seconds, Python start and imports
included, as the user waits for them) with a short budget, on numpy, jax, torch with its default
thread count and torch with one intra-op thread (``RNNLAB_THREADS=1``), first quiet, then with
``--load`` busy processes (pure-Python loops, one core each) running beside it.  Each run also
reports its own training seconds, from which the script projects the default budget's run (the
short run's start-up and evaluation plus its training time scaled to the default step count).  The variants run
interleaved, best of ``--repeats``, so a change in the machine's speed hits all alike.

    python benchmarks/task_defaults.py [--tasks charlm,denoise,forecast,series] [--load 2] [--repeats 1]

Prints a markdown table on stderr and one JSON object on stdout.
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

# A short budget per task (the defaults otherwise): long enough that the step rate, not the start,
# dominates the bigger tasks; the forecast one is the issue's own (--epochs 5).
BUDGETS = {
    "charlm": ["--max-steps", "60", "--eval-every", "60", "--eval-max-chars", "20000"],
    "denoise": ["--steps", "400", "--eval-every", "400"],
    "forecast": ["--epochs", "5"],
    "series": ["--epochs", "1"],
}
# How many times longer the default budget is (charlm --max-steps 1000, denoise --steps 4000,
# forecast --epochs 50, series --epochs 10): the projected default run trains that much longer.
DEFAULT_SCALE = {"charlm": 1000 / 60, "denoise": 10, "forecast": 10, "series": 10}
VARIANTS = {  # name -> (backend, extra environment)
    "numpy": ("numpy", {}),
    "numpy, 1 thread": ("numpy", {"RNNLAB_THREADS": "1"}),  # no batch split
    "jax": ("jax", {}),
    "torch": ("torch", {}),
    "torch, 1 thread": ("torch", {"RNNLAB_THREADS": "1"}),
}


def time_run(task: str, backend: str, env: dict, out: str) -> dict:
    """``rnnlab TASK train`` with the task's budget on ``backend``: wall seconds, and the training
    seconds and steps the run saved (the rest is Python's start, imports, compilation, evaluation)."""
    cmd = [sys.executable, "-m", "rnnlab", task, "train", "--backend", backend, "--out", out, "--force", "--quiet"]
    full_env = {k: v for k, v in os.environ.items() if k not in ("RNNLAB_THREADS", "OMP_NUM_THREADS")} | env
    started = time.perf_counter()
    done = subprocess.run(cmd + BUDGETS[task], env=full_env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    with open(f"{out}/checkpoint.json") as f:
        loop = json.load(f)["loop"]
    train = loop["train_seconds"]
    return {
        "wall_seconds": round(seconds, 2),
        "train_seconds": round(train, 2),
        "steps": loop["step"],
        "default_run_seconds": round(seconds - train + train * DEFAULT_SCALE[task], 1),
    }


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="charlm,denoise,forecast,series")
    parser.add_argument("--load", type=int, default=2, help="busy processes beside the loaded runs (0: quiet only)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--variants", default=";".join(VARIANTS), help="semicolon-separated, of: " + "; ".join(VARIANTS)
    )
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    variants = args.variants.split(";")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ["quiet"] + ([f"{args.load} busy processes"] if args.load else []):
            load = busy_processes(args.load) if condition != "quiet" else []
            try:
                for task in tasks:
                    for _ in range(args.repeats):
                        for name in variants:
                            backend, env = VARIANTS[name]
                            row = time_run(task, backend, env, f"{tmp}/{task}-{backend}")
                            key = (condition, task, name)
                            if key not in results or row["wall_seconds"] < results[key]["wall_seconds"]:
                                results[key] = row
                            print(
                                f"{condition:18s} {task:8s} {name:16s} {row['wall_seconds']:7.1f} s "
                                f"({row['train_seconds']:.1f} s training; default run ~{row['default_run_seconds']:.0f} s)",
                                file=sys.stderr,
                                flush=True,
                            )
            finally:
                for p in load:
                    p.kill()
    conditions = sorted({c for c, _, _ in results}, key=lambda c: c != "quiet")
    lines = [
        "| task | condition | " + " | ".join(variants) + " | fastest (short run) | fastest (default run) |",
        "|---" * (len(variants) + 4) + "|",
    ]
    for task in tasks:
        for condition in conditions:
            row = {name: results[(condition, task, name)] for name in variants}
            short = min(row, key=lambda n: row[n]["wall_seconds"])
            full = min(row, key=lambda n: row[n]["default_run_seconds"])
            cells = [f"{r['wall_seconds']:.1f} (~{r['default_run_seconds']:.0f})" for r in row.values()]
            lines.append(f"| {task} | {condition} | " + " | ".join(cells) + f" | {short} | {full} |")
    print("seconds of the short run (and, in brackets, projected for the default budget)", file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "budgets": BUDGETS,
                "default_scale": DEFAULT_SCALE,
                "runs": [{"condition": c, "task": t, "variant": v, **r} for (c, t, v), r in results.items()],
            }
        )
    )


if __name__ == "__main__":
    main()
