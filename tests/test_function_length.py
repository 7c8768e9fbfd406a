"""Small functions with one job: none over about 60 lines without a reason in its docstring.

A function may run longer when its docstring says why, with the words "Long on purpose:" (a
parser's list of flags, hand-written backprop read top to bottom).  The limit counts the lines
as formatted (Ruff), decorators and docstring included.
"""

import ast
from pathlib import Path

import rnnlab

SRC = Path(rnnlab.__file__).resolve().parent
LIMIT = 70  # "about 60": a formatter's wrapped call is not a new job
MARK = "Long on purpose:"


def long_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > LIMIT and MARK not in (ast.get_docstring(node) or ""):
                found.append(f"{node.name} ({length} lines)")
    return found


def test_no_long_function_without_a_reason():
    found = [f"{p.relative_to(SRC)}: {f}" for p in sorted(SRC.rglob("*.py")) for f in long_functions(p)]
    assert found == []


def test_the_length_check_counts_lines(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "a.py").write_text(f"def f():\n{body}\n", encoding="utf-8")
    (tmp_path / "b.py").write_text(f'def g():\n    """{MARK} a table."""\n{body}\n', encoding="utf-8")
    assert long_functions(tmp_path / "a.py") == [f"f ({LIMIT + 1} lines)"]
    assert long_functions(tmp_path / "b.py") == []
