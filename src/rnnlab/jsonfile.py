"""One validating reader for the JSON files rnnlab writes, so a damaged or crafted one is one line.

``read(path, schema)`` reads a file (never through a link, never more than ``MAX_BYTES``), parses
it (nesting deeper than ``MAX_DEPTH`` is refused before the parser could recurse), and checks it
against a schema, naming the file, the field and what is wrong.  A schema is small and plain:

* a type or a tuple of types: the value is an instance (``int`` excludes ``bool``);
* ``Obj(required={...}, optional={...})``: a JSON object with those keys (others allowed);
* ``List(item)``: a JSON array whose items match ``item``;
* ``Whole(low)`` / ``Number()``: a whole number >= ``low``, or any finite number.

Every file rnnlab writes gets its schema here; a new file gets the checks by naming one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

MAX_DEPTH = 64  # rnnlab's own files nest a handful of levels
MAX_BYTES = 512 * 1024 * 1024  # a metrics log of a very long run stays far below


@dataclass(frozen=True)
class Obj:
    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)


@dataclass(frozen=True)
class List:
    item: object = object


@dataclass(frozen=True)
class Whole:
    low: int = 0


@dataclass(frozen=True)
class Number:
    pass


class Damaged(ValueError):
    """What is wrong with a value, and where in the file (``field``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}" if field else problem)


def _depth_ok(text: str) -> bool:
    """Whether brackets nest at most ``MAX_DEPTH`` deep (strings skipped), without recursing."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def check(value, schema, where: str = "") -> None:
    """Raise ``Damaged`` unless ``value`` matches ``schema`` (see the module docstring)."""
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            raise Damaged(where, f"is a {type(value).__name__}, not an object")
        for key, sub in schema.required.items():
            if key not in value:
                raise Damaged(where, f"lacks the field {key!r}")
            check(value[key], sub, f"{where}.{key}" if where else key)
        for key, sub in schema.optional.items():
            if key in value and value[key] is not None:
                check(value[key], sub, f"{where}.{key}" if where else key)
    elif isinstance(schema, List):
        if not isinstance(value, list):
            raise Damaged(where, f"is a {type(value).__name__}, not a list")
        for i, item in enumerate(value):
            check(item, schema.item, f"{where}[{i}]")
    elif isinstance(schema, Whole):
        if isinstance(value, bool) or not isinstance(value, int) or value < schema.low:
            raise Damaged(where, f"is {value!r}, not a whole number >= {schema.low}")
    elif isinstance(schema, Number):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Damaged(where, f"is {value!r}, not a finite number")
    elif schema is object:
        return
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise Damaged(where, f"is a {type(value).__name__}, not {' or '.join(t.__name__ for t in types)}")


def parse(text: str, schema, what: str):
    """The value of the JSON ``text`` checked against ``schema``; a ``UserError`` naming ``what``."""
    if not _depth_ok(text):
        raise UserError(f"{what} is damaged: its JSON nests deeper than {MAX_DEPTH} levels, which rnnlab never writes")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{what} is not valid JSON ({exc}); the file is damaged") from None
    try:
        check(value, schema)
    except Damaged as exc:
        raise UserError(f"{what} is damaged: {exc}") from None
    return value


def refuse_link(path) -> None:
    """A ``UserError`` if ``path`` (a file inside a run, backtest or prepared directory) is a
    symbolic link: rnnlab reads and writes only the directory's own files, never through a link."""
    if os.path.islink(path):
        raise UserError(
            f"{path} is a symbolic link; rnnlab does not follow links inside a run directory (it would read or "
            "write outside it): replace it with the file itself"
        )


def read(path, schema, what: str | None = None):
    """Read and check the JSON file ``path`` (see the module docstring); ``what`` names it in errors."""
    path = Path(path)
    what = what or str(path)
    refuse_link(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{what} is {size:,} bytes, more than rnnlab ever writes there; the file is damaged")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} is not UTF-8 text ({exc}); the file is damaged") from None
    return parse(text, schema, what)


# --------------------------------------------------------------------------- the files rnnlab writes

CHECKPOINT = Obj(
    required={"format": str, "version": object, "task": str, "spec": Obj(), "config": Obj()},
    optional={
        "loop": Obj(required={"step": Whole(0)}),
        "optimizer": Obj(),
        "data": Obj(),
        "logs": Obj(),
        "step": Whole(0),
        "metrics": Obj(),
        "vocab": str,
        "tensors_sha256": str,
    },
)
MANIFEST = Obj(
    required={
        "format": str,
        "version": object,
        "vocab": str,
        "dtype": str,
        "train": Obj(required={"file": str, "ids": Whole(0)}),
        "val": Obj(required={"file": str, "ids": Whole(0)}),
    },
    optional={"train_counts": List(Whole(0)), "chars": Whole(0), "text_sha256": str},
)
PLAN = Obj(required={"version": Whole(1), "config": Obj(), "settings": Obj(), "origins": List(Obj())})
FIT = Obj(
    required={
        "first_point": Whole(0),
        "fit_from": str,
        "fit_to": str,
        "fit_points": Whole(1),
        "fit_seconds": Number(),
    },
    # mase_scale: the forecast task's (its records require it); other tasks add none
    optional={"best_val_loss": (int, float), "mase_scale": Number()},
)
_NUMBERS = List((int, float))
FORECASTS = Obj(
    required={
        "origin": Whole(0),
        "fit_origin": Whole(0),
        "first": Whole(0),
        "end": Whole(0),
        "times": List(str),
        "actual": _NUMBERS,
        "predicted": _NUMBERS,
        "unshrunk": _NUMBERS,
        "persistence": _NUMBERS,
        "mase_scale": Number(),
        "fit_points": Whole(1),
        "fit_seconds": Number(),
    },
    optional={"alpha": (int, float), "random_walk_sd": _NUMBERS, "train_volatility": (int, float)},
)
CALIBRATION = Obj(
    optional={"alpha": (int, float), "points": Whole(0), "residuals": _NUMBERS, "unshrunk_residuals": _NUMBERS}
)
LOG_ROW = Obj()  # a line of metrics.jsonl or samples.jsonl: an object
SAMPLE_ROW = Obj(required={"step": Whole(0), "text": str}, optional={"temperature": (int, float)})
ANY_OBJECT = Obj()  # a file whose fields its reader checks where it uses them (test.json)
