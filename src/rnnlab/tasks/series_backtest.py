"""The series task's half of a rolling-origin backtest (``rnnlab.backtest`` is the engine).

Origin k's fit sees the rows before its first forecast point only (its scaler, ridge map and best
epoch too).  From every point t of the origin, the model forecasts rows t..t+H-1 from rows
t-L..t-1, beside the three baselines; the origin keeps, per forecast, the MSE and MAE in the
fit's scaled units (averaged over steps and targets, as the papers do) and in the data's units,
and per horizon step the mean over its forecasts.  The verdict pools every forecast: the model's
MSE against the ridge map's and seasonal naive's, a block-bootstrap interval of the skill
1 - MSE_model / MSE_ridge, and a Diebold-Mariano test of the difference (overlapping windows:
Bartlett variance with H - 1 lags, the Harvey-Leybourne-Newbold factor for H steps).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from .. import jsonfile, report
from ..data import table as tables
from ..errors import UserError
from ..facts import Headline
from . import forecast_stats as stats
from .series_data import BASELINES, fit_baselines, layout_of, predict, read_table, split_parts

NAMES = ("model",) + BASELINES
_NUMBERS = jsonfile.List((int, float))
_BY_NAME = jsonfile.Obj(required={name: _NUMBERS for name in NAMES})
RECORD_SCHEMA = jsonfile.Obj(
    required={
        "origin": jsonfile.Whole(0),
        "fit_origin": jsonfile.Whole(0),
        "first": jsonfile.Whole(0),
        "end": jsonfile.Whole(0),
        "times": jsonfile.List(str),
        "mse": _BY_NAME,
        "mae": _BY_NAME,
        "mse_original": _BY_NAME,
        "mae_original": _BY_NAME,
        "mse_by_step": _BY_NAME,
        "fit_points": jsonfile.Whole(1),
        "fit_seconds": jsonfile.Number(),
    }
)


# --------------------------------------------------------------------------- the engine's hooks


def forecastable(cfg, series: tables.Table) -> int:
    """Points a forecast can start from with its whole horizon inside the table."""
    return len(series.times) - cfg.horizon + 1


def needed_points(cfg) -> tuple[int, str]:
    """Rows one fit needs: a training part of at least L + H rows and a validation part of at
    least H (its windows look back into the training rows)."""
    L, H = cfg.lookback, cfg.horizon
    train, val = cfg.fractions[0], cfg.fractions[1]
    need = max(math.ceil((L + H) / train), math.ceil(H / val)) + 1
    return need, f"--lookback {L} and --horizon {H}"


def origin_config(fit_cfg, series: tables.Table, first: int):
    """The settings of the fit before point ``first``: the rows before it, split by fractions."""
    if fit_cfg.split != "fractions":
        raise UserError(
            f"a backtest splits each origin's past by --val-fraction; --split {fit_cfg.split} fixes the "
            "parts by date: use --split fractions"
        )
    return dataclasses.replace(fit_cfg, end=str(series.times[first]))


def describe_series(cfg, series: tables.Table) -> list[str]:
    return [
        f"{series.source}: {len(series.times):,} rows every {tables.step_text(series.step)}, "
        f"{series.times[0]} to {series.times[-1]}; forecasts of {cfg.horizon} rows from {cfg.lookback}"
    ]


def origin_record(loaded, series: tables.Table, origin, facts: dict) -> dict:
    """The forecasts from every point of ``origin`` by the fit ``loaded``, beside the baselines
    refitted as the fit saw them (its scaler, its ridge map)."""
    cfg = loaded.cfg
    fit_table = read_table(cfg)  # the fit's own rows: its scaler and ridge map, as in training
    layout = layout_of(cfg, fit_table.columns)
    parts, scaler = split_parts(cfg, fit_table)
    baselines, _ = fit_baselines(cfg, layout, parts)
    L, H = layout.lookback, layout.horizon
    starts = np.arange(origin.first, origin.end)
    if starts[0] < L:
        raise UserError(f"origin {origin.index} starts at row {starts[0]}, inside the first --lookback {L} rows")
    scaled = scaler.transform(series.values)
    windows, futures = tables.windows(scaled[starts[0] - L : starts[-1] + H], L, H)
    t = list(layout.targets)
    forecasts = {"model": predict(loaded.trainer, layout, windows, np.dtype(cfg.dtype))}
    forecasts.update({name: f(windows[:, :, t]) for name, f in baselines.items()})
    truth = futures[:, :, t]
    std = scaler.std[t]
    record = {"times": [str(series.times[s]) for s in starts], "fit_points": facts["fit_points"]}
    for key in ("mse", "mae", "mse_original", "mae_original", "mse_by_step"):
        record[key] = {}
    for name, f in forecasts.items():
        err = f - truth
        record["mse"][name] = np.mean(err**2, axis=(1, 2)).tolist()
        record["mae"][name] = np.mean(np.abs(err), axis=(1, 2)).tolist()
        record["mse_original"][name] = np.mean((err * std) ** 2, axis=(1, 2)).tolist()
        record["mae_original"][name] = np.mean(np.abs(err * std), axis=(1, 2)).tolist()
        record["mse_by_step"][name] = np.mean(err**2, axis=(0, 2)).tolist()
    return record


# --------------------------------------------------------------------------- the verdict


def _pooled(records: list[dict], key: str) -> dict[str, np.ndarray]:
    return {name: np.concatenate([r[key][name] for r in records]) for name in NAMES}


def summarize(records: list[dict], source: str, cfg, settings) -> dict:
    """The pooled errors of the model and each baseline, the skill against the ridge map with its
    interval, Diebold-Mariano against ridge and seasonal naive, per origin and per step."""
    mse, mae = _pooled(records, "mse"), _pooled(records, "mae")
    n = len(mse["model"])
    counts = np.array([len(r["times"]) for r in records], np.float64)
    by_step = {
        name: (np.array([r["mse_by_step"][name] for r in records]) * counts[:, None]).sum(axis=0) / counts.sum()
        for name in NAMES
    }
    block = min(n, max(stats.bootstrap_block(n), cfg.horizon))
    pooled = {
        "forecasts": n,
        "mse": {name: float(v.mean()) for name, v in mse.items()},
        "mae": {name: float(v.mean()) for name, v in mae.items()},
        "mse_original": {name: float(v.mean()) for name, v in _pooled(records, "mse_original").items()},
        "mae_original": {name: float(v.mean()) for name, v in _pooled(records, "mae_original").items()},
        "mse_by_step": {name: v.tolist() for name, v in by_step.items()},
        "bootstrap_block": block,
    }
    for reference in ("ridge", "seasonal_naive"):
        pooled[f"skill_vs_{reference}"] = 1.0 - pooled["mse"]["model"] / pooled["mse"][reference]
        pooled[f"skill_vs_{reference}_ci95"] = list(_skill_interval(mse["model"], mse[reference], block))
        pooled[f"diebold_mariano_vs_{reference}"] = stats.diebold_mariano_of_differences(
            mse["model"] - mse[reference], lags=cfg.horizon - 1, horizon=cfg.horizon
        )
    per_origin = [
        {
            "origin": r["origin"],
            "from": r["times"][0],
            "forecasts": len(r["times"]),
            "fit_points": r["fit_points"],
            "fit_seconds": r["fit_seconds"],
            **{f"{name}_mse": float(np.mean(r["mse"][name])) for name in NAMES},
        }
        for r in records
    ]
    result = {
        "source": source,
        "lookback": cfg.lookback,
        "horizon": cfg.horizon,
        "cell": cfg.cell,
        "hidden_size": cfg.hidden_size,
        "origins": len(records),
        "retrain_every": settings.retrain_every,
        "train_length": cfg.train_length,
        "pooled": pooled,
        "per_origin": per_origin,
    }
    result["verdict"] = verdict(result)
    return result


def _skill_interval(model: np.ndarray, reference: np.ndarray, block: int):
    """95% moving-block bootstrap interval of 1 - mean(model) / mean(reference) (per-forecast MSEs)."""
    return stats.interval_95(1.0 - stats.block_bootstrap_ratios(model, reference, block))


def verdict(result: dict) -> str:
    """The pooled result in words."""
    p = result["pooled"]
    mse = p["mse"]
    low, high = p["skill_vs_ridge_ci95"]
    dm = p["diebold_mariano_vs_ridge"]
    text = [
        f"Over {p['forecasts']:,} forecasts of {result['horizon']} rows from {result['origins']} origins, the "
        f"model's MSE is {mse['model']:.4f} (MAE {p['mae']['model']:.4f}, each fit's scaled units); the ridge "
        f"map's {mse['ridge']:.4f}, seasonal naive's {mse['seasonal_naive']:.4f}, repeat-last's "
        f"{mse['repeat_last']:.4f}.",
        f"Skill against the ridge map: {p['skill_vs_ridge']:+.3f} (95% block-bootstrap interval {low:+.3f} to "
        f"{high:+.3f}); Diebold-Mariano statistic {dm['statistic']:+.2f}, p = {dm['p_value']:.3g} "
        f"({stats.describe_dm(dm)}).",
    ]
    if high < 0:
        text.append("The model is worse than the closed-form linear map: it adds nothing here.")
    elif low > 0:
        text.append("The model beats the closed-form linear map by more than the noise.")
    else:
        text.append("The model and the linear map are not told apart by these forecasts.")
    return " ".join(text)


# --------------------------------------------------------------------------- figures, report, console


def write_figures(out: Path, records: list[dict], result: dict) -> None:
    """``backtest.png``: each origin's MSE, the model and the baselines, and the pooled MSE by step."""
    plt = report.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    origins = [r["origin"] for r in result["per_origin"]]
    for name, style in zip(NAMES, ("-o", ":s", "--^", "-.v")):
        left.plot(origins, [r[f"{name}_mse"] for r in result["per_origin"]], style, label=name.replace("_", " "))
    left.set_xticks(origins)
    left.set_xlabel("origin")
    left.set_ylabel("MSE (scaled)")
    left.grid(alpha=0.3)
    left.legend(fontsize="small")
    steps = np.arange(1, result["horizon"] + 1)
    for name, style in zip(NAMES, ("-", ":", "--", "-.")):
        right.plot(steps, result["pooled"]["mse_by_step"][name], style, label=name.replace("_", " "))
    right.set_xlabel("horizon step")
    right.set_ylabel("pooled MSE (scaled)")
    right.grid(alpha=0.3)
    fig.suptitle(f"Backtest: {result['origins']} origins, {result['horizon']} rows ahead")
    fig.tight_layout()
    report.save_figure(fig, out / "backtest.png")


