"""Rolling-origin backtests of a task that forecasts: many forecast origins, each fitted on its past only.

Any task whose definition declares a ``Forecaster`` (``rnnlab.tasks.definition``) gets them: its
hooks load the series, make an origin's fit settings, a saved fit's forecasts and the summary;
this module is the engine around them, the same for every task: the origins, the fits (the
task's own ``train_run`` at each origin, in worker processes), the directory, resuming and
signals.  ``forecast`` judges one-step price forecasts against persistence
(``rnnlab.tasks.forecast_backtest``); ``series`` many-step forecasts of a table against its
baselines (``rnnlab.tasks.series_backtest``).

A backtest of K origins ``stride`` points apart ends at the last point that can be forecast:
origin k forecasts from each point in ``[first_k, first_k + stride)`` (the window before a point
holds values all known when the forecast is made).  Everything the forecasts use is fitted on
the points before ``first_k`` only: the origin's model is an ordinary ``train`` run with
``--end`` at the origin's first point, ``--test-fraction 0`` (its validation part picks the
best epoch) and, with ``--train-length L``, only the last L points (a sliding window; else the
window expands).  With ``--retrain-every R`` origins reuse the last fit, scaler included, for R
origins.

The backtest directory has one writer, this process: ``plan.json`` (the settings and
the origins), then ``backtest.json``, ``backtest.png`` and ``report.html``.  Origin k
lives in ``origin-<k>/`` (a run directory for the origins that fit, and
``forecasts.json`` once its forecasts are made); fits run in worker processes with
``--workers``.  Run again with the same settings, a stopped backtest keeps every
origin that has its forecasts and continues the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, jsonfile, runs
from .config import flag
from .errors import UserError
from .stopping import InterruptOnSignals

PLAN_VERSION = 2  # 2: forecasts.json holds the random walks' volatilities
BACKTEST_FILES = ("plan.json", "backtest.json", "backtest.png", "report.html")


@dataclass(frozen=True)
class Settings:
    """How origins are laid out and fitted (the flags ``forecast backtest`` adds to ``train``'s)."""

    origins: int = 10
    stride: int = 0  # points between origins; 0 = the origins share the last --test-fraction
    retrain_every: int = 1  # fit at every R-th origin, reuse that fit in between
    workers: int = 1  # processes fitting origins at once
    dm_lags: int | str = 0  # autocovariances in the Diebold-Mariano variance, or "auto" (Newey-West)

    def check(self) -> Settings:
        for name in ("origins", "retrain_every", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.stride < 0:
            raise UserError(f"--stride must be at least 1 (or 0 for automatic), got {self.stride}")
        if self.dm_lags != "auto" and not (isinstance(self.dm_lags, int) and self.dm_lags >= 0):
            raise UserError(f"--dm-lags must be a whole number >= 0 or 'auto', got {self.dm_lags!r}")
        return self


@dataclass(frozen=True)
class Origin:
    index: int  # k, 0-based
    first: int  # the first point it forecasts (index into the series); it is fitted on points before it
    end: int  # one past the last point it forecasts
    fit: int  # the origin whose fit it uses (itself, or an earlier one with --retrain-every)

    @property
    def name(self) -> str:
        return f"origin-{self.index:03d}"


def fit_config(cfg):
    """The settings every origin's fit shares: no test part (the origins are the test)."""
    return dataclasses.replace(cfg, test_fraction=0.0)


def plan_origins(n_points: int, cfg, settings: Settings, source: str = "the series") -> list[Origin]:
    """The origins of a backtest over ``n_points`` points, or a ``UserError`` saying how many
    points they need."""
    settings.check()
    first_fit, why = _forecaster(cfg).points_needed(fit_config(cfg))
    if cfg.train_length and cfg.train_length < first_fit:
        raise UserError(
            f"--train-length {cfg.train_length} is too short for {why} with "
            f"--val-fraction {cfg.val_fraction:g}: each fit needs at least {first_fit} points"
        )
    stride = settings.stride or max(1, int(n_points * cfg.test_fraction) // settings.origins)
    needed = first_fit + settings.origins * stride
    if n_points < needed:
        raise UserError(
            f"{source} has {n_points} points; need at least {needed} points for {settings.origins} "
            f"origins {stride} apart after a first fit of {first_fit} ({why}); use "
            "fewer --origins, a smaller --stride, shorter windows or a longer range"
        )
    start = n_points - settings.origins * stride
    return [
        Origin(
            k,
            start + k * stride,
            start + (k + 1) * stride if k + 1 < settings.origins else n_points,
            k - k % settings.retrain_every,
        )
        for k in range(settings.origins)
    ]


# --------------------------------------------------------------------------- one fit and its origins


def _origin_config(cfg, series, origin: Origin):
    """The ``train`` settings of the fit at ``origin``: the series up to its first point."""
    return _forecaster(cfg).origin_config(fit_config(cfg), series, origin.first)


def _forecaster(cfg):
    """What the task of ``cfg`` gives a backtest (``TaskDefinition.forecaster``), or a ``UserError``."""
    from .tasks import of_config

    task = of_config(cfg)
    if task.forecaster is None:
        raise UserError(f"{task.name} does not forecast a series, so it has no backtest")
    return task.forecaster


def _whole_series(cfg):
    """The backtest's series: all of --start..--end (--train-length limits each fit, not this)."""
    return _forecaster(cfg).load_series(dataclasses.replace(cfg, train_length=0))


def _forecasts_path(out: Path, origin: Origin) -> Path:
    return out / origin.name / "forecasts.json"


def fit_group(task: str, cfg_dict: dict, out: str, group: list[dict], quiet: bool = True) -> list[dict]:
    """Fit the model of ``group[0]``'s origin (resuming a fit that was stopped) and write the
    forecasts of every origin in ``group`` that has none yet; returns their records.  Runs in a
    worker process, so it takes and returns plain data (``task``: the task's name).  An
    interrupted fit returns []."""
    from .tasks import entry

    cfg, out = entry(task).config_cls(**cfg_dict), Path(out)
    forecaster = _forecaster(cfg)
    origins = [Origin(**o) for o in group]
    series = _whole_series(cfg)
    fit_origin = origins[0]
    run_dir = out / fit_origin.name
    for origin in origins:  # the fit and the forecasts are written in the backtest's own directories only
        checkpoint.refuse_link(out / origin.name)
        checkpoint.refuse_link(_forecasts_path(out, origin))
    if not (run_dir / "fit.json").exists() and not _fit(cfg, series, fit_origin, run_dir, quiet):
        return []
    facts = jsonfile.read(run_dir / "fit.json", jsonfile.FIT)
    loaded = forecaster.load_run(run_dir, "best")
    seen = forecaster.fitted_points(loaded)
    if seen != facts["fit_points"]:  # the fit saw other points than planned
        raise UserError(
            f"{run_dir} was fitted on {seen} points, not the {facts['fit_points']} before its origin; "
            "the data changed: rerun with --force"
        )
    records = []
    for origin in origins:
        path = _forecasts_path(out, origin)
        if not path.exists():
            record = _origin_record(forecaster, loaded, series, origin, fit_origin, facts)
            record["fit_seconds"] = facts["fit_seconds"] if origin is fit_origin else 0.0
            path.parent.mkdir(exist_ok=True)
            checkpoint.atomic_write_text(path, json.dumps(record) + "\n")
        records.append(jsonfile.read(path, forecaster.record_schema))
    return records


def _origin_record(forecaster, loaded, series, origin: Origin, fit_origin: Origin, facts: dict) -> dict:
    """The forecasts of one origin by the fit ``loaded`` (the task's ``Forecaster.origin_record``),
    with where they come from."""
    record = forecaster.origin_record(loaded, series, origin, facts)
    return dict(record, origin=origin.index, fit_origin=fit_origin.index, first=origin.first, end=origin.end)


def _fit(cfg, series, fit_origin: Origin, run_dir: Path, quiet: bool) -> bool:
    """Train (or resume) the fit at ``fit_origin`` and write its ``fit.json``; False if it was interrupted."""
    from .runner import train_run

    fit_cfg = _origin_config(cfg, series, fit_origin)
    started = time.perf_counter()
    summary = train_run(fit_cfg, run_dir, resume=runs.has_saved(run_dir), force=True, quiet=quiet, log_evals=not quiet)
    if summary["interrupted"]:
        return False
    first, last = fit_origin.first - (fit_cfg.train_length or fit_origin.first), fit_origin.first
    facts = {
        "first_point": fit_origin.first,
        "fit_from": str(series.times[first]),
        "fit_to": str(series.times[last - 1]),
        "fit_points": int(last - first),
        "best_val_loss": summary["best_val_loss"],
        **_forecaster(cfg).fit_facts(fit_cfg, series, first, last),
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    checkpoint.atomic_write_text(run_dir / "fit.json", json.dumps(facts, indent=1) + "\n")
    return True


def _set_worker_threads(threads: int) -> None:
    # Before torch or BLAS start their pools in this worker: each gets its share of the CPUs.
    os.environ["RNNLAB_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(threads)


# --------------------------------------------------------------------------- the directory


def _plan_dict(cfg, settings: Settings, origins: list[Origin]) -> dict:
    # How many processes fit and how the test is run change no forecast: a finished backtest run
    # again with another --dm-lags is summarized again.
    return {
        "version": PLAN_VERSION,
        "config": dataclasses.asdict(cfg),
        "settings": dataclasses.asdict(dataclasses.replace(settings, workers=0, dm_lags=0)),
        "origins": [dataclasses.asdict(o) for o in origins],
    }


def _prepare_dir(out: Path, plan: dict, force: bool) -> str:
    """``"fresh"``, ``"resume"`` (same plan: keep finished origins) or a UserError; with
    ``force`` an old backtest or run in ``out`` is replaced (only now that the new one is checked)."""
    saved_path = out / "plan.json"
    holds = [p.name for p in out.iterdir() if p.name in runs.RUN_FILES + BACKTEST_FILES or p.name.startswith("origin-")]
    if not holds:
        return "fresh"
    if saved_path.exists() and not force:
        try:
            saved = jsonfile.read(saved_path, jsonfile.PLAN)
        except UserError as exc:
            raise UserError(f"{exc}; pass --force to start the backtest again") from None
        if saved == plan:
            return "resume"
        changed = sorted(k for k in plan["config"] if saved.get("config", {}).get(k) != plan["config"][k])
        changed += sorted(k for k in plan["settings"] if saved.get("settings", {}).get(k) != plan["settings"][k])
        what = ", ".join(f"--{flag(k)}" for k in changed) or "the origins (the data changed)"
        raise UserError(
            f"{str(out)!r} holds a backtest with other settings ({what}); run it again as it was to "
            "continue it, or pass --force to replace it, or choose another --out"
        )
    if not force:
        raise UserError(
            f"{str(out)!r} already holds a run ({', '.join(sorted(holds)[:3])}); pass --force to "
            "replace it or choose another --out"
        )
    for name in holds:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return "fresh"


def run_backtest(cfg, settings: Settings, out, force: bool = False, quiet: bool = False) -> dict:
    """Run (or continue) the backtest of ``cfg`` in ``out``; returns ``backtest.json``'s content
    (with ``interrupted`` true and no results when it was stopped)."""
    from tqdm import tqdm

    from .lock import RunLock

    cfg = cfg.validate()
    settings = settings.check()
    series = _whole_series(cfg)
    forecaster = _forecaster(cfg)
    origins = plan_origins(forecaster.forecastable(cfg, series), cfg, settings, series.source)
    _origin_config(cfg, series, origins[0]).validate()
    out = Path(out)
    created = runs.make_dir(out)
    plan = _plan_dict(cfg, settings, origins)
    with RunLock(out) as lock:
        try:
            mode = _prepare_dir(out, plan, force)
        except UserError:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        lock.keep_record()  # from here on this command writes the backtest
        checkpoint.atomic_write_text(out / "plan.json", json.dumps(plan, indent=1) + "\n")
        groups = {}
        for o in origins:
            groups.setdefault(o.fit, []).append(o)
        todo = [g for g in groups.values() if not all(_forecasts_path(out, o).exists() for o in g)]
        done = len(origins) - sum(len(g) for g in todo)
        if not quiet:
            for line in forecaster.describe_series(cfg, series):
                print(line, flush=True)
            print(
                f"backtest: {len(origins)} origins {origins[0].end - origins[0].first} points apart from "
                f"{series.times[origins[0].first]:%Y-%m-%d %H:%M}, {len(groups)} fits"
                + (f"; resuming, {done} origins done" if mode == "resume" else ""),
                flush=True,
            )
        bar = tqdm(
            total=len(origins),
            initial=done,
            unit="origin",
            dynamic_ncols=True,
            disable=quiet or not sys.stderr.isatty(),
        )
        with InterruptOnSignals() as caught:  # between fits too: stop cleanly, say so
            _run_groups(cfg, out, todo, settings.workers, bar)
        finished = all(_forecasts_path(out, o).exists() for o in origins)
        if not finished:
            left = sum(not _forecasts_path(out, o).exists() for o in origins)
            stopped_by = "SIGTERM" if signal.SIGTERM in caught.signals else "SIGINT"
            return {"interrupted": True, "origins_left": left, "backtest_dir": str(out), "signal": stopped_by}
        # every origin's record, read back from its file, in order
        records = [jsonfile.read(_forecasts_path(out, o), forecaster.record_schema) for o in origins]
        result = forecaster.summarize(records, series.source, cfg, settings)
        checkpoint.atomic_write_text(out / "backtest.json", json.dumps(result, indent=1) + "\n")
        forecaster.write_figures(out, records, result)
        _write_report(out, forecaster.report_parts(out, result))
    return dict(result, interrupted=False, backtest_dir=str(out))


def _write_report(out: Path, parts: dict) -> Path:
    """``report.html`` of a backtest from its task's ``report_parts``."""
    from . import html_report

    body = html_report.page_section(
        parts["title"], str(out), parts["headline"], parts["figures"], parts["texts"], parts["tables"]
    )
    path = out / "report.html"
    checkpoint.atomic_write_text(path, html_report.page(f"rnnlab backtest: {out.name}", [body]))
    return path


def _run_groups(cfg, out: Path, groups: list, workers: int, bar) -> None:
    """Fit every group, here (one worker) or in ``workers`` processes (each writes its origins'
    files); stops early on Ctrl-C."""
    from .tasks import of_config

    task, cfg_dict = of_config(cfg).name, dataclasses.asdict(cfg)
    try:
        if workers <= 1 or len(groups) <= 1:
            for group in groups:
                got = fit_group(task, cfg_dict, str(out), [dataclasses.asdict(o) for o in group])
                bar.update(len(got))
                if len(got) < len(group):
                    break
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from .threads import available_cpus

        threads = max(1, available_cpus() // workers)
        # spawn, not fork: a forked child would inherit torch's and JAX's threads half-made.
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_set_worker_threads,
            initargs=(threads,),
        ) as pool:
            futures = [
                pool.submit(fit_group, task, cfg_dict, str(out), [dataclasses.asdict(o) for o in g]) for g in groups
            ]
            for future in as_completed(futures):
                bar.update(len(future.result()))
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
