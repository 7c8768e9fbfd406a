"""How many CPUs this process may really use, for sizing thread pools.

``os.cpu_count()`` counts the host's CPUs; a container or batch job is often
limited to fewer, by CPU affinity or by a cgroup quota, and a pool sized to the
host then oversubscribes the CPUs it has (PyTorch sizes its pool that way).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

THREADS_ENV = ("RNNLAB_THREADS", "OMP_NUM_THREADS")


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), or None if unlimited."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def requested_threads() -> int | None:
    """A thread count the user asked for through ``RNNLAB_THREADS`` or ``OMP_NUM_THREADS``, if any."""
    for name in THREADS_ENV:
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


# Below this many parameters a torch model gets one intra-op thread: its operations are too small
# for a second thread to pay for the synchronisation, and beside other busy processes torch's
# threads wait on each other: `forecast train --epochs 5` (1,121 parameters) took 201 s with two
# threads and 20 s with one (benchmarks/task_defaults.py, docs/results.md).
SMALL_MODEL_PARAMS = 20_000


def busy_cpus() -> int:
    """CPUs other work keeps busy: the 1-minute load average, rounded (0 where there is none)."""
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):  # not Unix
        return 0


def torch_threads(processes_per_machine: int = 1, model_params: int | None = None) -> int:
    """Threads for each torch process: the user's request; else one for a small model; else this
    process's share of the CPUs, but no more than the CPUs other work leaves idle (at least one)."""
    requested = requested_threads()
    if requested:
        return requested
    if model_params is not None and model_params < SMALL_MODEL_PARAMS:
        return 1
    share = max(1, available_cpus() // max(1, processes_per_machine))
    return max(1, min(share, available_cpus() - busy_cpus()))


def batch_split_threads(model_params: int, processes_per_machine: int = 1) -> int:
    """Threads the NumPy backend splits a training batch over: the user's request; else one for a
    small model; else this process's share of the CPUs.  Unlike ``torch_threads`` it ignores the
    load: the split changes the order of a sum, so a run must not depend on what else was running
    when it started (its threads wait without spinning, so sharing a busy CPU costs little)."""
    requested = requested_threads()
    if requested:
        return requested
    if model_params < SMALL_MODEL_PARAMS:
        return 1
    return max(1, available_cpus() // max(1, processes_per_machine))
