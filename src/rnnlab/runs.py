"""Run directories, shared by every task: start, refuse to mix two runs, resume, load.

A task's ``train_run`` asks ``open_run`` whether it starts fresh or continues a
checkpoint; everything here is task-agnostic (the task name and config class
are arguments), so what a task module adds is only its data and metrics.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checkpoint, distributed, train
from .backends import backend_info, get_backend
from .cells import ModelSpec, check_fits, check_params, count_params, init_params
from .config import flag, from_dict, training_length
from .errors import UserError
from .optim import Optimizer

# Files a run writes; a directory holding any of them holds a run.
RUN_FILES = (
    "config.toml",
    "metrics.jsonl",
    "checkpoint.safetensors",
    "checkpoint.json",
    "checkpoint.next.safetensors",
    "best.safetensors",
    "best.json",
    "best.next.safetensors",
    "test.json",
    "calibration.json",
    "samples.jsonl",
    "report.html",
)


@dataclass
class Resumed:
    """What a checkpoint restores: the saved config (with budget overrides applied) and state."""

    cfg: object
    meta: dict
    spec: ModelSpec
    params: dict
    optimizer: Optimizer
    state: train.LoopState


@dataclass
class LoadedRun:
    """A saved model ready to use (``TASK.load_run``): its trainer on the chosen backend, the
    run's config, the checkpoint's meta and spec, and what its task adds to them (charlm:
    ``extras["vocab"]``; forecast: ``extras["features"]``)."""

    trainer: object
    cfg: object
    meta: dict
    spec: ModelSpec
    extras: dict = dataclasses.field(default_factory=dict)


def check_out_dir(out: Path, flag_name: str = "--out") -> None:
    """Refuse an output directory that cannot be one (a file, or a path under a file), in one line."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag_name} {str(out)!r} is a file, not a directory; choose a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(
                    f"{flag_name} {str(out)!r} lies under {str(parent)!r}, which is a file; choose a directory"
                )
            break


def make_dir(out: Path, flag_name: str = "--out") -> bool:
    """Create ``out`` (and its parents); True when this call created it (of two processes creating
    one directory at once, exactly one is told so).  Failures are one line."""
    out = Path(out)
    check_out_dir(out, flag_name)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            out.mkdir()
            created = True
        except FileExistsError:
            created = False
            check_out_dir(out, flag_name)
    except OSError as exc:
        raise UserError(
            f"cannot create {flag_name} {str(out)!r}: {exc.strerror}; choose a directory you can write"
        ) from exc
    return created


@dataclass
class SavedModel:
    """A model the run saved (``best``): its parameters (a copy, not the trainer's arrays) and the meta saved with them."""

    params: dict
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta["step"])


