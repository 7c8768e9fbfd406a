"""Data-parallel training under ``torchrun``: PyTorch DistributedDataParallel, nothing home-made.

On CPUs the processes talk over gloo; when the torch backend runs on GPUs (``--device
auto`` with a GPU present, or ``cuda``), each process takes the GPU of its LOCAL_RANK
and they talk over nccl.

``torchrun --nproc-per-node K -m rnnlab charlm train --backend torch ...`` starts K
processes with RANK/WORLD_SIZE in their environment.  Each builds the same global
batch (the data pipeline is seeded) and trains on its own rows of it, an equal share
where the batch divides evenly; DDP averages the gradients, and each process's loss is
weighted by its share of the rows, so the update is the one a single process makes on
the whole batch.  The clipping norm is taken after the average, so it is the global
norm everywhere, and every process takes the same optimizer step.

Only rank 0 writes the run directory (metrics, checkpoints, plots) and shows progress;
the others work in a scratch directory of their own.  Checkpoints hold the recurrent
state of every row of the global batch (gathered from all ranks), so a run saved by K
processes resumes on any other number, or in one process, exactly.  Stopping decisions
(time budgets, Ctrl-C) are agreed on every step, so no process waits on a collective
the others have left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import BACKENDS, backend_info
from .carry import join as carry_join
from .carry import map_arrays
from .errors import UserError
from .launch import launched_by_torchrun


@dataclass(frozen=True)
class Shard:
    """This process's place in the job: rank ``rank`` of ``world``."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, rows: int) -> tuple[int, int]:
        """[start, stop) of this rank's rows of a ``rows``-row batch (sizes differ by at most one)."""
        edges = np.cumsum([0] + [rows // self.world + (r < rows % self.world) for r in range(self.world)])
        return int(edges[self.rank]), int(edges[self.rank + 1])

    def rows(self, array: np.ndarray) -> np.ndarray:
        start, stop = self.bounds(len(array))
        return array[start:stop]

    def loss_weight(self, rows: int) -> float:
        """Weight of this rank's mean loss so that DDP's average of gradients is the gradient
        of the mean over all ``rows``."""
        start, stop = self.bounds(rows)
        return (stop - start) * self.world / rows

    # ----- collectives (no-ops in a single process)
    def any(self, flag: bool) -> bool:
        if not self.active:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum(self, value: float) -> float:
        if not self.active:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return float(t.item())

    def all_values(self, value) -> list:
        """A small picklable ``value`` from every rank, in rank order (``[value]`` in one process)."""
        if not self.active:
            return [value]
        import torch.distributed as dist

        parts = [None] * self.world
        dist.all_gather_object(parts, value)
        return parts

    def gather_rows(self, carry: list) -> list:
        """The recurrent state of every row of the global batch, on every rank (rank order)."""
        if not self.active:
            return carry
        import torch.distributed as dist

        parts = [None] * self.world
        dist.all_gather_object(parts, carry)

        return carry_join(lambda *pieces: np.concatenate(pieces, axis=0), parts)

    def own_rows(self, carry: list) -> list:
        """This rank's rows of a global-batch carry."""
        if not self.active:
            return carry
        return map_arrays(self.rows, carry)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Shard()
_current = SINGLE


def current() -> Shard:
    """The shard of this process (``SINGLE`` unless ``setup`` joined a torchrun job)."""
    return _current


def setup(backend: str, batch_size: int, device: str = "auto") -> Shard:
    """Join the torchrun job described by the environment: nccl when the torch backend runs on
    GPUs (``device``: see ``torch_backend.device_name``), gloo on CPUs."""
    global _current
    if not launched_by_torchrun():
        return SINGLE
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
    if not backend_info(backend).data_parallel:
        which = " or ".join(f"--backend {name}" for name, b in BACKENDS.items() if b.data_parallel)
        raise UserError(f"data-parallel training (torchrun, {world} processes) needs {which}, not {backend}")
    if batch_size < world:
        raise UserError(
            f"--batch-size {batch_size} is smaller than the {world} torchrun processes; each "
            "needs at least one row: raise --batch-size or lower --nproc-per-node"
        )
    import torch
    import torch.distributed as dist

    from .backends.torch_backend import resolve_device

    where = resolve_device(device)
    if where.type == "cuda":
        torch.cuda.set_device(where)  # nccl and all_gather_object use the current device
    if not dist.is_initialized():
        dist.init_process_group(process_group_backend(where.type))
    _current = Shard(rank, world)
    return _current


def process_group_backend(device_type: str) -> str:
    """nccl between GPUs, gloo between CPUs."""
    return "nccl" if device_type == "cuda" else "gloo"


def _collective_device():
    """Where collective tensors live: nccl only moves tensors that are on this process's GPU."""
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None


def teardown() -> None:
    global _current
    if _current.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = SINGLE


def working_dir(out: str, resume: bool, run_files) -> str:
    """Where this rank writes: ``out`` for rank 0, a private scratch directory for the others
    (holding a copy of ``run_files`` when resuming, taken before rank 0 writes anything)."""
    shard = current()
    if shard.is_main:
        shard.barrier()
        return out
    scratch = tempfile.mkdtemp(prefix=f"rnnlab-rank{shard.rank}-")
    if resume:
        for name in run_files:
            if (Path(out) / name).exists():
                shutil.copy2(Path(out) / name, scratch)
    shard.barrier()
    return scratch
