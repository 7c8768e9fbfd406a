"""What a launcher (``torchrun``) tells this process through its environment.

Read by the torch backend (which GPU a process takes) and by data-parallel set-up; it
imports nothing of rnnlab, so both can use it without importing each other.
"""

from __future__ import annotations

import os


def launched_by_torchrun() -> bool:
    """True in one process of a multi-process torchrun job (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def local_rank() -> int | None:
    """This process's index on its machine under torchrun (LOCAL_RANK), else None."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched_by_torchrun() else None
