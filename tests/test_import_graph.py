"""The modules of rnnlab import each other in one direction only: no cycles, counting every
import statement (module level or inside a function) and every importlib call.

An ``importlib.import_module`` whose name is not a literal cannot be followed, so it is
refused too: a registry names its modules literally (see ``rnnlab.tasks``), or names a package
and computes only the module (``f"rnnlab.cli.{name}"``), which counts as importing every module
of that package.
"""

import ast
from pathlib import Path

import rnnlab

SRC = Path(rnnlab.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["rnnlab", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, level: int, name: str) -> str:
    if level == 0:
        return name
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _family_prefix(arg) -> str | None:
    """``"rnnlab.cli."`` for an f-string ``f"rnnlab.cli.{name}"`` (a literal package, then one
    computed module name): the import may reach any module of the package, and the graph says so."""
    if (
        isinstance(arg, ast.JoinedStr)
        and len(arg.values) == 2
        and isinstance(arg.values[0], ast.Constant)
        and isinstance(arg.values[1], ast.FormattedValue)
    ):
        prefix = arg.values[0].value
        if isinstance(prefix, str) and prefix.startswith("rnnlab.") and prefix.endswith("."):
            return prefix
    return None


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> rnnlab modules it imports, importlib calls with a name that is not a literal)."""
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    edges, dynamic = {m: set() for m in paths}, []
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names if a.name.startswith("rnnlab")]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module or "")
                if base.startswith("rnnlab"):
                    # ``from . import x`` imports module x; ``from .cells import ModelSpec``, module cells.
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else known(base) for a in node.names]
            elif (
                isinstance(node, ast.Call)
                and node.args
                and (getattr(node.func, "attr", None) or getattr(node.func, "id", ""))
                in ("import_module", "__import__")
            ):
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    targets = [known(arg.value)] if arg.value.startswith("rnnlab") else []
                elif _family_prefix(arg):
                    # f"rnnlab.cli.{name}": any module of that package may be imported
                    prefix = _family_prefix(arg)
                    targets = [m for m in paths if m.startswith(prefix) and "." not in m[len(prefix) :]]
                else:
                    dynamic.append(f"{module} line {node.lineno}")
            edges[module].update(t for t in targets if t and t != module)
    return edges, dynamic


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_in_a_circle():
    edges, dynamic = import_graph()
    assert not dynamic, f"importlib calls with computed names cannot be checked: {dynamic}"
    assert not cycles(edges), cycles(edges)


def test_the_checker_sees_a_cycle_through_a_function_local_import():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    graph, _ = import_graph()
    assert "rnnlab.tasks.charlm" in graph["rnnlab.tasks"]  # the registry's literal importlib names
    assert {"rnnlab.cli.forecast", "rnnlab.cli.tools"} <= graph["rnnlab.cli"]  # f"rnnlab.cli.{name}": the package
    assert "rnnlab.backends.torch_backend" in graph["rnnlab.distributed"]  # a function-local import
