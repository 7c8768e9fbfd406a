"""Plots shared by every task (PNG, written atomically); task-specific figures live in the task.

matplotlib is imported inside each function with the Agg backend, so
importing this module costs nothing and no display is needed.
"""

from __future__ import annotations

from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of ``<run_dir>/metrics.jsonl`` (empty when there is none yet)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def read_jsonl(path: Path, schema=None) -> list[dict]:
    """The rows of a JSON-lines log (empty when absent), each an object (checked against
    ``schema``, a ``rnnlab.jsonfile`` schema, when given; a bad row is one line naming it).  A
    last line without its newline is a write a crash cut short: it is left out (the run rewrites
    it when resumed)."""
    from . import jsonfile

    path = Path(path)
    jsonfile.refuse_link(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    complete = lines[:-1]  # after the last newline: "" or an unfinished line
    return [
        jsonfile.parse(line, schema or jsonfile.LOG_ROW, f"{path}, line {number}")
        for number, line in enumerate(complete, start=1)
        if line.strip()
    ]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Save ``fig`` to ``path`` so a reader never sees half a PNG, then close it."""
    import io

    from .checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


def plot_losses(
    run_dir: Path,
    ylabel: str,
    val_key: str,
    baseline: tuple[str, float] | None = None,
    log_y: bool = False,
    name: str = "loss.png",
) -> Path | None:
    """Smoothed train loss and validation loss per evaluation, with an optional
    horizontal ``(label, value)`` baseline; returns the path, or None with fewer than 2 evals."""
    rows = [r for r in read_metrics(run_dir) if r.get("train_loss") is not None]
    if len(rows) < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_loss"] for r in rows], label="train (smoothed)")
    if any(val_key in r for r in rows):
        ax.plot(steps, [r.get(val_key, float("nan")) for r in rows], label="validation")
    if baseline is not None:
        ax.axhline(baseline[1], color="k", linestyle="--", linewidth=1, label=baseline[0])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path = Path(run_dir) / name
    save_figure(fig, path)
    return path


def plot_curves(
    path: Path,
    curves: dict[str, list[tuple[int, float]]],
    ylabel: str,
    title: str,
    baseline: tuple[str, float] | None = None,
) -> Path:
    """Several ``label -> [(step, loss), ...]`` curves on one log-scale figure (e.g. a learning-rate search)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for label, points in curves.items():
        if points:
            ax.plot(*zip(*points), label=label)
    if baseline is not None:
        ax.axhline(baseline[1], color="k", linestyle="--", linewidth=1, label=baseline[0])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
