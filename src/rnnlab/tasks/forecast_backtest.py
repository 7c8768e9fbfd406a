"""The forecast task's half of a rolling-origin backtest (``rnnlab.backtest`` is the engine): each
origin's one-step forecasts and what is kept of them, the pooled verdict against persistence and
the random walks (``forecast_stats``), the figure, the report and the console summary."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import jsonfile, report
from ..data.series import points_needed, split_sizes
from ..facts import Headline
from . import forecast_stats as stats
from .forecast_model import forecast_points
from .forecast_text import percent


def needed_points(cfg) -> tuple[int, str]:
    """Points one fit needs, and why (its window)."""
    return points_needed(cfg.window, cfg.fractions), f"--window {cfg.window}"


def fit_facts(fit_cfg, series, first: int, last: int) -> dict:
    """MASE's scale: the in-sample persistence MAE of the fit's training part (not its validation)."""
    past = series.prices.to_numpy()[first:last]
    n_train = split_sizes(len(past), fit_cfg.fractions)[0]
    return {"mase_scale": stats.persistence_scale(past[:n_train])}


RECORD_SCHEMA = jsonfile.FORECASTS


def origin_record(loaded, series, origin, facts: dict) -> dict:
    """The forecasts of one origin's points by the fit ``loaded``, with what the summary needs."""
    prices = series.prices
    points = np.arange(origin.first, origin.end)
    f = forecast_points(loaded, series, points)
    actual = prices.to_numpy()[points]
    record = {
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


# --------------------------------------------------------------------------- the verdict


def summarize(records: list[dict], source: str, cfg, settings) -> dict:
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
    pooled = result["pooled"]
    lo, hi = pooled["log_return_skill_ci95"]
    price_lo, price_hi = pooled["skill_ci95"]
    headline = [
        Headline(
            f"pooled log-return skill, {pooled['points']} forecasts at {result['origins']} origins",
            f"skill {pooled['log_return_skill']:+.4f}",
            "persistence: skill 0",
            f"95% CI {lo:+.4f} to {hi:+.4f}; Diebold-Mariano p = {pooled['log_return_diebold_mariano']['p_value']:.3g}",
            "better" if lo > 0 else "worse" if hi < 0 else "close",
        ),
        Headline(
            "pooled RMSE in price units (weighted toward high prices)",
            f"RMSE {pooled['rmse']:,.4g}",
            f"persistence: RMSE {pooled['persistence_rmse']:,.4g}",
            f"skill {pooled['skill']:+.4f} ({price_lo:+.4f} to {price_hi:+.4f})",
            "better" if price_lo > 0 else "worse" if price_hi < 0 else "close",
        ),
        Headline(
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
            Headline(
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


def write_figures(out: Path, records: list[dict], result: dict) -> None:
    """``backtest.png``."""
    plot_backtest(out / "backtest.png", records, result)


def report_parts(out: Path, result: dict) -> dict:
    """What ``report.html`` shows: the verdict, the plot, the per-year and per-origin tables."""
    return {
        "title": f"Backtest: {result['cell']} H={result['hidden_size']} on {Path(result['source']).name} every "
        f"{result['every']}",
        "headline": _headline(result),
        "figures": [("Log-return skill per origin and cumulative squared-error difference", out / "backtest.png")],
        "texts": [("Against persistence, in words", result["verdict"])],
        "tables": _tables(result),
    }


def print_summary(result: dict, file=None) -> None:
    """The verdict and where the files are, for the command line."""
    file = file or sys.stdout
    print(result["verdict"], file=file)
    print(f"report: {result['backtest_dir']}/report.html", file=file)
