"""``report.html``: one self-contained page per run (or several runs side by side).

A report reads only what a run directory already holds (config.toml, metrics.jsonl,
checkpoint.json, best.json, test.json, samples.jsonl and the PNG plots), so it can be
rebuilt at any time with ``rnnlab report RUN_DIR``.  What a task shows as its key
metrics, plots and texts comes from that task's ``report_facts``; the layout here is
the same for every task.  Images are embedded as data URIs, there is no script, and
the layout reflows to one column on a phone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, tasks
from .config import read_toml
from .errors import UserError
from .facts import Facts, Headline, read_json  # noqa: F401  (Facts and Headline: part of this module's API)
from .report import pyplot, read_metrics


@dataclass
class RunView:
    """Everything a report shows about one run directory."""

    run_dir: Path
    task: str
    meta: dict
    config: dict
    metrics: list[dict]
    facts: Facts

    @property
    def key_metric(self) -> Headline:
        """The task's first headline (what a summary row shows), or dashes before any evaluation."""
        return self.facts.headline[0] if self.facts.headline else Headline("-", "-", "-", "-")


def load_view(run_dir) -> RunView:
    """Read one run directory for a report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise UserError(f"run directory {str(run_dir)!r} {what}")
    meta = read_json(run_dir / "checkpoint.json")
    if meta is None:
        raise UserError(
            f"{str(run_dir)!r} holds no run (no checkpoint.json); give a directory that `rnnlab TASK train --out` wrote"
        )
    task = meta.get("task")
    if task not in tasks.TASKS:
        raise UserError(f"{run_dir}/checkpoint.json names task {task!r}, not one of {', '.join(tasks.TASKS)}")
    config = read_toml(run_dir / "config.toml") if (run_dir / "config.toml").exists() else meta.get("config", {})
    try:
        metrics = read_metrics(run_dir)
    except json.JSONDecodeError as exc:
        raise UserError(f"{run_dir}/metrics.jsonl has a damaged line ({exc})") from exc
    return RunView(run_dir, task, meta, config, metrics, tasks.TASKS[task].report_facts(run_dir, meta, metrics))


# --------------------------------------------------------------------------- pieces


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _esc(value) -> str:
    return html.escape(str(value))


def timing(view: RunView) -> list[tuple[str, str]]:
    """(label, value) rows: steps, training time, throughput and the machine they were measured on."""
    loop = view.meta.get("loop", {})
    rows = [("steps", f"{loop.get('step', 0):,}")]
    seconds = loop.get("train_seconds")
    if seconds is not None:
        rows.append(("training time", f"{seconds:,.1f} s" if seconds < 600 else f"{seconds / 60:,.1f} min"))
    for key in sorted({k for r in view.metrics for k in r if k.endswith("_per_s") and r[k]}):
        values = [r[key] for r in view.metrics if r.get(key)]
        rows.append(("throughput", f"{statistics.median(values):,.0f} {key[:-6]}/s (median over evaluations)"))
    machine = view.meta.get("machine")
    backend = view.meta.get("backend", view.config.get("backend", "?"))
    if machine:
        rows.append(
            (
                "measured on",
                f"{backend} backend, {machine.get('device', 'cpu')}, {machine.get('cpus')} "
                f"CPUs, {machine.get('platform')} ({machine.get('arch')}), Python "
                f"{machine.get('python')}",
            )
        )
    else:
        rows.append(("backend", backend))
    return rows


def _title(view: RunView) -> str:
    spec = view.meta.get("spec", {})
    model = f"{spec.get('cell', '?')} H={spec.get('hidden_size', '?')}"
    if spec.get("num_layers", 1) > 1:
        model += f" x{spec['num_layers']} layers"
    return f"{view.task}: {model}"


def _section(view: RunView, heading_level: int = 2) -> str:
    h = f"h{heading_level}"
    sub = f"h{heading_level + 1}"
    parts = [f'<section class="run"><{h}>{_esc(_title(view))}</{h}>', f'<p class="where">{_esc(view.run_dir)}</p>']
    if view.facts.headline:
        parts.append(_headline_cards(view.facts.headline))
    else:
        parts.append("<p>No evaluation yet.</p>")
    for caption, name in view.facts.figures:
        path = view.run_dir / name
        if path.exists():
            parts.append(f"<figure>{_img(path.read_bytes(), caption)}<figcaption>{_esc(caption)}</figcaption></figure>")
    for title, text in view.facts.texts:
        parts.append(f"<{sub}>{_esc(title)}</{sub}><pre>{_esc(text)}</pre>")
    parts.append(f"<{sub}>Timing</{sub}>")
    parts.append(_table(["", ""], [[_esc(k), _esc(v)] for k, v in timing(view)], "kv"))
    config_rows = [[_esc(k), f"<code>{_esc(v)}</code>"] for k, v in view.config.items()]
    parts.append(
        f"<details><summary>Configuration ({len(config_rows)} settings; "
        f"<code>rnnlab {view.task} train --config {_esc(view.run_dir / 'config.toml')}</code> "
        f"repeats the run)</summary>{_table(['setting', 'value'], config_rows, 'kv')}</details>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def comparison_figure(views: list[RunView]) -> bytes | None:
    """Validation curves of runs of one task on one axis (PNG bytes), or None."""
    if len(views) < 2 or len({v.task for v in views}) != 1:
        return None
    key, label = views[0].facts.val_curve
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    drawn = 0
    for v in views:
        points = [(r["step"], r[key]) for r in v.metrics if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=v.run_dir.name)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _differences(views: list[RunView]) -> list[str]:
    keys = []
    for v in views:
        keys += [k for k in v.config if k not in keys]
    return [k for k in keys if len({json.dumps(v.config.get(k)) for v in views}) > 1]


CSS = """
:root { color-scheme: light; --fg: #1d232b; --muted: #5b6470; --line: #d8dde3; --bg: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1500px; padding: 1rem; font: 15px/1.45 system-ui, -apple-system,
       "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.5rem; margin: 0.2rem 0 0.6rem; }
h2 { font-size: 1.2rem; margin: 0.2rem 0; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; }
.where, .muted { color: var(--muted); margin: 0 0 0.6rem; overflow-wrap: anywhere; }
.runs { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); }
.run { border: 1px solid var(--line); border-radius: 8px; padding: 0.8rem; min-width: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 0.4rem 0; }
th, td { text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; }
figure { margin: 0.8rem 0; }
img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.9rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f4f6f8; padding: 0.5rem; border-radius: 6px;
      font-size: 0.85rem; }
