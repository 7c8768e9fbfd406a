"""``rnnlab demo``: every task on built-in data, a results table and one report.

Sizes are chosen to finish in about 1.5 minutes on a 2-core laptop (90 s measured): a character
model on the built-in corpus (samples before and after training), the OU denoiser
next to the Kalman estimate, and a forecaster next to persistence.  Each is a normal
run directory under ``out``; ``out/report.html`` shows all three.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from . import html_report, runner
from .backends import BACKENDS, installed
from .errors import UserError
from .runs import RUN_FILES, make_dir
from .tasks import TASKS


def sizes(quick: bool = False) -> dict:
    """The demo's config of every task, by name; ``quick``: seconds instead of minutes (for tests
    and a first look)."""
    return {name: task.demo(quick) for name, task in TASKS.items()}


def _on_available_backend(cfg, say):
    """The task's usual backend, or NumPy (with a note) where that engine is not installed."""
    if installed(cfg.backend):
        return cfg
    fallback = next(name for name, b in BACKENDS.items() if b.package is None)  # needs nothing installed
    say(
        f"  ({cfg.backend} is not installed, so this part runs on the {fallback} backend: "
        f"pip install 'rnnlab[{cfg.backend}]' for the usual one)"
    )
    return dataclasses.replace(cfg, backend=fallback)


def run_demo(out="runs/demo", quick: bool = False, quiet: bool = False) -> dict:
    """Train one demo run of every task in ``out/<task>``, write ``out/report.html``;
    returns {"runs": {task: run_dir}, "report": path, "table": [row, ...]}."""
    out = Path(out)
    if any((out / f).exists() for f in RUN_FILES if f != "report.html"):
        raise UserError(
            f"{str(out)!r} holds a training run; the demo writes its runs into subdirectories "
            "of a directory of its own: choose another --out"
        )
    make_dir(out)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    plan = sizes(quick)
    run_dirs = {}
    for number, (name, cfg) in enumerate(plan.items(), start=1):
        task = TASKS[name]
        cfg = _on_available_backend(cfg, say)
        say(("\n" if number > 1 else "") + f"[{number}/{len(plan)}] {name}: {task.demo_intro(cfg)}")
        result = runner.train_run(cfg, out / name, force=True, quiet=quiet)
        run_dirs[name] = out / name
        if not quiet and task.demo_shows_texts:
            for title, text in html_report.load_view(out / name).facts.texts:
                print(f"  {title}:\n    " + text.replace("\n", "\n    "))
        if result["interrupted"]:
            break
    return _finish(out, run_dirs, say)


def _finish(out: Path, run_dirs: dict, say) -> dict:
    views = [html_report.load_view(d) for d in run_dirs.values()]
    report = html_report.write_views(views, out / "report.html", title="rnnlab demo")
    table = []
    for v in views:
        first = v.key_metric
        table.append(
            {
                "task": v.task,
                "run": str(v.run_dir),
                "metric": first.metric,
                "model": first.model,
                "baseline": first.baseline,
                "verdict": first.verdict,
            }
        )
    say("\n" + format_table(table))
    say(f"\nreport: {report}  (open it in a browser)")
    return {"runs": {k: str(v) for k, v in run_dirs.items()}, "report": str(report), "table": table}


def format_table(rows: list[dict]) -> str:
    """The demo's results as aligned plain text."""
    columns = [("task", "task"), ("model", "model"), ("baseline", "baseline"), ("verdict", "model vs baseline")]
    widths = {k: max(len(title), *(len(r[k]) for r in rows)) for k, title in columns}
    lines = ["  ".join(title.ljust(widths[k]) for k, title in columns), "  ".join("-" * widths[k] for k, _ in columns)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k, _ in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
