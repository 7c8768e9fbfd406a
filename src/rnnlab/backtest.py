"""Rolling-origin backtests of a task that forecasts: many forecast origins, each fitted on its past only.

Any task whose definition declares a ``Forecaster`` (``rnnlab.tasks.definition``) gets them: its
hooks load the series, a saved fit and its forecasts; everything below is the task's own run
(``train_run``) at each origin.  The summary judges one-step forecasts of a positive series
(prices) against persistence (``rnnlab.tasks.forecast_stats``).

A backtest of K origins ``stride`` points apart ends at the last point of the series:
origin k forecasts the points ``[first_k, first_k + stride)``, one step ahead each
(the window before a point holds actual prices, all known when the forecast is made).
Everything the forecasts use is fitted on the points before ``first_k`` only: the
origin's model is an ordinary ``forecast train`` run with ``--end`` at the origin's
first point, ``--test-fraction 0`` (its validation part picks the best epoch) and,
with ``--train-length L``, only the last L points (a sliding window; else the window
expands).  With ``--retrain-every R`` origins reuse the last fit, scaler included,
for R origins.

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

import numpy as np

from . import checkpoint, jsonfile, runs
from .config import flag
from .data.series import points_needed, split_sizes
from .errors import UserError
from .stopping import InterruptOnSignals
from .tasks import forecast_stats as stats
from .tasks.forecast_text import percent

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
    fractions = fit_config(cfg).fractions
    first_fit = points_needed(cfg.window, fractions)
    if cfg.train_length and cfg.train_length < first_fit:
        raise UserError(
            f"--train-length {cfg.train_length} is too short for --window {cfg.window} with "
            f"--val-fraction {cfg.val_fraction:g}: each fit needs at least {first_fit} points"
        )
    stride = settings.stride or max(1, int(n_points * cfg.test_fraction) // settings.origins)
    needed = first_fit + settings.origins * stride
    if n_points < needed:
        raise UserError(
            f"{source} has {n_points} points; need at least {needed} points for {settings.origins} "
            f"origins {stride} apart after a first fit of {first_fit} (window {cfg.window}); use "
            "fewer --origins, a smaller --stride or --window, or a longer range"
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


def _origin_config(cfg, prices, origin: Origin):
    """The ``forecast train`` settings of the fit at ``origin``: the series up to its first point."""
    return dataclasses.replace(fit_config(cfg), end=str(prices.index[origin.first]))


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
    if not (run_dir / "fit.json").exists() and not _fit(cfg, series.prices, fit_origin, run_dir, quiet):
        return []
    facts = jsonfile.read(run_dir / "fit.json", jsonfile.FIT)
    loaded = forecaster.load_run(run_dir, "best")
    if loaded.meta["series"]["points"] != facts["fit_points"]:  # the fit saw other points than planned
        raise UserError(
            f"{run_dir} was fitted on {loaded.meta['series']['points']} points, not the "
            f"{facts['fit_points']} before its origin; the data changed: rerun with --force"
        )
    records = []
    for origin in origins:
        path = _forecasts_path(out, origin)
        if not path.exists():
            record = _origin_record(forecaster, loaded, series, origin, fit_origin, facts)
            path.parent.mkdir(exist_ok=True)
            checkpoint.atomic_write_text(path, json.dumps(record) + "\n")
        records.append(jsonfile.read(path, jsonfile.FORECASTS))
    return records


def _fit(cfg, prices, fit_origin: Origin, run_dir: Path, quiet: bool) -> bool:
    """Train (or resume) the fit at ``fit_origin`` and write its ``fit.json``; False if it was interrupted."""
    from .runner import train_run

    fit_cfg = _origin_config(cfg, prices, fit_origin)
    started = time.perf_counter()
    summary = train_run(fit_cfg, run_dir, resume=runs.has_saved(run_dir), force=True, quiet=quiet, log_evals=not quiet)
    if summary["interrupted"]:
        return False
    past = _fit_points(fit_cfg, prices, fit_origin)
    n_train = split_sizes(len(past), fit_cfg.fractions)[0]
    facts = {
        "first_point": fit_origin.first,
        "fit_from": str(past.index[0]),
        "fit_to": str(past.index[-1]),
        "fit_points": int(len(past)),
        "best_val_loss": summary["best_val_loss"],
        "mase_scale": stats.persistence_scale(past.to_numpy()[:n_train]),
        "fit_seconds": round(time.perf_counter() - started, 3),
    }
    checkpoint.atomic_write_text(run_dir / "fit.json", json.dumps(facts, indent=1) + "\n")
    return True


def _origin_record(forecaster, loaded, series, origin: Origin, fit_origin: Origin, facts: dict) -> dict:
    """The forecasts of one origin's points by the fit ``loaded``, with what the summary needs."""
    prices = series.prices
    points = np.arange(origin.first, origin.end)
    f = forecaster.forecast_points(loaded, series, points)
    actual = prices.to_numpy()[points]
    record = {
        "origin": origin.index,
        "fit_origin": fit_origin.index,
        "first": origin.first,
        "end": origin.end,
        "times": [str(t) for t in prices.index[points]],
        "actual": actual.tolist(),
        "predicted": f.point.tolist(),
        "unshrunk": f.unshrunk.tolist(),
        "alpha": f.alpha,
        "persistence": f.last.tolist(),
        "mase_scale": facts["mase_scale"],
        "fit_from": facts["fit_from"],
        "fit_to": facts["fit_to"],
        "fit_points": facts["fit_points"],
        "fit_seconds": facts["fit_seconds"] if origin is fit_origin else 0.0,
    }
    if f.log_var is not None:
        record.update(_interval_record(f, actual, ""))
        if f.alpha is not None:
            record.update(_interval_record(f.without_shrinking(), actual, "unshrunk_"))
        # the random walks' volatilities: the EWMA one known at each point, and the fit's training one
        record["random_walk_sd"], record["train_volatility"] = f.random_walk_sd.tolist(), f.features.volatility
    return record


