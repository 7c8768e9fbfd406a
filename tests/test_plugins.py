"""Tasks are plug-ins: the entry points read the registry and name no task.

A task's name may be written only in its own modules (``tasks/NAME.py``, ``tasks/NAME_*.py``,
``cli/NAME.py``) and in the registry that lists them; anywhere else a string equal to a task
name is an ``if task == ...`` or a table keyed by task that the next task would have to edit.
"""

import ast
from pathlib import Path

import pytest

import rnnlab
from rnnlab.tasks import TASKS
from rnnlab.tasks.definition import TaskDefinition

SRC = Path(rnnlab.__file__).resolve().parent


def _owner(path: Path) -> str | None:
    """The task whose own module ``path`` is, or None for a shared module."""
    rel = path.relative_to(SRC)
    if rel.parts[0] in ("tasks", "cli") and len(rel.parts) == 2:
        stem = rel.stem
        for name in TASKS:
            if stem == name or (rel.parts[0] == "tasks" and stem.startswith(f"{name}_")):
                return name
    return None


def literals_in(path: Path, owner: str | None) -> list[str]:
    """``line: 'name'`` for every string constant in ``path`` equal to a task name other than ``owner``."""
    return [
        f"{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in TASKS
        and node.value != owner
    ]


def task_name_literals() -> list[str]:
    """``file:line: 'name'`` for every task name written outside its own modules."""
    registry = SRC / "tasks" / "__init__.py"
    return [
        f"{path.relative_to(SRC)}:{hit}"
        for path in sorted(SRC.rglob("*.py"))
        if path != registry
        for hit in literals_in(path, _owner(path))
    ]


def test_no_task_name_is_written_outside_its_own_modules():
    assert task_name_literals() == []


def test_the_check_sees_a_task_name_where_it_does_not_belong(tmp_path):
    """The scan itself works: a comparison with a task name is reported, except in its own module."""
    planted = tmp_path / "shared.py"
    planted.write_text('def f(task):\n    return task == "forecast" or task == "charlm x"\n', encoding="utf-8")
    assert literals_in(planted, None) == ["2: 'forecast'"]
    assert literals_in(planted, "forecast") == []
    assert _owner(SRC / "tasks" / "forecast_stats.py") == "forecast" and _owner(SRC / "cli" / "charlm.py") == "charlm"
    assert _owner(SRC / "api.py") is None and _owner(SRC / "cli" / "tools.py") is None


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_is_one_complete_definition(name):
    task = TASKS[name]
    assert isinstance(task, TaskDefinition) and task.name == name
    cfg = task.demo(True)
    assert isinstance(cfg, task.config_cls) and task.demo_intro(cfg)
    assert task.sweep_space and all(hasattr(cfg, key) for key in task.sweep_space)
    assert any(hasattr(cfg, f) for f in task.budget_fields) and task.help and task.objective
