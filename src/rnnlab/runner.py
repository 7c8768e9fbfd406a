"""Training a run of any task, start to finish: the task's ``train_run`` (which opens the run
directory, builds data and model, trains with the one loop and tests), then ``report.html``.

This is the entry point above the task modules, for the command line, sweeps, the demo and
Python callers::

    from rnnlab.config import CharLMConfig
    from rnnlab.runner import train_run

    summary = train_run(CharLMConfig(max_steps=500), "runs/api", force=True)
"""

from __future__ import annotations

import os

from . import html_report, tasks


def train_run(cfg, out: str | os.PathLike, resume: bool = False, force: bool = False,
              overrides: dict | None = None, quiet: bool = False, log_evals: bool = True) -> dict:
    """Train (or resume) a run of the task ``cfg`` belongs to in ``out``, write its report, and
    return the task's summary (``summary["run_dir"]``, losses, test results, the trainer)."""
    task = tasks.of_config(cfg)
    # The report is written inside the task's run, while it still holds the run directory.
    return task.load().train_run(cfg, out, resume=resume, force=force, overrides=overrides, quiet=quiet,
                                 log_evals=log_evals, write_report=html_report.write_run_report)