class RunDir:
    """A run directory held by this process while it writes (``with RunDir(out, resume, force)``):
    the object the runner opens once and hands to the loop and the task's hooks.  Only it reads
    and writes the run's checkpoint files (``save_checkpoint``, ``save_best``), the metrics log
    (``log_metrics``), and it holds the best model in memory (``best``), so nothing after the
    loop reads it back from disk.  ``path`` is the directory, for the task's own files (plots,
    test results).

    Entering checks everything about the directory that can be checked without the
    task's data: it is a directory (created if need be), no other process writes it
    (``rnnlab.lock``), and it holds a run exactly when ``--resume`` says so (or
    ``--force`` allows replacing it).  It then finishes or undoes a save that a crash
    cut short.  Nothing of an old run is deleted here: the task checks its config and
    data first and calls ``start_writing`` only when the new run is about to write,
    so a bad input with ``--force`` leaves the old run as it was.

    ``mode``: ``"fresh"``; ``"resume"`` (continue the checkpoint); ``"restart"`` (the
    run was stopped before its first checkpoint: start again from its config.toml).
    """

    def __init__(self, out, resume: bool, force: bool):
        self.out, self.resume, self.force = Path(out), resume, force
        self.path = self.out
        self.mode = "fresh"
        self.best: SavedModel | None = None
        self._created = False
        self._lock = None
        self._started = False

    def __enter__(self) -> RunDir:
        from .lock import RunLock

        self._created = make_dir(self.out)
        try:
            self._lock = RunLock(self.out).acquire()
            out = self.out
            holds_run = any((out / f).exists() for f in RUN_FILES)
            if self.resume:
                if checkpoint.exists(out):
                    self.mode = "resume"
                elif (out / "config.toml").exists():
                    self.mode = "restart"
                else:
                    raise UserError(f"--resume: no checkpoint in {str(out)!r}; start a new run without --resume")
                for note in checkpoint.recover(out):
                    print(f"rnnlab: note: {note} in {out}", file=sys.stderr)
                if self.mode == "resume" and checkpoint.exists(out, "best"):
                    tensors, meta = checkpoint.load(out, "best")
                    self.best = SavedModel(checkpoint.group(tensors, "params"), meta)
            elif holds_run and not self.force:
                raise UserError(
                    f"{str(out)!r} already holds a run; pass --resume to continue it, --force to "
                    "replace it, or choose another --out"
                )
        except BaseException:
            self._undo()
            raise
        return self

    def start_writing(self) -> None:
        """The new run is about to write: remove what an old run (replaced by --force) or an
        unfinished start (restarted) left."""
        self._started = True
        self._lock.keep_record()
        if self.mode == "resume":
            return
        for f in RUN_FILES:
            if (self.out / f).exists():
                (self.out / f).unlink()
        for extra in self.out.glob("*.png"):
            extra.unlink()
        checkpoint.recover(self.out)

    # ----- what the loop and the task's hooks write through it

    def has_checkpoint(self, stem: str = "checkpoint") -> bool:
        return checkpoint.exists(self.out, stem)

    def save_checkpoint(self, tensors: dict, meta: dict) -> None:
        """Save the whole state (``checkpoint.*``), committed as one unit."""
        checkpoint.save(self.out, "checkpoint", tensors, meta)

    def save_best(self, params: dict, meta: dict) -> None:
        """Save ``params`` as the best model (``best.*``, with ``meta``: step, metrics, spec) and keep a copy."""
        kept = {k: np.array(v, copy=True) for k, v in params.items()}
        checkpoint.save(self.out, "best", {f"params/{k}": v for k, v in kept.items()}, meta)
        self.best = SavedModel(kept, meta)

    def log_metrics(self, record: dict) -> None:
        """One line of ``metrics.jsonl``."""
        import json

        self.append_log("metrics.jsonl", json.dumps(record))

    def append_log(self, name: str, line: str) -> None:
        """One line of the log ``name`` (``train.LOGS``: the checkpoint records their lengths)."""
        checkpoint.append_line(self.out / name, line)

    def log_sizes(self, names) -> dict:
        """Each log's length now, for the checkpoint (a resume cuts the logs back to it)."""
        return checkpoint.log_sizes(self.out, names)

    def write_text(self, name: str, text: str) -> Path:
        """Write the run file ``name`` atomically (config.toml, test.json, ...)."""
        checkpoint.atomic_write_text(self.out / name, text)
        return self.out / name

    def _undo(self) -> None:
        """Leave no trace of a run that never started in a directory this process created and held.
        A process that did not get the lock touches nothing: the directory is another's."""
        if self._lock is None:
            return
        if self._created and not self._started:
            from .lock import LOCK_NAME

            try:  # still holding the lock, so no other writer is inside
                (self.out / LOCK_NAME).unlink(missing_ok=True)
                self.out.rmdir()
            except OSError:
                pass
        self._lock.release()
        self._lock = None

    def __exit__(self, *exc) -> None:
        self._undo()


def saved_meta(run_dir, which: str = "checkpoint") -> dict:
    """The meta of a run's saved model ``which`` (``checkpoint`` or ``best``), its tensors not read."""
    return checkpoint.load_meta(Path(run_dir), which)


def has_saved(run_dir, which: str = "checkpoint") -> bool:
    """Whether ``run_dir`` holds a saved ``which`` (``checkpoint`` or ``best``)."""
    return checkpoint.exists(Path(run_dir), which)


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


# Config fields that name files: given again on resume as any path to the same file.
PATH_FIELDS = ("text", "csv")


def _same_value(name: str, saved, given) -> bool:
    if name in PATH_FIELDS and isinstance(saved, str) and isinstance(given, str) and saved and given:
        return os.path.abspath(saved) == os.path.abspath(given)
    return saved == given


def _apply_overrides(saved, overrides: dict, resumable: set, out: Path):
    """``saved`` with the flags given now, which may change only ``resumable`` fields."""
    resumable = set(resumable) | ALWAYS_RESUMABLE
    changed = {k for k, v in overrides.items() if k not in resumable and not _same_value(k, getattr(saved, k), v)}
    if changed:
        names = ", ".join(f"--{flag(k)}" for k in sorted(changed))
        raise UserError(
            f"cannot change {names} when resuming {str(out)!r}; start a new run "
            "(--force or another --out) to change the model or data"
        )
    overrides = device_follows_backend(overrides)
    cfg = dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in resumable})
    return cfg.validate()


