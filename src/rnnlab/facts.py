"""What a task says about one run, for a report: its key metrics next to their baselines, its
figures and its texts.  Task modules fill these in; ``rnnlab.html_report`` lays them out."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError


@dataclass
class Headline:
    """One key metric next to its baseline. ``standing``: better, close or worse than the baseline."""

    metric: str
    model: str
    baseline: str
    verdict: str
    standing: str = "close"


@dataclass
class Facts:
    """What a task shows about one run; figures are (caption, PNG file name in the run directory)."""

    headline: list[Headline] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    val_curve: tuple[str, str] = ("val_loss", "validation loss")  # metrics key, axis label


def read_json(path: Path) -> dict | None:
    """A JSON file of the run, or None when absent; a damaged one is a UserError naming it."""
    if os.path.islink(path):
        raise UserError(f"{path} is a symbolic link; rnnlab reads only a run directory's own files: replace it")
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the run directory is damaged") from exc
