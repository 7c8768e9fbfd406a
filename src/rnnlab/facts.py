"""What a task says about one run, for a report: its key metrics next to their baselines, its
figures and its texts.  Task modules fill these in; ``rnnlab.html_report`` lays them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
    from . import jsonfile

    jsonfile.refuse_link(path)
    if not path.exists():
        return None
    return jsonfile.read(path, jsonfile.ANY_OBJECT)