def spec_of_checkpoint(meta: dict, tensors: dict, where: str) -> ModelSpec:
    """The model spec a checkpoint's JSON names, checked against its tensor file's size first (a
    hand-edited absurd size is refused without building anything of that size)."""
    try:
        spec = ModelSpec.from_dict(meta["spec"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoint.damaged(where, exc) from exc
    except UserError as exc:
        raise UserError(f"damaged checkpoint: {where}: {exc}") from exc
    held = sum(int(v.size) for k, v in tensors.items() if k.startswith("params/"))
    if count_params(spec) != held:
        raise UserError(
            f"damaged checkpoint: {where} describes a model of {count_params(spec):,} parameters, but "
            f"its tensor file holds {held:,}; restore both files from a copy or start a new run"
        )
    return spec


def restart_config(out: Path, config_cls, overrides: dict, resumable: set):
    """The config of a run stopped before its first checkpoint (``RunDir.mode == "restart"``):
    its config.toml, with the flags given now; it starts again from step 0."""
    from .config import from_toml

    print(
        f"rnnlab: note: {out} was stopped before its first checkpoint; starting it again from its config.toml",
        file=sys.stderr,
    )
    return _apply_overrides(from_toml(config_cls, out / "config.toml"), overrides, resumable, out)


def resume_run(out: Path, task_name: str, config_cls, overrides: dict, resumable: set) -> Resumed:
    """Load the checkpoint in ``out``; ``overrides`` (flags given now) may change only ``resumable``
    fields (and the backend).  The run's logs are cut back to the checkpoint (``train.LOGS``)."""
    tensors, meta = checkpoint.load(out)
    where = f"{out}/checkpoint.json"
    _check_task(meta, task_name, out)
    try:
        saved = from_dict(config_cls, meta["config"], where=where).validate()
        state_meta, optimizer_meta, log_sizes = meta["loop"], meta["optimizer"], meta.get("logs", {})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoint.damaged(where, exc) from exc
    except UserError as exc:
        raise UserError(f"damaged checkpoint: {where}: {exc}") from exc
    spec = spec_of_checkpoint(meta, tensors, where)
    cfg = _apply_overrides(saved, overrides, resumable, out)
    if cfg.schedule == "cosine" and training_length(cfg) != training_length(saved):
        unit = "epochs" if type(cfg).LENGTH == "epochs" else "steps"
        print(
            f"rnnlab: note: the cosine schedule's horizon moves from {training_length(saved)} to "
            f"{training_length(cfg)} {unit}, so this run will not match one trained straight to "
            f"{training_length(cfg)}",
            file=sys.stderr,
        )
    params = checkpoint.group(tensors, "params")
    check_params(spec, params, f"{out}/checkpoint.safetensors")
    try:
        _check_restored(saved, params, state_meta, log_sizes)
        optimizer = Optimizer.restore(optimizer_meta, checkpoint.group(tensors, "opt"))
        carry = checkpoint.carry_from_tensors(tensors, spec.num_layers, spec.cell_info.carry)
        average = checkpoint.group(tensors, "average")
        if average:
            check_params(spec, average, f"{out}/checkpoint.safetensors (the weights' average)")
        state = train.LoopState.restore(state_meta, carry, average)
        checkpoint.cut_logs(out, {k: v for k, v in log_sizes.items() if k in train.LOGS})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoint.damaged(where, exc) from exc
    return Resumed(cfg, meta, spec, params, optimizer, state)


def _check_restored(cfg, params: dict, loop: dict, log_sizes: dict) -> None:
    """What a checkpoint restores, checked against the run's own config (``ValueError`` when it
    disagrees: a hand-edited or damaged checkpoint): tensors of the run's dtype, only the loop's
    own fields, a whole step >= 0, and only the run's own logs."""
    dtypes = {str(v.dtype) for v in params.values()}
    if dtypes != {cfg.dtype}:
        raise ValueError(f"its tensors are {', '.join(sorted(dtypes))}, but the run is {cfg.dtype}")
    unknown = sorted(set(loop) - set(train.LoopState().meta()))
    if unknown:
        raise ValueError(f"the loop state has fields this rnnlab does not write: {', '.join(unknown)}")
    step = loop.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"the step is {step!r}, not a whole number >= 0")
    if not isinstance(log_sizes, dict) or set(log_sizes) - set(train.LOGS):
        raise ValueError(
            f"it names logs {sorted(set(log_sizes) - set(train.LOGS))}; a run keeps {', '.join(train.LOGS)}"
        )


def fresh_start(cfg, spec: ModelSpec) -> tuple[dict, Optimizer, train.LoopState]:
    """Seeded initial parameters, a new optimizer and loop state for ``cfg``."""
    check_fits(spec, cfg.dtype)
    params = init_params(spec, np.random.default_rng(cfg.seed), cfg.init, np.dtype(cfg.dtype))
    state = train.LoopState(
        sample_rng=np.random.default_rng([cfg.seed, 1]), dropout_rng=np.random.default_rng([cfg.seed, 3])
    )
    return params, Optimizer(cfg.optimizer, beta2=cfg.adam_beta2, weight_decay=cfg.weight_decay), state


def make_trainer(cfg, spec: ModelSpec, params: dict, optimizer: Optimizer, loss: str, reduction: str = "mean"):
    """The ``Trainer`` of ``cfg.backend``; a backend whose engine is not installed is a user error."""
    try:
        backend = get_backend(cfg.backend)
    except ImportError as exc:
        raise UserError(
            f"--backend {cfg.backend} needs {exc.name!r}, which is not installed: "
            f"pip install 'rnnlab[{cfg.backend}]' or choose --backend numpy"
        ) from exc
    # Only a backend that takes --device gets one: NumPy runs on the CPU, JAX places arrays itself.
    where = {"device": cfg.device} if backend_info(cfg.backend).takes_device else {}
    trainer = backend.Trainer(spec, params, optimizer, loss, reduction, cfg.clip, cfg.clip_value, cfg.dropout, **where)
    if distributed.current().active:
        trainer.distribute()
    return trainer


def schedule_of(cfg, total_steps: int) -> dict:
    """Keyword arguments of ``optim.learning_rate`` (except ``step``) for ``cfg``."""
    return dict(base_lr=cfg.lr, schedule=cfg.schedule, total_steps=total_steps or None, warmup_steps=cfg.warmup_steps)


def load_model(run_dir, which: str = "checkpoint") -> tuple[ModelSpec, dict, dict]:
    """(spec, params, meta) of ``<run_dir>/<which>`` for any task, checked against each other.
    A run trained with ``--ema-decay`` is used with its weights' average (what it was evaluated
    with): ``best`` holds only that, ``checkpoint`` holds it beside the raw weights it trains on."""
    run_dir = Path(run_dir)
    tensors, meta = checkpoint.load(run_dir, which)
    spec = spec_of_checkpoint(meta, tensors, f"{run_dir}/{which}.json")
    params = checkpoint.group(tensors, "average") or checkpoint.group(tensors, "params")
    check_params(spec, params, f"{run_dir}/{which}.safetensors")
    return spec, params, meta


def load_saved(
    run_dir, which: str, task_name: str, config_cls, backend: str | None = None
) -> tuple[dict, dict, ModelSpec, object]:
    """(params, meta, spec, cfg) of ``<run_dir>/<which>`` (``checkpoint`` or ``best``), checked;
    ``backend`` (default: the run's own) replaces the one in the saved config."""
    run_dir = Path(run_dir)
    if which == "best" and not checkpoint.exists(run_dir, "best"):
        raise UserError(f"{str(run_dir)!r} has no best.json (no validation loss yet); use the last checkpoint")
    spec, params, meta = load_model(run_dir, which)
    _check_task(meta, task_name, run_dir)
    try:
        cfg = from_dict(config_cls, meta["config"], where=f"{run_dir}/{which}.json").validate()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise checkpoint.damaged(f"{run_dir}/{which}.json", exc) from exc
    except UserError as exc:
        raise UserError(f"damaged checkpoint: {run_dir}/{which}.json: {exc}") from exc
    # A saved model is used on whatever machine loads it: the training run's device may not be here.
    cfg = dataclasses.replace(cfg, device="auto", **({"backend": backend} if backend is not None else {}))
    return params, meta, spec, cfg


def load_run(
    run_dir, which: str, task_name: str, config_cls, backend: str | None, loss: str, extras: dict | None = None
) -> LoadedRun:
    """The saved model ``<run_dir>/<which>`` of task ``task_name`` on ``backend`` (default: the
    run's own), with ``extras``: name -> (key of the checkpoint's JSON, parser), each read in one
    place so a damaged field is one line."""
    params, meta, spec, cfg = load_saved(run_dir, which, task_name, config_cls, backend)
    found = {}
    for name, (key, parse) in (extras or {}).items():
        try:
            found[name] = parse(meta[key])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise checkpoint.damaged(f"{run_dir}/{which}.json", exc) from exc
    reduction = getattr(cfg, "loss_reduction", "mean")
    trainer = make_trainer(cfg, spec, params, Optimizer(cfg.optimizer), loss, reduction)
    return LoadedRun(trainer, cfg, meta, spec, found)