def report_parts(out: Path, result: dict) -> dict:
    """What ``report.html`` shows: the model against each baseline, the figure, the verdict, the origins."""
    p = result["pooled"]
    headline = []
    for name in ("ridge", "seasonal_naive"):
        skill = 1.0 - p["mse"]["model"] / p["mse"][name]
        headline.append(
            Headline(
                f"pooled MSE over {p['forecasts']:,} forecasts ({result['horizon']} rows ahead)",
                f"{p['mse']['model']:.4f}",
                f"{name.replace('_', ' ')}: {p['mse'][name]:.4f}",
                f"skill {skill:+.3f}",
                "better" if skill > 0 else "worse",
            )
        )
    header = ["origin", "from", "forecasts", "fit rows", "fit seconds"] + [f"{n.replace('_', ' ')} MSE" for n in NAMES]
    rows = [
        [str(r["origin"]), r["from"], str(r["forecasts"]), str(r["fit_points"]), f"{r['fit_seconds']:.1f}"]
        + [f"{r[f'{n}_mse']:.4f}" for n in NAMES]
        for r in result["per_origin"]
    ]
    return {
        "title": f"Backtest: {result['cell']} H={result['hidden_size']} on {Path(result['source']).name}, "
        f"{result['horizon']} rows from {result['lookback']}",
        "headline": headline,
        "figures": [("Each origin's MSE and the pooled MSE by horizon step", out / "backtest.png")],
        "texts": [("Against the baselines, in words", result["verdict"])],
        "tables": [("Origins", header, rows)],
    }


def print_summary(result: dict, file=None) -> None:
    file = file or sys.stdout
    print(result["verdict"], file=file)
    print(f"report: {result['backtest_dir']}/report.html", file=file)
