"""Where a training step's time goes, per backend: a sampling profile of the best-300s recipe.

Each backend trains ``best-300s`` (tinyshakespeare, or the built-in corpus when ../shared is
absent) for ``--steps`` steps in a child process under ``py-spy record --native``, and every
sample taken inside the training loop's step (``_Loop.step``: batch, dropout masks, forward,
backward, clipping, optimizer, weight average), and those of the NumPy backend's batch-split
threads while they work, is sorted by its innermost frames:

- GEMM: BLAS and oneDNN matrix-product kernels (OpenBLAS ``sgemm``, MKL, XLA's Eigen contractions);
- element-wise: NumPy's ufunc and reduction loops, torch's and XLA's element-wise kernels;
- memory: copies, fills, allocation and freeing, page faults;
- dispatch: a library's per-call work before the arithmetic (NumPy's ufunc set-up, torch's
  dispatcher and autograd engine, JAX's call path);
- Python: the interpreter itself (bytecode, attribute and call overhead);
- BLAS hand-off: OpenBLAS's threads waiting on each other between products;
- waits: the step's thread blocked on another (JAX's main thread while XLA computes);
- GIL waits: a thread of the NumPy backend's batch split waiting to take the interpreter lock back;
- libc (unresolved): libc frames py-spy could not name (mostly copies and fills);
- JIT code: machine code compiled at run time, which has no symbols for py-spy: numba's kernels
  (the NumPy backend's LSTM and nn.GRU steps, with the ``numba`` extra) and XLA's;
- other: anything else (named in the JSON's ``top_other``).

Start-up, JIT compilation and evaluation fall outside ``_Loop.step`` and are not counted.  Needs
py-spy (``pip install py-spy``; not a dependency of rnnlab) and permission to trace a child.

    python benchmarks/step_profile.py [--backends numpy,jax,torch] [--steps 120] [--rate 200]

Prints one JSON object on stdout and a markdown table on stderr.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
IN_STEP = "step (rnnlab/train.py"
SPLIT = "_loss_and_grads (rnnlab/backends/numpy_backend.py"  # the NumPy trainer's batch split
# First match wins; each pattern is tried on the innermost frame, "function (file)".
CATEGORIES = [
    ("BLAS hand-off", r"inner_thread|exec_blas|blas_thread_server"),
    ("waits", r"^syscall|futex|pthread_cond|sem_wait|sched_yield|nanosleep|epoll"),
    ("GEMM", r"gemm|mkl_blas|dnnl|gebp|EigenMatMul|Contraction"),
    (
        "element-wise",
        r"FLOAT_|DOUBLE_|USHORT_|LONG_|_loop|Loop|Sleef|mkl_vml|at::native|vectorized|pcg64|random_|_rand_|"
        r"cast_|tanh|exp",
    ),
    (
        "dispatch",  # a library's own per-call work: NumPy's ufunc set-up, torch's dispatcher and autograd
        r"NpyIter|PyUFunc_|promote_and_get|ufunc_generic|PyArray_(?!NewFromDescr)|c10::|torch::|at::(?!native)|"
        r"autograd|jax::|Pjit|nanobind|tls_get_addr|Dispatcher_call|numba/core",
    ),
    ("memory", r"memcpy|memmove|memset|malloc|free|_to_contig|copy|NewFromDescr|npyiter|madvise|munmap|calloc"),
    ("libc (unresolved)", r"^0x[0-9a-f]+ \(libc"),
    # Machine code made at run time has no symbols: numba's kernels (the NumPy backend's steps) and XLA's.
    ("JIT code", r"^0x[0-9a-f]+ \(\?\)$"),
    ("Python", r"\.py:\d+\)$|libpython"),
]
# A thread that wants the GIL back (after a NumPy call released it) waits on a condition variable.
GIL_WAIT = r"take_gil|PyEval_RestoreThread|pthread_cond_timedwait"
CATEGORY_NAMES = ["GIL waits"] + [name for name, _ in CATEGORIES] + ["other"]


def child(backend: str, steps: int, out: str) -> None:
    """The profiled process: best-300s for ``steps`` steps, evaluated once at the end."""
    from rnnlab.config import PRESETS, CharLMConfig
    from rnnlab.runner import train_run

    preset = PRESETS["best-300s"]
    text = str(SHAKESPEARE) if SHAKESPEARE.exists() else ""
    cfg = dataclasses.replace(CharLMConfig(text=text), **preset.settings)
    cfg = dataclasses.replace(cfg, backend=backend, max_steps=steps, eval_every=steps)
    train_run(cfg, out, force=True, quiet=True)


def classify(frames: str) -> str:
    """The category of one sample from its frames (outermost first, ";"-separated)."""
    tail = ";".join(frames.rsplit(";", 3)[-3:])
    if re.search(GIL_WAIT, tail):
        return "GIL waits"
    leaf = frames.rsplit(";", 1)[-1]
    for name, pattern in CATEGORIES:
        if re.search(pattern, leaf):
            return name
    return "other"


def step_samples(raw_text: str):
    """(frames, count) of each sample taken inside a training step: the main thread's inside
    ``_Loop.step``, except while it waits for the batch split's threads, and those threads' own
    while they work on a block (not while they wait for the next)."""
    for line in raw_text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        thread, _, frames = stack.partition(";")
        if "rnnlab-split" in thread:
            if "numpy_backend.py" in frames:
                yield frames, int(n)
        elif IN_STEP in frames and not (SPLIT in frames and "concurrent/futures" in frames):
            yield frames, int(n)


def py_spy() -> str | None:
    """py-spy on PATH or beside this Python (a virtual environment's bin/ need not be on PATH)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))


def profile(backend: str, steps: int, rate: int, tmp: str) -> dict:
    """Run the child under py-spy; the shares of the step's samples by category."""
    raw = Path(tmp) / f"{backend}.txt"
    child_cmd = [sys.executable, __file__, "--child", backend, "--steps", str(steps), "--out", str(Path(tmp) / backend)]
    spy = [py_spy(), "record", "--native", "--threads", "--format", "raw"]
    spy += ["--rate", str(rate), "--output", str(raw), "--"]
    subprocess.run(spy + child_cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts: collections.Counter = collections.Counter()
    other: collections.Counter = collections.Counter()
    for frames, n in step_samples(raw.read_text(errors="replace")):
        category = classify(frames)
        counts[category] += n
        if category == "other":
            other[re.sub(r"\s*\(.*", "", frames.rsplit(";", 1)[-1])] += n
    total = sum(counts.values()) or 1
    return {
        "backend": backend,
        "samples": total,
        "shares": {k: round(counts[k] / total, 3) for k in CATEGORY_NAMES},
        "top_other": [f"{name} {n / total:.1%}" for name, n in other.most_common(5)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="numpy,jax,torch")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    if not py_spy():
        sys.exit("step_profile.py needs py-spy: pip install py-spy")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rows.append(profile(backend, args.steps, args.rate, tmp))
            print(f"{backend}: {rows[-1]['shares']}", file=sys.stderr, flush=True)
    names = CATEGORY_NAMES
    print("| backend | " + " | ".join(names) + " |", file=sys.stderr)
    print("|---" * (len(names) + 1) + "|", file=sys.stderr)
    for row in rows:
        cells = " | ".join(f"{row['shares'][k]:.0%}" for k in names)
        print(f"| {row['backend']} | {cells} |", file=sys.stderr)
    facts = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps({"recipe": "best-300s", "steps": args.steps, "facts": facts, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