def _interval_record(f, actual: np.ndarray, prefix: str) -> dict:
    """Each point's 80% and 95% interval and CRPS, under names starting with ``prefix``."""
    out = {}
    for level in (80, 95):
        low, high = f.interval(level / 100)
        out[f"{prefix}low_{level}"], out[f"{prefix}high_{level}"] = low.tolist(), high.tolist()
    out[f"{prefix}crps"] = stats.crps_from_quantiles(actual, f.quantiles(stats.CRPS_LEVELS)).tolist()
    return out


def _fit_points(fit_cfg, prices, origin: Origin):
    """The points the fit at ``origin`` sees (the same as its own ``load_series`` gives)."""
    past = prices.iloc[: origin.first]
    return past.iloc[-fit_cfg.train_length :] if fit_cfg.train_length else past


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
    prices = series.prices
    origins = plan_origins(len(prices), cfg, settings, series.source)
    _origin_config(cfg, prices, origins[0]).validate()
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
            for line in _forecaster(cfg).describe_series(cfg, series):
                print(line, flush=True)
            print(
                f"backtest: {len(origins)} origins {origins[0].end - origins[0].first} points apart from "
                f"{prices.index[origins[0].first]:%Y-%m-%d %H:%M}, {len(groups)} fits"
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
        records = [jsonfile.read(_forecasts_path(out, o), jsonfile.FORECASTS) for o in origins]
        result = summarize(records, series.source, cfg, settings)
        checkpoint.atomic_write_text(out / "backtest.json", json.dumps(result, indent=1) + "\n")
        plot_backtest(out / "backtest.png", records, result)
        write_report(out, result)
    return dict(result, interrupted=False, backtest_dir=str(out))


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


# --------------------------------------------------------------------------- the verdict


def summarize(records: list[dict], source: str, cfg, settings: Settings) -> dict:
    """Per-origin, per-year and pooled comparisons with persistence: the skill in log-return
    units (the headline: every period weighs alike) and in price units, each pooled with its
    block-bootstrap interval and a Diebold-Mariano test; MASE, direction calls, and with
    intervals their coverage and CRPS against the random walks."""
    per_origin = []
    for r in records:
        actual, predicted, last = (np.asarray(r[k]) for k in ("actual", "predicted", "persistence"))
        row = stats.compare_with_persistence(actual, predicted, last, r["mase_scale"])
        if r.get("alpha") is not None:
            row["alpha"] = r["alpha"]
        per_origin.append(
            {
                "origin": r["origin"],
                "fit_origin": r["fit_origin"],
                "from": r["times"][0],
                "to": r["times"][-1],
                "fit_points": r["fit_points"],
                **row,
            }
        )
    pooled = pool(records, "predicted", settings.dm_lags)
    pooled["origins_beating_persistence"] = sum(row["log_return_skill"] > 0 for row in per_origin)
    alphas = [r["alpha"] for r in records if r.get("alpha") is not None]
    if alphas:
        pooled["alpha_mean"], pooled["alpha_zero_share"] = float(np.mean(alphas)), float(np.mean(np.equal(alphas, 0)))
        pooled["unshrunk"] = pool(records, "unshrunk", settings.dm_lags)
    per_year = per_year_rows(records)
    return {
        "source": source,
        "every": cfg.every,
        "window": cfg.window,
        "target": cfg.target,
        "cell": cfg.cell,
        "hidden_size": cfg.hidden_size,
        "origins": len(records),
        "stride": records[0]["end"] - records[0]["first"],
        "retrain_every": settings.retrain_every,
        "train_length": cfg.train_length,
        "ewma_lambda": cfg.ewma_lambda,
        "first_forecast": records[0]["times"][0],
        "last_forecast": records[-1]["times"][-1],
        "fit_seconds": round(sum(r["fit_seconds"] for r in records), 3),
        "pooled": pooled,
        "per_year": per_year,
        "per_origin": per_origin,
        "verdict": verdict(pooled, per_year, cfg.ewma_lambda),
    }


def _pooled_arrays(records: list[dict], key: str) -> dict:
    """The records' points concatenated, ``[n]`` each: actual, the forecasts ``key``, persistence,
    MASE scale, year, and where there are intervals their bounds, CRPS and the random walks."""

    def joined(name):
        return np.concatenate([np.asarray(r[name], dtype=np.float64) for r in records])

    arrays = {
        "actual": joined("actual"),
        "predicted": joined(key),
        "last": joined("persistence"),
        "scale": np.concatenate([np.full(len(r["actual"]), r["mase_scale"]) for r in records]),
        "year": np.concatenate([[t[:4] for t in r["times"]] for r in records]),
    }
    prefix = "" if key == "predicted" else f"{key}_"
    if f"{prefix}crps" in records[0]:
        for name in ("low_80", "high_80", "low_95", "high_95", "crps"):
            arrays[name] = joined(f"{prefix}{name}")
        arrays["walks"] = {
            stats.REFERENCE_WALK: joined("random_walk_sd"),
            "train_vol_random_walk": np.concatenate(
                [np.full(len(r["actual"]), r["train_volatility"]) for r in records]
            ),
        }
    return arrays


def _compare(a: dict, where=slice(None)) -> dict:
    """The comparison of the points ``where`` of ``_pooled_arrays``' ``a``."""
    actual, predicted, last = a["actual"][where], a["predicted"][where], a["last"][where]
    out = stats.compare_with_persistence(actual, predicted, last, a["scale"][where])
    if "crps" in a:
        for level in (80, 95):
            out[f"coverage_{level}"] = stats.coverage(actual, a[f"low_{level}"][where], a[f"high_{level}"][where])
        out.update(
            stats.against_random_walks(
                actual, last, a["crps"][where], {name: sd[where] for name, sd in a["walks"].items()}
            )
        )
    return out


def pool(records: list[dict], key: str, dm_lags: int | str = 0) -> dict:
    """The pooled comparison with persistence of the forecasts ``records[i][key]``: errors, skill
    in log-return and price units, each with its block-bootstrap interval and Diebold-Mariano test
    (``dm_lags``: see ``stats.diebold_mariano``), and coverage and CRPS where there are intervals."""
    a = _pooled_arrays(records, key)
    pooled = _compare(a)
    block = stats.bootstrap_block(len(a["actual"]))
    prices = (a["actual"], a["predicted"], a["last"])
    returns = stats.log_returns(*prices)
    pooled["bootstrap_block"] = block
    pooled["log_return_skill_ci95"] = list(stats.skill_interval(*returns, block=block))
    pooled["log_return_diebold_mariano"] = stats.diebold_mariano(*returns, lags=dm_lags)
    pooled["skill_ci95"] = list(stats.skill_interval(*prices, block=block))
    pooled["diebold_mariano"] = stats.diebold_mariano(*prices, lags=dm_lags)
    return pooled


def per_year_rows(records: list[dict]) -> list[dict]:
    """One comparison per calendar year of the forecasts (UTC), so that one regime cannot hide
    another in the pooled numbers."""
    a = _pooled_arrays(records, "predicted")
    return [{"year": int(year), **_compare(a, a["year"] == year)} for year in sorted(set(a["year"]))]


def verdict(pooled: dict, per_year: list[dict] | None = None, ewma_lambda: float | None = None) -> str:
    """The pooled result in words, persistence first-class, scale-free numbers first."""
    lo, hi = pooled["log_return_skill_ci95"]
    dm = pooled["log_return_diebold_mariano"]
    skill = pooled["log_return_skill"]
    price_lo, price_hi = pooled["skill_ci95"]
    text = (
        f"Over {pooled['points']} one-step forecasts, in log-returns (where a 1% miss weighs the same at any "
        f"price), the model's pooled skill against persistence is {skill:+.4f} (95% block-bootstrap interval "
        f"{lo:+.4f} to {hi:+.4f}); Diebold-Mariano test of equal squared error: statistic "
        f"{dm['statistic']:+.2f}, p = {dm['p_value']:.3g} ({stats.describe_dm(dm)}). In price units the RMSE is "
        f"{pooled['rmse']:,.2f} against {pooled['persistence_rmse']:,.2f} (skill {pooled['skill']:+.4f}, "
        f"{price_lo:+.4f} to {price_hi:+.4f}; p = {pooled['diebold_mariano']['p_value']:.3g}), weighted toward "
        f"the years of high prices; MASE {pooled['mase']:.3f} against {pooled['persistence_mase']:.3f}."
    )
    if pooled["direction_call_share"] > 0:
        text += (
            f" It called a move in {100 * pooled['direction_call_share']:.1f}% of the forecasts and got "
            f"{100 * pooled['direction_hit_rate']:.1f}% of those that moved right."
        )
    if lo <= 0 <= hi or dm["p_value"] >= 0.05:
        text += (
            " The model cannot be told apart from persistence here: it has shown nothing that "
            "'the next value is the last one' does not already know."
        )
    elif skill > 0:
        text += " The model beats persistence, and the difference is larger than the noise."
    else:
        text += " Persistence beats the model, and the difference is larger than the noise."
    if "alpha_mean" in pooled:
        unshrunk = pooled["unshrunk"]
        u_lo, u_hi = unshrunk["log_return_skill_ci95"]
        text += (
            f" Each origin shrank its forecasts toward persistence with a weight fitted on its own validation "
            f"part (mean alpha {pooled['alpha_mean']:.3f}; 0 at {100 * pooled['alpha_zero_share']:.0f}% of the "
            f"fits, where the model found nothing persistence does not know); unshrunk, the pooled log-return "
            f"skill is {unshrunk['log_return_skill']:+.4f} ({u_lo:+.4f} to {u_hi:+.4f})."
        )
    if "coverage_80" in pooled:
        decay = f" (decay {ewma_lambda:g})" if ewma_lambda is not None else ""
        text += (
            f" Intervals: {100 * pooled['coverage_80']:.1f}% of actual values inside the 80% interval and "
            f"{100 * pooled['coverage_95']:.1f}% inside the 95% one. CRPS skill {pooled['crps_skill']:+.4f} "
            f"against a random walk whose volatility is an exponentially weighted mean of the returns before "
            f"each forecast{decay}, whose own intervals cover "
            f"{100 * pooled['ewma_random_walk_coverage_80']:.1f}% and "
            f"{100 * pooled['ewma_random_walk_coverage_95']:.1f}%; against a random walk with each fit's "
            f"training volatility (covering {100 * pooled['train_vol_random_walk_coverage_80']:.1f}% and "
            f"{100 * pooled['train_vol_random_walk_coverage_95']:.1f}%) it is "
            f"{pooled['train_vol_crps_skill']:+.4f}."
        )
        if abs(pooled["crps_skill"]) < 0.01:
            text += (
                " Against the volatility a forecaster already knows, the model's forecast distribution adds "
                "next to nothing."
            )
    if per_year and len(per_year) > 1:
        worst, best = (f(per_year, key=lambda row: row["log_return_skill"]) for f in (min, max))
        text += (
            f" Per year, the log-return skill runs from {worst['log_return_skill']:+.4f} ({worst['year']}) to "
            f"{best['log_return_skill']:+.4f} ({best['year']})."
        )
    return text


def plot_backtest(path: Path, records: list[dict], result: dict) -> Path:
    """Log-return skill per origin, and the cumulative squared-error difference against
    persistence over time, in log-returns (every period alike) and in price units (the last,
    dearest years decide)."""
    import pandas as pd

    from . import report

    plt = report.pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(10, 7), dpi=100, gridspec_kw={"hspace": 0.4})
    rows = result["per_origin"]
    starts = pd.to_datetime([row["from"] for row in rows])
    skills = np.array([row["log_return_skill"] for row in rows])
    axes[0].bar(range(len(rows)), skills, color=np.where(skills > 0, "tab:green", "tab:red"))
    axes[0].axhline(0, color="k", linewidth=0.8)
    pooled = result["pooled"]
    axes[0].axhline(
        pooled["log_return_skill"],
        color="tab:blue",
        linestyle="--",
        linewidth=1,
        label=f"pooled {pooled['log_return_skill']:+.4f}",
    )
    axes[0].set_xticks(range(len(rows)), [f"{t:%Y-%m-%d}" for t in starts], rotation=45, ha="right", fontsize="x-small")
    axes[0].set_ylabel("log-return skill\nvs persistence")
    axes[0].set_title(
        "skill of each origin's forecasts in log-returns (above 0: smaller errors than persistence)", fontsize="medium"
    )
    axes[0].legend(fontsize="small")
    times = pd.to_datetime(np.concatenate([r["times"] for r in records]))
    prices = [np.concatenate([r[k] for r in records]) for k in ("actual", "predicted", "persistence")]
    for (actual, predicted, last), label, style in (
        (stats.log_returns(*prices), "log-returns (headline)", "-"),
        (prices, "price units", "--"),
    ):
        gain = np.cumsum((last - actual) ** 2 - (predicted - actual) ** 2) / np.sum((last - actual) ** 2)
        axes[1].plot(times, gain, style, color="tab:blue", linewidth=1, label=label)
    axes[1].axhline(0, color="k", linewidth=0.8)
    for t in starts:
        axes[1].axvline(t, color="0.85", linewidth=0.6, zorder=0)
    axes[1].set_ylabel("cumulative (SE persistence - SE model)\n/ total SE persistence")
    axes[1].set_title(
        "rises where the model's squared errors are smaller than persistence's; ends at 1 - MSE ratio",
        fontsize="medium",
    )
    axes[1].legend(fontsize="small")
    axes[1].grid(alpha=0.3)
    axes[1].tick_params(axis="x", labelrotation=20)
    report.save_figure(fig, path)
    return Path(path)


