"""The task registry: every task rnnlab knows, by name, each one ``TaskDefinition`` (see
``rnnlab.tasks.definition``) at the end of its own module.  Command line, Python API,
``rnnlab.load``, demo, sweeps, reports and ONNX export iterate over it and name no task.

A task module says only what is specific to it (data, loss, metrics, baselines, plots, report
facts); the loop (``rnnlab.train``) and the run skeleton (``rnnlab.runner.train_run``) are
shared.  Its task object follows ``rnnlab.train.Task`` (batches, evaluation, data cursor) with
the run skeleton's hooks (``rnnlab.train.TaskBase`` has no-op defaults for the optional ones):
``cfg``, ``loss``, ``reduction``, ``spec()``, ``initial_params(params)``, ``console_lines()``,
``budget() -> (Budget, total steps)``, ``before_training(trainer, out, fresh)`` and
``after_training(trainer, summary, out) -> dict`` (plots, the test, what it adds to the summary).

A module is imported when its definition is first read, so listing the names costs nothing.
Adding a task: a module here ending with ``TASK = TaskDefinition(...)``, one line in
``_MODULES``, its verbs in ``rnnlab/cli/NAME.py`` (see ARCHITECTURE.md).

It imports nothing above it (not the reports, sweeps or command line).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from ..errors import UserError
from .definition import TaskDefinition


def _charlm() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.charlm")


def _denoise() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.denoise")


def _forecast() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.forecast")


def _series() -> ModuleType:
    return importlib.import_module("rnnlab.tasks.series")


# Module names are literal so that the import graph can be checked (tests/test_import_graph.py).
_MODULES = {"charlm": _charlm, "denoise": _denoise, "forecast": _forecast, "series": _series}


class _Registry(Mapping):
    """name -> ``TaskDefinition``; iterating gives the names without importing any module."""

    def __getitem__(self, name: str) -> TaskDefinition:
        definition = _MODULES[name]().TASK
        assert definition.name == name, (definition.name, name)
        return definition

    def __iter__(self):
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


TASKS = _Registry()


def entry(name: str) -> TaskDefinition:
    """The task called ``name``, or a ``UserError`` listing the known ones."""
    if name not in _MODULES:
        raise UserError(f"unknown task {name!r}; rnnlab knows {', '.join(TASKS)}")
    return TASKS[name]


def of_config(cfg) -> TaskDefinition:
    """The task whose config ``cfg`` is."""
    for task in TASKS.values():
        if isinstance(cfg, task.config_cls):
            return task
    raise UserError(
        f"{type(cfg).__name__} is not the config of any task; use one of "
        f"{', '.join(t.config_cls.__name__ for t in TASKS.values())}"
    )


def with_method(method: str) -> list[str]:
    """The tasks whose models offer ``method`` (``TaskDefinition.model_methods``)."""
    return [name for name, task in TASKS.items() if method in task.model_methods]
