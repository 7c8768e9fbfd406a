"""How much memory this process may use, to refuse work that cannot fit before allocating it."""

from __future__ import annotations

import os


def memory_bytes() -> int:
    """The machine's physical memory, or a smaller cgroup limit (containers, batch jobs)."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"
