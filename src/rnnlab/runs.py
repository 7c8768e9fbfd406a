"""Run directories, shared by every task: start, refuse to mix two runs, resume, load.

A task's ``train_run`` asks ``open_run`` whether it starts fresh or continues a
checkpoint; everything here is task-agnostic (the task name and config class
are arguments), so what a task module adds is only its data and metrics.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checkpoint, distributed, train
from .backends import get_backend
from .cells import ModelSpec, check_params, init_params
from .config import flag, from_dict
from .errors import UserError
from .optim import Optimizer

# Files a run writes; a directory holding any of them holds a run.
RUN_FILES = ("config.toml", "metrics.jsonl", "checkpoint.safetensors", "checkpoint.json",
             "best.safetensors", "best.json", "test.json", "samples.jsonl", "report.html")


@dataclass
class Resumed:
    """What a checkpoint restores: the saved config (with budget overrides applied) and state."""

    cfg: object
    meta: dict
    spec: ModelSpec
    params: dict
    optimizer: Optimizer
    state: train.LoopState


def prepare_run_dir(out: Path, resume: bool, force: bool) -> bool:
    """True when an existing run is to be resumed; refuses to mix two runs in one directory."""
    holds_run = out.exists() and any((out / f).exists() for f in RUN_FILES)
    if resume:
        if not checkpoint.exists(out):
            raise UserError(f"--resume: no checkpoint in {str(out)!r}; start a new run without --resume")
        return True
    if holds_run:
        if not force:
            raise UserError(f"{str(out)!r} already holds a run; pass --resume to continue it, --force to "
                            "replace it, or choose another --out")
        for f in RUN_FILES:
            if (out / f).exists():
                (out / f).unlink()
        for extra in out.glob("*.png"):
            extra.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return False


def _check_task(meta: dict, task_name: str, where: Path) -> None:
    if meta.get("task") != task_name:
        raise UserError(f"{str(where)!r} holds a {meta.get('task')!r} run, not {task_name}")


# Fields any run may change when resumed: the parameters and optimizer state are backend-free,
# so a run started on one backend continues on another.
ALWAYS_RESUMABLE = {"backend", "device"}


def device_follows_backend(overrides: dict) -> dict:
    """Resume overrides where a new backend without a device resets the device to auto: the
    saved device may not exist on the new backend."""
    if "backend" in overrides and "device" not in overrides:
        return dict(overrides, device="auto")
    return overrides


def resume_run(out: Path, task_name: str, config_cls, overrides: dict, resumable: set) -> Resumed:
    """Load the checkpoint in ``out``; ``overrides`` (flags given now) may change only ``resumable``
    fields (and the backend)."""
    resumable = set(resumable) | ALWAYS_RESUMABLE
    tensors, meta = checkpoint.load(out)
    _check_task(meta, task_name, out)
    saved = from_dict(config_cls, meta["config"], where=f"{out}/checkpoint.json")
    changed = {k for k, v in overrides.items() if k not in resumable and getattr(saved, k) != v}
    if changed:
        names = ", ".join(f"--{flag(k)}" for k in sorted(changed))
        raise UserError(f"cannot change {names} when resuming {str(out)!r}; start a new run "
                        "(--force or another --out) to change the model or data")
    overrides = device_follows_backend(overrides)
    cfg = dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in resumable})
    cfg.validate()
    horizon = next(name for name in ("max_steps", "steps", "epochs") if hasattr(cfg, name))
    if cfg.schedule == "cosine" and getattr(cfg, horizon) != getattr(saved, horizon):
        unit = "epochs" if horizon == "epochs" else "steps"
        print(f"rnnlab: note: the cosine schedule's horizon moves from {getattr(saved, horizon)} to "
              f"{getattr(cfg, horizon)} {unit}, so this run will not match one trained straight to "
              f"{getattr(cfg, horizon)}", file=sys.stderr)
    spec = ModelSpec.from_dict(meta["spec"])
    params = checkpoint.group(tensors, "params")
    check_params(spec, params, f"{out}/checkpoint.safetensors")
    optimizer = Optimizer.restore(meta["optimizer"], checkpoint.group(tensors, "opt"))
    carry = checkpoint.carry_from_tensors(tensors, spec.num_layers, spec.cell == "lstm")
    return Resumed(cfg, meta, spec, params, optimizer, train.LoopState.restore(meta["loop"], carry))


def fresh_start(cfg, spec: ModelSpec) -> tuple[dict, Optimizer, train.LoopState]:
    """Seeded initial parameters, a new optimizer and loop state for ``cfg``."""
    params = init_params(spec, np.random.default_rng(cfg.seed), cfg.init, np.dtype(cfg.dtype))
    return params, Optimizer(cfg.optimizer), train.LoopState(sample_rng=np.random.default_rng([cfg.seed, 1]))


def make_trainer(cfg, spec: ModelSpec, params: dict, optimizer: Optimizer, loss: str, reduction: str = "mean"):
    """The ``Trainer`` of ``cfg.backend``; a backend whose engine is not installed is a user error."""
    try:
        backend = get_backend(cfg.backend)
    except ImportError as exc:
        raise UserError(f"--backend {cfg.backend} needs {exc.name!r}, which is not installed: "
                        f"pip install 'rnnlab[{cfg.backend}]' or choose --backend numpy") from exc
    # Only torch takes a device: NumPy runs on the CPU and JAX places arrays on its default device.
    where = {"device": cfg.device} if cfg.backend == "torch" else {}
    trainer = backend.Trainer(spec, params, optimizer, loss, reduction, cfg.clip, cfg.clip_value, **where)
    if distributed.current().active:
        trainer.distribute()
    return trainer


def schedule_of(cfg, total_steps: int) -> dict:
    """Keyword arguments of ``optim.learning_rate`` (except ``step``) for ``cfg``."""
    return dict(base_lr=cfg.lr, schedule=cfg.schedule, total_steps=total_steps or None,
                warmup_steps=cfg.warmup_steps)


def load_model(run_dir, which: str = "checkpoint") -> tuple[ModelSpec, dict, dict]:
    """(spec, params, meta) of ``<run_dir>/<which>`` for any task, checked against each other."""
    run_dir = Path(run_dir)
    tensors, meta = checkpoint.load(run_dir, which)
    try:
        spec = ModelSpec.from_dict(meta["spec"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_dir}/{which}.json lacks field {exc}; the checkpoint is damaged") from exc
    params = checkpoint.group(tensors, "params")
    check_params(spec, params, f"{run_dir}/{which}.safetensors")
    return spec, params, meta


def load_saved(run_dir, which: str, task_name: str, config_cls,
               backend: str | None = None) -> tuple[dict, dict, ModelSpec, object]:
    """(params, meta, spec, cfg) of ``<run_dir>/<which>`` (``checkpoint`` or ``best``), checked;
    ``backend`` (default: the run's own) replaces the one in the saved config."""
    run_dir = Path(run_dir)
    if which == "best" and not checkpoint.exists(run_dir, "best"):
        raise UserError(f"{str(run_dir)!r} has no best.json (no validation loss yet); use the last checkpoint")
    spec, params, meta = load_model(run_dir, which)
    _check_task(meta, task_name, run_dir)
    try:
        cfg = from_dict(config_cls, meta["config"], where=f"{run_dir}/{which}.json")
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_dir}/{which}.json lacks field {exc}; the checkpoint is damaged") from exc
    # A saved model is used on whatever machine loads it: the training run's device may not be here.
    cfg = dataclasses.replace(cfg, device="auto", **({"backend": backend} if backend is not None else {}))
    return params, meta, spec, cfg
