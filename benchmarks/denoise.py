"""Denoise benchmark: the GRU denoiser against the exact Kalman predictor, and JAX vs NumPy step time.

Prints one JSON object:

* ``default``: the default process and model (Dense-ReLU-GRU(12)-Dense, the CLI's
  default recipe), at most ``--seconds`` of training; ``mse_ratio_to_kalman`` of the
  one-step predictor on 100,000 fresh test sequences.  Target <= 1.01.
* ``second_process``: the same recipe, untuned, on tau=5, sigma=1, noise_var=0.5,
  50 steps.  Target <= 1.03.
* ``classic_recipe``: the exercise's own recipe (batch 64, Adam 1e-4 constant,
  1000 steps) on the default process, for scale.
* ``step_ms``: one training step of the default configuration on each backend,
  interleaved, best of 3 (same process, so machine noise hits both alike).

Time is training time (evaluation excluded); ``wall_seconds`` includes evaluation
and JIT compilation.

    python benchmarks/denoise.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.config import DenoiseConfig
from rnnlab.optim import Optimizer
from rnnlab.runner import train_run
from rnnlab.tasks import denoise

SECOND_PROCESS = dict(tau=5.0, sigma=1.0, noise_var=0.5, seq_len=50)
CLASSIC_RECIPE = dict(batch_size=64, lr=1e-4, schedule="constant", steps=1000, clip="none")


def train_and_test(cfg: DenoiseConfig, workdir: Path, name: str) -> dict:
    started = time.perf_counter()
    summary = train_run(cfg, workdir / name, quiet=True)
    test = summary["test"]
    return {
        "mse_ratio_to_kalman": round(test["mse_ratio_to_kalman"], 4),
        "model_mse": round(test["model_mse"], 6),
        "kalman_mse": round(test["kalman_mse"], 6),
        "test_sequences": test["test_sequences"],
        "steps": summary["step"],
        "train_seconds": round(summary["train_seconds"], 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "stop_reason": summary["stop_reason"],
        "config": {
            k: v
            for k, v in dataclasses.asdict(cfg).items()
            if v != getattr(DenoiseConfig(), k) or k in ("backend", "steps", "lr", "batch_size")
        },
    }


def step_ms(cfg: DenoiseConfig, backends=("jax", "numpy"), repeats: int = 3, steps: int = 300) -> dict:
    """Milliseconds per training step (data generation excluded), interleaved, best of ``repeats``."""
    task = denoise.DenoiseTask(dataclasses.replace(cfg, val_sequences=1))
    inputs, targets, _ = task.next_batch()
    trainers = {}
    for name in backends:
        params, optimizer, _ = runs.fresh_start(cfg, denoise.spec_of(cfg))
        trainers[name] = runs.make_trainer(
            dataclasses.replace(cfg, backend=name), denoise.spec_of(cfg), params, Optimizer(cfg.optimizer), "mse"
        )
        carry = trainers[name].init_carry(cfg.batch_size)
        for _ in range(20):  # compile and warm up
            trainers[name].train_step(carry, inputs, targets, cfg.lr)
    best = {name: float("inf") for name in backends}
    for _ in range(repeats):
        for name, trainer in trainers.items():
            carry = trainer.init_carry(cfg.batch_size)
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(carry, inputs, targets, cfg.lr)
            best[name] = min(best[name], (time.perf_counter() - t0) / steps * 1e3)
    return {f"{name}_step_ms": round(ms, 3) for name, ms in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="training-time cap per run")
    args = parser.parse_args()
    base = DenoiseConfig(max_minutes=args.seconds / 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result = {
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, numpy {np.__version__}, "
            f"jax {__import__('jax').__version__}",
            "default": train_and_test(base, workdir, "default"),
            "second_process": train_and_test(dataclasses.replace(base, **SECOND_PROCESS), workdir, "second"),
            "classic_recipe": train_and_test(dataclasses.replace(base, **CLASSIC_RECIPE), workdir, "classic"),
        }
    result["targets"] = {"default_ratio_max": 1.01, "second_process_ratio_max": 1.03}
    result["targets_met"] = (
        result["default"]["mse_ratio_to_kalman"] <= 1.01
        and result["default"]["train_seconds"] <= args.seconds
        and result["second_process"]["mse_ratio_to_kalman"] <= 1.03
    )
    timing_default = step_ms(base)
    timing_second = step_ms(dataclasses.replace(base, **SECOND_PROCESS))
    result["step_ms"] = {"default": timing_default, "second_process": timing_second}
    result["jax_step_ms"] = timing_default["jax_step_ms"]
    result["numpy_step_ms"] = timing_default["numpy_step_ms"]
    result["jax_speedup_over_numpy"] = round(timing_default["numpy_step_ms"] / timing_default["jax_step_ms"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
