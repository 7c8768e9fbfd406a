"""torch.compile of the torch backend's model against eager, at best-300s's sizes.

Two torch Trainers with the same weights (embedding 64 -> GRU(256) -> readout, B = T = 64, Adam,
no dropout masks): one runs its model eagerly, the other through ``torch.compile`` (inductor on
the CPU).  Their steps are interleaved, best of 25 kept; prints one JSON object with both step
times, the ratio, the compile time and both losses on one batch (which must agree).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from rnnlab.backends import torch_backend
from rnnlab.cells import ModelSpec, init_params
from rnnlab.optim import Optimizer
from rnnlab.threads import available_cpus

V, B, T, H, EMBED = 65, 64, 64, 256, 64


def make_trainer(spec: ModelSpec, params: dict) -> torch_backend.Trainer:
    trainer = torch_backend.Trainer(
        spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), "cross_entropy", "mean", "norm", 5.0
    )
    torch.set_num_threads(available_cpus())  # the trainer sizes its pool from the load average
    return trainer


def main() -> None:
    spec = ModelSpec("gru_reset_after", V, H, V, 1, "embedding", embed_size=EMBED)
    params = init_params(spec, np.random.default_rng(0), "default", np.float32)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    eager, compiled = make_trainer(spec, params), make_trainer(spec, params)
    carry = eager.init_carry(B)
    t0 = time.perf_counter()
    compiled._run_model = torch.compile(compiled.model)
    for _ in range(3):  # the first call compiles
        compiled.train_step(carry, inputs, targets, 0.0)
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        eager.train_step(carry, inputs, targets, 0.0)
    best = {"eager": float("inf"), "compiled": float("inf")}
    for _ in range(5):
        for name, trainer in (("eager", eager), ("compiled", compiled)):
            for _ in range(5):
                t1 = time.perf_counter()
                trainer.train_step(carry, inputs, targets, 0.0)  # lr 0: the weights stay equal
                best[name] = min(best[name], time.perf_counter() - t1)
    result = {
        "machine": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "shape": {"vocab": V, "batch": B, "seq_len": T, "hidden": H, "embed": EMBED},
        "eager_step_ms": round(best["eager"] * 1e3, 2),
        "compiled_step_ms": round(best["compiled"] * 1e3, 2),
        "compiled_speedup": round(best["eager"] / best["compiled"], 3),
        "compile_s": round(compile_s, 1),
        "loss_eager": eager.train_step(carry, inputs, targets, 0.0)[0],
        "loss_compiled": compiled.train_step(carry, inputs, targets, 0.0)[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
