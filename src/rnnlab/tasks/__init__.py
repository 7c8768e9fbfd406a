"""The task registry: every task rnnlab knows, read by the command line, sweeps, reports and
the demo.  A task module says only what is specific to it (data, loss, metrics, baselines,
plots, report facts); the loop (``rnnlab.train``) and the run skeleton (``rnnlab.runner.train_run``)
are shared.  Modules are imported when first used, so naming the tasks costs nothing.

A task module provides:

* ``open_task(cfg, meta, where)``: the run's data, fresh (``meta`` None) or at a checkpoint's
  place; a task object following ``rnnlab.train.Task`` (batches, evaluation, data cursor) with
  the run skeleton's hooks (``rnnlab.train.TaskBase`` has no-op defaults for the optional ones): ``cfg``, ``loss``, ``reduction``, ``spec()``, ``initial_params(params)``,
  ``console_lines()``, ``budget() -> (Budget, total steps)``, ``before_training(trainer, out,
  fresh)`` and ``after_training(trainer, summary, out) -> dict`` (plots, the test, what it adds
  to the summary);
* ``load_run(run_dir, which, backend) -> rnnlab.runs.LoadedRun``: a saved model, for eval/sample/predict;
* ``report_facts(run_dir, meta, metrics) -> rnnlab.facts.Facts``: key metrics next to their
  baselines, figures and texts for ``report.html``.

Which settings ``--resume`` may change is said by the settings themselves (``config.Setting``).

It imports nothing above it (not the reports, sweeps or command line).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from ..config import CharLMConfig, DenoiseConfig, ForecastConfig
from ..errors import UserError


@dataclass(frozen=True)
class TaskEntry:
    name: str
    config_cls: type
    help: str             # one line, for `rnnlab --help`
    objective: str        # what a sweep minimizes: the run's best validation loss, in these units
    budget_fields: tuple  # at least one must be set so a run ends
    load: object          # () -> the task module (imported on first use)


def _charlm() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.charlm")


def _denoise() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.denoise")


def _forecast() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.forecast")


TASKS = {
    "charlm": TaskEntry("charlm", CharLMConfig, "character-level language model", "val nats/char",
                        ("max_steps", "max_minutes"), _charlm),
    "denoise": TaskEntry("denoise", DenoiseConfig, "denoise an Ornstein-Uhlenbeck signal, against Kalman",
                         "val MSE", ("steps",), _denoise),
    "forecast": TaskEntry("forecast", ForecastConfig, "forecast the next price of a series, against persistence",
                          "val (RMSE / persistence RMSE)^2", ("epochs",), _forecast),
}


def entry(name: str) -> TaskEntry:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; rnnlab knows {', '.join(TASKS)}")
    return TASKS[name]


def module(name: str) -> ModuleType:
    """The task module called ``name``."""
    return entry(name).load()


def of_config(cfg) -> TaskEntry:
    """The task whose config ``cfg`` is."""
    for task in TASKS.values():
        if isinstance(cfg, task.config_cls):
            return task
    raise UserError(f"{type(cfg).__name__} is not the config of any task; use one of "
                    f"{', '.join(t.config_cls.__name__ for t in TASKS.values())}")