code { font-size: 0.85rem; overflow-wrap: anywhere; }
details { margin-top: 0.6rem; }
.metrics { display: grid; gap: 0.5rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 220px), 1fr)); }
.metric { border-left: 4px solid var(--line); padding: 0.2rem 0.6rem; }
.metric .name { color: var(--muted); font-size: 0.9rem; }
.better { color: #176b2c; font-weight: 600; }
.close { color: #8a5a00; font-weight: 600; }
.worse { color: #a1261b; font-weight: 600; }
"""


def render(views: list[RunView], title: str | None = None) -> str:
    """The HTML text of a report on ``views`` (one run, or several side by side)."""
    if not views:
        raise UserError("a report needs at least one run directory")
    title = title or (
        f"rnnlab report: {views[0].run_dir.name}" if len(views) == 1 else f"rnnlab report: {len(views)} runs"
    )
    parts = []
    if len(views) > 1:
        # Settings that differ, when the runs are of one task (other tasks have other settings).
        differing = _differences(views) if len({v.task for v in views}) == 1 else []
        header = ["run", "task", "key metric", "model", "baseline", "model vs baseline", *[_esc(k) for k in differing]]
        rows = []
        for v in views:
            first = v.key_metric
            rows.append(
                [
                    _esc(v.run_dir.name),
                    _esc(v.task),
                    _esc(first.metric),
                    _esc(first.model),
                    _esc(first.baseline),
                    f'<span class="{_esc(first.standing)}">{_esc(first.verdict)}</span>',
                    *[f"<code>{_esc(v.config.get(k, '-'))}</code>" for k in differing],
                ]
            )
        parts.append("<h2>Summary</h2>")
        parts.append(_table(header, rows, "summary"))
        figure = comparison_figure(views)
        if figure is not None:
            caption = f"{views[0].facts.val_curve[1]} of each run"
            parts.append(f"<figure>{_img(figure, caption)}<figcaption>{_esc(caption)}</figcaption></figure>")
    parts.append('<div class="runs">')
    parts += [_section(v, 2) for v in views]
    parts.append("</div>")
    return page(title, parts)


def page(title: str, body: list[str]) -> str:
    """A whole self-contained HTML page: the title, when it was written, then ``body``'s parts."""
    made = time.strftime("%Y-%m-%d %H:%M")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="muted">Written by rnnlab on {made}.</p>',
        *body,
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _headline_cards(headline: list[Headline]) -> str:
    # Cards rather than a table: they reflow on a phone instead of scrolling sideways.
    cards = "".join(
        f'<div class="metric"><div class="name">{_esc(x.metric)}</div>'
        f"<div>model: <b>{_esc(x.model)}</b></div><div>baseline: {_esc(x.baseline)}</div>"
        f'<div class="{_esc(x.standing)}">{_esc(x.verdict)}</div></div>'
        for x in headline
    )
    return f'<div class="metrics">{cards}</div>'


def page_section(
    title: str,
    where: str,
    headline: list[Headline],
    figures: list[tuple[str, Path]],
    texts: list[tuple[str, str]],
    tables: list[tuple[str, list[str], list[list[str]]]],
) -> str:
    """A section of anything that is not one run (a backtest): key metrics as cards, figures
    (caption, PNG path; absent files are left out), texts and tables of plain strings."""
    parts = [
        f'<section class="run"><h2>{_esc(title)}</h2>',
        f'<p class="where">{_esc(where)}</p>',
        _headline_cards(headline),
    ]
    for caption, path in figures:
        if Path(path).exists():
            parts.append(
                f"<figure>{_img(Path(path).read_bytes(), caption)}<figcaption>{_esc(caption)}</figcaption></figure>"
            )
    for heading, text in texts:
        parts.append(f"<h3>{_esc(heading)}</h3><pre>{_esc(text)}</pre>")
    for heading, header, rows in tables:
        parts.append(f"<h3>{_esc(heading)}</h3>")
        parts.append(_table([_esc(h) for h in header], [[_esc(c) for c in row] for row in rows]))
    parts.append("</section>")
    return "\n".join(parts)


def write_run_report(run_dir) -> Path:
    """Write ``<run_dir>/report.html`` (atomically) and return its path."""
    return write_report([run_dir])


def write_report(run_dirs: list, out=None, title: str | None = None) -> Path:
    """One report on several runs side by side (default ``out``: ``report.html`` in the only run,
    or ``report.html`` in the current directory)."""
    return write_views([load_view(d) for d in run_dirs], out, title)


def write_views(views: list[RunView], out=None, title: str | None = None) -> Path:
    """``write_report`` for runs already read with ``load_view``."""
    if out is None:
        out = views[0].run_dir / "report.html" if len(views) == 1 else Path("report.html")
    out = Path(out)
    if out.is_dir():
        out = out / "report.html"
    if not out.parent.exists():
        raise UserError(f"cannot write {str(out)!r}: the directory {str(out.parent)!r} does not exist")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {str(out)!r}: {str(out.parent)!r} is a file, not a directory")
    checkpoint.atomic_write_text(out, render(views, title))
    return out