def _headline(result: dict) -> list:
    """The report's cards: pooled log-return skill, price-unit RMSE, MASE and direction, intervals."""
    from . import html_report

    pooled = result["pooled"]
    lo, hi = pooled["log_return_skill_ci95"]
    price_lo, price_hi = pooled["skill_ci95"]
    headline = [
        html_report.Headline(
            f"pooled log-return skill, {pooled['points']} forecasts at {result['origins']} origins",
            f"skill {pooled['log_return_skill']:+.4f}",
            "persistence: skill 0",
            f"95% CI {lo:+.4f} to {hi:+.4f}; Diebold-Mariano p = {pooled['log_return_diebold_mariano']['p_value']:.3g}",
            "better" if lo > 0 else "worse" if hi < 0 else "close",
        ),
        html_report.Headline(
            "pooled RMSE in price units (weighted toward high prices)",
            f"RMSE {pooled['rmse']:,.4g}",
            f"persistence: RMSE {pooled['persistence_rmse']:,.4g}",
            f"skill {pooled['skill']:+.4f} ({price_lo:+.4f} to {price_hi:+.4f})",
            "better" if price_lo > 0 else "worse" if price_hi < 0 else "close",
        ),
        html_report.Headline(
            "MASE (in-sample persistence MAE = 1)",
            f"{pooled['mase']:.3f}",
            f"persistence: {pooled['persistence_mase']:.3f}",
            f"direction right in {percent(pooled['direction_hit_rate'])} of the calls "
            f"({percent(pooled['direction_call_share'])} of forecasts call a move)",
            "better" if pooled["mase"] < pooled["persistence_mase"] else "worse",
        ),
    ]
    if "coverage_80" in pooled:
        headline.append(
            html_report.Headline(
                "interval coverage (80% / 95%)",
                f"{100 * pooled['coverage_80']:.1f}% / {100 * pooled['coverage_95']:.1f}%",
                f"EWMA random walk: {percent(pooled['ewma_random_walk_coverage_80'])} / "
                f"{percent(pooled['ewma_random_walk_coverage_95'])}",
                f"CRPS skill {pooled['crps_skill']:+.4f} vs the EWMA random walk "
                f"({pooled['train_vol_crps_skill']:+.4f} vs training volatility)",
                "better" if pooled["crps_skill"] > 0 else "worse",
            )
        )
    return headline


