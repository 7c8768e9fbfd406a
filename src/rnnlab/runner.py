"""The one run skeleton: train (or resume) a run of any task, start to finish, and write its report.

For the command line, sweeps, the demo and Python callers::

    from rnnlab.config import CharLMConfig
    from rnnlab.runner import train_run

    summary = train_run(CharLMConfig(max_steps=500), "runs/api", force=True)

The skeleton does what every task does the same way: hold the run directory, resume its
checkpoint or start fresh (or start again from config.toml), build the trainer, replace an
old run only now that everything is checked, write config.toml, run the one loop, write
report.html.  The task says what is its own, through its definition's ``open_task(cfg, meta, where)``
and its task object (see ``rnnlab.tasks``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from . import checkpoint, html_report, runs, tasks, train
from .config import resumable_fields, to_toml


def train_run(
    cfg,
    out: str | os.PathLike,
    resume: bool = False,
    force: bool = False,
    overrides: dict | None = None,
    quiet: bool = False,
    log_evals: bool = True,
) -> dict:
    """Train (or resume) a run of the task ``cfg`` belongs to in ``out``; returns the loop's
    summary (stop reason, steps, losses, ``run_dir``, ``trainer``) and what the task adds
    (its test results, ``vocab``, ...).

    ``overrides`` are the fields given explicitly on the command line; on resume only the
    resumable ones (budgets, reporting, the backend) may differ from the saved config.
    """
    entry = tasks.of_config(cfg)
    config_cls, out = type(cfg), Path(out)
    resumable = resumable_fields(config_cls)
    with runs.RunDir(out, resume, force) as run_dir:
        if run_dir.mode == "resume":
            r = runs.resume_run(out, entry.name, config_cls, overrides or {}, resumable)
            task = entry.open_task(r.cfg, r.meta, f"{out}/checkpoint.json")
            spec, params, optimizer, state = r.spec, r.params, r.optimizer, r.state
        else:
            if run_dir.mode == "restart":
                cfg = runs.restart_config(out, config_cls, overrides or {}, resumable)
            task = entry.open_task(cfg.validate(), None, str(out))
            spec = task.spec()
            params, optimizer, state = runs.fresh_start(task.cfg, spec)
            task.initial_params(params)
        cfg = task.cfg
        if not quiet and log_evals:
            for line in task.console_lines():
                print(line, flush=True)
        trainer = runs.make_trainer(cfg, spec, params, optimizer, task.loss, task.reduction)
        run_dir.start_writing()
        run_dir.write_text("config.toml", to_toml(cfg, header=f"rnnlab {entry.name} run configuration"))
        task.before_training(trainer, run_dir, fresh=run_dir.mode != "resume")
        budget, total_steps = task.budget()
        summary = train.run(
            task,
            trainer,
            state,
            budget,
            runs.schedule_of(cfg, total_steps),
            run_dir,
            dataclasses.asdict(cfg),
            quiet,
            log_evals,
            cfg.ema_decay,
        )
        if state.average is not None:  # the model the run leaves behind is the one it evaluated
            trainer.load_params(state.average)
        summary.update(run_dir=str(out), trainer=trainer)
        summary.update(task.after_training(trainer, summary, run_dir))
        html_report.write_run_report(out)
    return summary


def train_job(
    cfg,
    out: str | os.PathLike,
    resume: bool = False,
    force: bool = False,
    overrides: dict | None = None,
    quiet: bool = False,
) -> dict | None:
    """``train_run`` here, or, when ``torchrun`` started this process, as one process of its
    data-parallel job (``rnnlab.distributed``): rank 0 writes ``out``, the others a scratch
    directory.  Returns the summary on the process that reports (None on the others)."""
    import shutil

    from . import distributed
    from .launch import launched_by_torchrun

    if not launched_by_torchrun():
        return train_run(cfg, out, resume=resume, force=force, overrides=overrides, quiet=quiet)
    backend, batch_size, device = cfg.backend, cfg.batch_size, cfg.device
    overrides = overrides or {}
    if resume:  # the saved config decides the batch, and the backend and device unless given now
        saved = _saved_config(type(cfg), out)
        resumed = runs.device_follows_backend(overrides)
        backend, batch_size = resumed.get("backend", saved.backend), saved.batch_size
        device = resumed.get("device", saved.device)
    shard = distributed.setup(backend, batch_size, device)
    where = distributed.working_dir(str(out), resume, runs.RUN_FILES)
    try:
        summary = train_run(
            cfg, where, resume=resume, force=force, overrides=overrides, quiet=quiet or not shard.is_main
        )
    finally:
        distributed.teardown()
        if not shard.is_main:
            shutil.rmtree(where, ignore_errors=True)
    return summary if shard.is_main else None


def _saved_config(config_cls, out):
    """The config in ``out``'s checkpoint (what a torchrun job resumes with)."""
    from .config import from_dict
    from .errors import UserError

    if not runs.has_saved(out):
        raise UserError(f"--resume: no checkpoint in {str(out)!r}; start a new run without --resume")
    meta = runs.saved_meta(out)
    try:
        return from_dict(config_cls, meta["config"], where=f"{out}/checkpoint.json")
    except KeyError as exc:
        raise checkpoint.damaged(f"{out}/checkpoint.json", exc) from exc
