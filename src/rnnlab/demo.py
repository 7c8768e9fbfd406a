"""``rnnlab demo``: the three tasks on built-in data, a results table and one report.

Sizes are chosen to finish in about 1.5 minutes on a 2-core laptop (90 s measured): a character
model on the built-in corpus (samples before and after training), the OU denoiser
next to the Kalman estimate, and a forecaster next to persistence.  Each is a normal
run directory under ``out``; ``out/report.html`` shows all three.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from . import html_report, runner
from .config import PRESETS, CharLMConfig, DenoiseConfig, ForecastConfig
from .errors import UserError
from .runs import RUN_FILES, make_dir


@dataclass(frozen=True)
class DemoSizes:
    charlm: CharLMConfig
    denoise: DenoiseConfig
    forecast: ForecastConfig


def sizes(quick: bool = False) -> DemoSizes:
    """The demo's three configs; ``quick``: seconds instead of minutes (for tests and a first look)."""
    if quick:
        return DemoSizes(
            CharLMConfig(hidden_size=32, seq_len=32, batch_size=16, max_steps=60, eval_every=30, eval_max_chars=4000,
                         sample_length=80),
            DenoiseConfig(steps=300, eval_every=100, val_sequences=1000, test_sequences=5000),
            ForecastConfig(cell="lstm", target="returns", epochs=4, builtin_points=1000))
    return DemoSizes(
        # The best charlm settings found for about a minute of training (the demo's budget for it).
        CharLMConfig(**PRESETS["fast-60s"].settings, eval_every=250, sample_length=300),
        DenoiseConfig(),
        ForecastConfig(cell="lstm", target="returns"))


def _installed(backend: str) -> bool:
    return backend == "numpy" or importlib.util.find_spec(backend) is not None


def _on_available_backend(cfg, say):
    """The task's usual backend, or NumPy (with a note) where that engine is not installed."""
    if _installed(cfg.backend):
        return cfg
    say(f"  ({cfg.backend} is not installed, so this part runs on the NumPy backend: "
        f"pip install 'rnnlab[{cfg.backend}]' for the usual one)")
    return dataclasses.replace(cfg, backend="numpy")


def run_demo(out="runs/demo", quick: bool = False, quiet: bool = False) -> dict:
    """Train the three demo runs in ``out/{charlm,denoise,forecast}``, write ``out/report.html``;
    returns {"runs": {task: run_dir}, "report": path, "table": [row, ...]}."""
    out = Path(out)
    if any((out / f).exists() for f in RUN_FILES if f != "report.html"):
        raise UserError(f"{str(out)!r} holds a training run; the demo writes its runs into subdirectories "
                        "of a directory of its own: choose another --out")
    make_dir(out)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
    plan = sizes(quick)
    run_dirs = {}

    c = _on_available_backend(plan.charlm, say)
    say(f"[1/3] charlm: a {c.cell} language model (H={c.hidden_size}) on the built-in corpus, "
        f"{c.max_steps} steps of {c.batch_size}x{c.seq_len} characters ({c.backend} backend)")
    result = runner.train_run(c, out / "charlm", force=True, quiet=quiet)
    run_dirs["charlm"] = out / "charlm"
    if not quiet:
        for title, text in html_report.load_view(out / "charlm").facts.texts:
            print(f"  {title}:\n    " + text.replace("\n", "\n    "))
    if result["interrupted"]:
        return _finish(out, run_dirs, say)

    d = _on_available_backend(plan.denoise, say)
    say(f"\n[2/3] denoise: {d.cell} H={d.hidden_size} on a noisy Ornstein-Uhlenbeck signal, against the Kalman "
        f"estimate ({d.steps} steps, {d.backend} backend)")
    result = runner.train_run(d, out / "denoise", force=True, quiet=quiet)
    run_dirs["denoise"] = out / "denoise"
    if result["interrupted"]:
        return _finish(out, run_dirs, say)

    f = _on_available_backend(plan.forecast, say)
    say(f"\n[3/3] forecast: {f.cell} H={f.hidden_size} on the built-in price series ({f.builtin_points} points), "
        f"against persistence ({f.epochs} epochs, {f.backend} backend)")
    runner.train_run(f, out / "forecast", force=True, quiet=quiet)
    run_dirs["forecast"] = out / "forecast"
    return _finish(out, run_dirs, say)


def _finish(out: Path, run_dirs: dict, say) -> dict:
    views = [html_report.load_view(d) for d in run_dirs.values()]
    report = html_report.write_views(views, out / "report.html", title="rnnlab demo")
    table = []
    for v in views:
        first = v.key_metric
        table.append({"task": v.task, "run": str(v.run_dir), "metric": first.metric, "model": first.model,
                      "baseline": first.baseline, "verdict": first.verdict})
    say("\n" + format_table(table))
    say(f"\nreport: {report}  (open it in a browser)")
    return {"runs": {k: str(v) for k, v in run_dirs.items()}, "report": str(report), "table": table}


def format_table(rows: list[dict]) -> str:
    """The demo's results as aligned plain text."""
    columns = [("task", "task"), ("model", "model"), ("baseline", "baseline"), ("verdict", "model vs baseline")]
    widths = {k: max(len(title), *(len(r[k]) for r in rows)) for k, title in columns}
    lines = ["  ".join(title.ljust(widths[k]) for k, title in columns),
             "  ".join("-" * widths[k] for k, _ in columns)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k, _ in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