def _tables(result: dict) -> list:
    """The report's per-year and per-origin tables (header, rows of strings)."""
    intervals = "coverage_80" in result["pooled"]
    year_header = ["year", "forecasts", "log-return skill", "price skill", "direction (calls)"]
    year_header += ["coverage 80% / 95%", "CRPS skill"] if intervals else []
    year_rows = [
        [
            str(r["year"]),
            str(r["points"]),
            f"{r['log_return_skill']:+.4f}",
            f"{r['skill']:+.4f}",
            f"{percent(r['direction_hit_rate'])} ({percent(r['direction_call_share'])})",
        ]
        + (
            [f"{100 * r['coverage_80']:.1f}% / {100 * r['coverage_95']:.1f}%", f"{r['crps_skill']:+.4f}"]
            if intervals
            else []
        )
        for r in result["per_year"]
    ]
    header = [
        "origin",
        "forecasts",
        "from",
        "to",
        "fit points",
        "RMSE",
        "persistence RMSE",
        "log-return skill",
        "price skill",
        "MASE",
        "direction (calls)",
    ]
    rows = [
        [
            str(r["origin"]),
            str(r["points"]),
            r["from"][:16],
            r["to"][:16],
            str(r["fit_points"]),
            f"{r['rmse']:,.2f}",
            f"{r['persistence_rmse']:,.2f}",
            f"{r['log_return_skill']:+.4f}",
            f"{r['skill']:+.4f}",
            f"{r['mase']:.3f}",
            f"{percent(r['direction_hit_rate'])} ({percent(r['direction_call_share'])})",
        ]
        for r in result["per_origin"]
    ]
    return [("Per year", year_header, year_rows), ("Per origin", header, rows)]


def write_report(out: Path, result: dict) -> Path:
    """``report.html`` of the backtest: the verdict, the plot, the per-year and per-origin tables."""
    from . import html_report

    body = html_report.page_section(
        f"Backtest: {result['cell']} H={result['hidden_size']} on {Path(result['source']).name} every "
        f"{result['every']}",
        str(out),
        _headline(result),
        [("Log-return skill per origin and cumulative squared-error difference", out / "backtest.png")],
        [("Against persistence, in words", result["verdict"])],
        _tables(result),
    )
    path = out / "report.html"
    checkpoint.atomic_write_text(path, html_report.page(f"rnnlab backtest: {out.name}", [body]))
    return path


def print_summary(result: dict, file=None) -> None:
    """The verdict and where the files are, for the command line."""
    file = file or sys.stdout
    print(result["verdict"], file=file)
    print(f"report: {result['backtest_dir']}/report.html", file=file)
