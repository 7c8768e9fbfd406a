"""Registries, not names: tasks are plug-ins read from their registry, cells are known by their
table row, backends by their facts, a carry's shape by one module.

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
    """``line: 'name'`` for every string constant in ``path`` equal to a task name other than ``owner``,
    except a dict's key or a subscript's index: there the word names data (a checkpoint's
    ``meta["series"]``, a result's ``"forecast"``), not a task."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    data_words = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys if k is not None}
    data_words |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    return [
        f"{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in TASKS
        and node.value != owner
        and id(node) not in data_words
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


# --------------------------------------------------------------------------- cells and backends

STRING_METHODS = {"startswith", "endswith", "removesuffix", "removeprefix"}


def _strings(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def name_checks_in(path: Path, names: set, suffixes: tuple = (), dict_keys: bool = True) -> list[str]:
    """``line: what`` (sorted) for every place ``path`` decides by a name in ``names``: a comparison
    with it, a ``startswith``/``endswith`` of it (or of one of ``suffixes``), or (``dict_keys``) a
    dict keyed by it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            hits = [s for operand in (node.left, *node.comparators) for s in _strings(operand) if s in names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in STRING_METHODS:
            hits = [s for a in node.args for s in _strings(a) if s in names or s in suffixes]
        elif isinstance(node, ast.Dict) and dict_keys:
            hits = [k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
        else:
            hits = []
        found += [f"{node.lineno}: {h!r}" for h in hits]
    return sorted(found)


def test_cells_are_known_by_their_table_row_not_their_name():
    """Outside cells.py and the backends' step functions, code reads the cell table instead of
    comparing cell names; a cell may still be named as a value (config defaults and presets,
    sweep spaces)."""
    from rnnlab.cells import CELLS

    allowed = {SRC / "cells.py", *(SRC / "backends").glob("*.py")}
    found = [
        f"{p.relative_to(SRC)}:{hit}"
        for p in sorted(SRC.rglob("*.py"))
        if p not in allowed
        for hit in name_checks_in(p, set(CELLS), ("_linear",))
    ]
    assert found == []


def test_backends_are_known_by_their_facts_not_their_name():
    """No comparison with a backend's name outside the backend list (``rnnlab.backends``): what
    differs between backends is a fact of theirs (takes --device, trains data-parallel, installed).
    A table keyed by a name that is also a backend's (interchange's torch format) is a value."""
    from rnnlab.config import BACKEND_NAMES

    allowed = {SRC / "backends" / "__init__.py"}
    found = [
        f"{p.relative_to(SRC)}:{hit}"
        for p in sorted(SRC.rglob("*.py"))
        if p not in allowed
        for hit in name_checks_in(p, set(BACKEND_NAMES), dict_keys=False)
    ]
    assert found == []


def test_only_the_carry_module_knows_a_carry_is_a_tuple():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("carry.py", "jsonfile.py"):  # jsonfile: a schema's tuple of types, not a carry
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "isinstance"
                and len(node.args) == 2
                and getattr(node.args[1], "id", None) == "tuple"
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []


def test_the_name_checks_see_what_they_look_for(tmp_path):
    planted = tmp_path / "shared.py"
    planted.write_text(
        "def f(cell, backend):\n"
        '    a = cell == "lstm"\n'
        '    b = cell.startswith("mingru") or cell.endswith("_linear")\n'
        '    c = {"rnn": 1}\n'
        '    d = backend != "torch"\n'
        '    return dict(cell="lstm")\n',
        encoding="utf-8",
    )
    from rnnlab.cells import CELLS

    assert name_checks_in(planted, set(CELLS), ("_linear",)) == ["2: 'lstm'", "3: '_linear'", "3: 'mingru'", "4: 'rnn'"]
    assert name_checks_in(planted, {"torch"}) == ["5: 'torch'"]


def test_every_backend_trainer_has_what_the_protocol_names():
    import inspect

    from rnnlab.backends import get_backend, installed
    from rnnlab.backends.common import Trainer
    from rnnlab.config import BACKEND_NAMES

    methods = {n for n, v in vars(Trainer).items() if callable(v) and not n.startswith("_")}
    attributes = set(Trainer.__annotations__) | {"params"}
    assert methods >= {"train_step", "forward", "step", "init_carry", "load_params", "state_tensors"}
    # Every installed backend (all of them in the full suite; the lowest-versions job has no torch).
    checked = [name for name in BACKEND_NAMES if installed(name)]
    assert "numpy" in checked
    for name in checked:
        cls = get_backend(name).Trainer
        assert cls.name == name
        for method in methods:
            signature = inspect.signature(getattr(cls, method))
            assert list(signature.parameters)[: len(inspect.signature(getattr(Trainer, method)).parameters)] == list(
                inspect.signature(getattr(Trainer, method)).parameters
            ), (name, method)
        source = inspect.getsource(cls)
        for attribute in attributes:
            assert f"self.{attribute}" in source or f"def {attribute}" in source or hasattr(cls, attribute), (
                name,
                attribute,
            )


def test_backtests_come_with_the_forecaster_capability():
    """A task gets `backtest` by declaring a Forecaster, not by its name."""
    from rnnlab import backtest
    from rnnlab.cli import COMMANDS, build_parser
    from rnnlab.errors import UserError

    parser = build_parser()
    for name, task in TASKS.items():
        assert ((name, "backtest") in COMMANDS) == task.forecasts
        verbs = parser._subparsers._group_actions[0].choices[name]._subparsers._group_actions[0].choices
        assert ("backtest" in verbs) == task.forecasts
        if not task.forecasts:
            with pytest.raises(UserError, match="has no backtest"):
                backtest._forecaster(task.demo(True))
    assert any(task.forecasts for task in TASKS.values())
