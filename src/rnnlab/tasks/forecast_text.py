"""What the forecast task says and draws: a part's numbers in words, the loss and forecast plots,
and the report's facts (``report_facts``)."""

from __future__ import annotations

import math
from pathlib import Path

from .. import report
from ..facts import Facts, Headline, read_json
from .forecast_data import Part
from .forecast_model import Forecasts

ZOOM_POINTS = 60  # points in the close-up panel of the forecast plot


def describe(result: dict, what: str = "test") -> str:
    """A few sentences on one part's numbers, persistence first-class."""
    skill = result["skill"]
    verdict = (
        f"{skill * 100:.2f}% lower RMSE than persistence"
        if skill > 0
        else f"{-skill * 100:.2f}% higher RMSE than persistence"
    )
    lo, hi = result["skill_ci95"]
    interval = f" (95% block-bootstrap interval {lo:+.3f} to {hi:+.3f}" + (
        "; no clear difference from persistence on this many points)" if lo <= 0 <= hi else ")"
    )
    text = [
        f"On {result['points']} {what} points ({result['from'][:16]} to {result['to'][:16]}), the model's RMSE is "
        f"{result['rmse']:,.2f} against {result['persistence_rmse']:,.2f} for persistence (next = last): "
        f"skill {skill:+.4f}{interval}, {verdict}.",
        f"MAE {result['mae']:,.2f} vs {result['persistence_mae']:,.2f}; MAPE {result['mape_percent']:.2f}% vs "
        f"{result['persistence_mape_percent']:.2f}%.",
        describe_log_return_skill(result),
        describe_direction(result),
    ]
    outside = result["inputs_outside_training_range"]
    if outside > 0:
        text.append(
            f"{outside * 100:.0f}% of the inputs lie outside the range seen in training: there the model extrapolates."
        )
    text += describe_shrink_and_intervals(result)
    return " ".join(text)


def describe_log_return_skill(result: dict) -> str:
    """The scale-free comparison in one sentence (``log_return_skill`` and its test)."""
    lo, hi = result["log_return_skill_ci95"]
    dm = result["log_return_diebold_mariano"]
    return (
        f"In log-returns, where a 1% miss weighs the same at any price, the skill is "
        f"{result['log_return_skill']:+.4f} ({lo:+.3f} to {hi:+.3f}; Diebold-Mariano p = {dm['p_value']:.3g})."
    )


def percent(x: float, digits: int = 1) -> str:
    """``x`` as a percentage, or "n/a" for NaN (a rate with nothing to count)."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def describe_direction(result: dict) -> str:
    """The direction calls in one sentence: hit rate over the calls, share of forecasts calling one."""
    if not result["direction_call_share"] > 0:
        return "It never called a move (every forecast is the last value), so it has no direction to score."
    return (
        f"It called a move in {percent(result['direction_call_share'])} of the forecasts and got the "
        f"direction right in {percent(result['direction_hit_rate'])} of those that moved (always guessing "
        f"'up' would score {percent(result['up_share'])}; a forecast of no move is a no-call, not a miss)."
    )


def describe_shrink_and_intervals(result: dict) -> list[str]:
    """Sentences on the shrink weight and the Gaussian head's intervals, where a result has them."""
    text = []
    alpha = result.get("alpha")
    if alpha == 0:
        text.append(
            "The shrink weight fitted on validation is 0: the model found nothing that persistence "
            "does not already know, so the forecast is persistence itself."
        )
    elif alpha is not None:
        text.append(
            f"Forecasts are shrunk toward persistence with weight alpha = {alpha:.3f} fitted on validation "
            f"(persistence + alpha x (model - persistence)); unshrunk, the skill is "
            f"{result['unshrunk_skill']:+.4f}."
        )
    if "coverage_80" in result:
        text.append(
            f"Intervals: {100 * result['coverage_80']:.1f}% of actual values fell inside the 80% interval "
            f"and {100 * result['coverage_95']:.1f}% inside the 95% one."
        )
        if "calibration_residuals" in result:
            text.append(
                f"Only {result['calibration_residuals']} validation residuals calibrate them: a 95% "
                "interval needs at least 39 for its coverage guarantee, so its ends are the extreme "
                "residuals and it may cover less."
            )
        text.append(describe_random_walks(result))
    return text


def describe_random_walks(result: dict) -> str:
    """The model's CRPS against the two random walks, with their own coverage."""
    text = (
        f"CRPS {result['crps']:,.4g} against {result['ewma_random_walk_crps']:,.4g} for a random walk whose "
        f"volatility is an exponentially weighted mean of the returns before each forecast (CRPS skill "
        f"{result['crps_skill']:+.4f}; its intervals cover {percent(result['ewma_random_walk_coverage_80'])} "
        f"and {percent(result['ewma_random_walk_coverage_95'])})"
    )
    text += (
        f" and {result['train_vol_random_walk_crps']:,.4g} for one with the training part's volatility (CRPS "
        f"skill {result['train_vol_crps_skill']:+.4f}; covering "
        f"{percent(result['train_vol_random_walk_coverage_80'])} and "
        f"{percent(result['train_vol_random_walk_coverage_95'])})."
    )
    if abs(result["crps_skill"]) < 0.01:
        text += " Against the volatility a forecaster already knows, the model's distribution adds next to nothing."
    return text


def plot_history(run_dir: Path, loss_steps: str) -> Path | None:
    """Per-epoch training and validation loss (the exercise's main output), log scale, best epoch
    (lowest validation RMSE in price units) marked."""
    rows = report.read_metrics(run_dir)
    trained = [r for r in rows if r.get("train_loss_mean") is not None]
    if not trained:
        return None
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=100)
    label = "train (mean over the epoch)" if loss_steps == "last" else "train objective, all steps (epoch mean)"
    ax.plot([r["epoch"] for r in trained], [r["train_loss_mean"] for r in trained], marker=".", label=label)
    if loss_steps == "all":
        ax.plot(
            [r["epoch"] for r in rows],
            [r["train_mse"] for r in rows],
            marker=".",
            label="train forecast MSE (end of epoch)",
        )
    # Validation starts at epoch 0, the untrained model (for returns: persistence itself).
    ax.plot([r["epoch"] for r in rows], [r["val_mse"] for r in rows], marker=".", label="validation")
    ax.axhline(
        rows[0]["val_persistence_mse"],
        color="tab:orange",
        linestyle="--",
        linewidth=1,
        label="persistence (validation)",
    )
    best = min(rows, key=lambda r: r["val_loss"])
    ax.plot(
        [best["epoch"]],
        [best["val_mse"]],
        "o",
        color="k",
        fillstyle="none",
        markersize=10,
        label=f"best (epoch {best['epoch']:g})",
    )
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(run_dir) / "loss.png"
    report.save_figure(fig, path)
    return path


def plot_forecast(path: Path, part: Part, forecasts: Forecasts, result: dict, title: str) -> Path:
    """Test actual vs model vs persistence, with the 80% and 95% intervals of a Gaussian head:
    the whole test period and a close-up of its end."""
    import textwrap

    predicted = forecasts.point
    bands = [(level, *forecasts.interval(level)) for level in (0.95, 0.8)] if forecasts.log_var is not None else []

    plt = report.pyplot()
    wrapped = textwrap.fill(describe(result), 120)
    text_inches = 0.18 * (wrapped.count("\n") + 1) + 0.3
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(10, 7 + text_inches),
        dpi=100,
        gridspec_kw={"bottom": (text_inches + 0.5) / (7 + text_inches), "hspace": 0.35},
    )
    zoom = slice(max(0, len(part.actual) - ZOOM_POINTS), None)
    for ax, sl, subtitle in (
        (axes[0], slice(None), "test period"),
        (axes[1], zoom, f"last {min(ZOOM_POINTS, len(part.actual))} test points"),
    ):
        t = part.times[sl]
        for (level, low, high), shade in zip(bands, (0.15, 0.3)):
            ax.fill_between(
                t, low[sl], high[sl], color="tab:blue", alpha=shade, linewidth=0, label=f"{100 * level:g}% interval"
            )
        ax.plot(t, part.actual[sl], "-", color="k", linewidth=1.4, label="actual")
        ax.plot(t, part.last[sl], "--", color="tab:orange", linewidth=1, label="persistence (last value)")
        ax.plot(t, predicted[sl], "-", color="tab:blue", linewidth=1, label="model")
        if sl is zoom:
            ax.plot(t, part.actual[sl], ".", color="k")
        ax.set_title(subtitle, fontsize="medium")
        ax.set_ylabel("price")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(
        f"{title}\nskill {result['skill']:+.3f} vs persistence "
        f"(RMSE {result['rmse']:,.2f} vs {result['persistence_rmse']:,.2f})",
        fontsize="medium",
    )
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
    fig.text(0.05, 0.02, wrapped, fontsize=8.5, va="bottom", ha="left")
    report.save_figure(fig, path)
    return Path(path)


def _test_headlines(test: dict) -> list:
    """The report's cards for a test result: price and log-return skill, MAE, direction,
    intervals against the random walks, and the shrink weight."""
    headlines = []
    low, high = test.get("skill_ci95") or (float("nan"), float("nan"))
    skill = test["skill"]
    headlines.append(
        Headline(
            f"test RMSE ({test['points']:,} points, price units)",
            f"RMSE {test['rmse']:,.4g}",
            f"persistence: RMSE {test['persistence_rmse']:,.4g}",
            f"skill {skill:+.3f} (95% CI {low:+.3f} to {high:+.3f})",
            "better" if low > 0 else "worse" if high < 0 else "close",
        )
    )
    headlines.append(
        Headline(
            "test MAE",
            f"MAE {test['mae']:,.4g}",
            f"persistence: MAE {test['persistence_mae']:,.4g}",
            f"MAE skill {test['mae_skill']:+.3f}",
            "better" if test["mae_skill"] > 0 else "worse",
        )
    )
    lr_low, lr_high = test["log_return_skill_ci95"]
    headlines.append(
        Headline(
            "test log-return RMSE (scale-free)",
            f"skill {test['log_return_skill']:+.4f}",
            "persistence: skill 0",
            f"95% CI {lr_low:+.3f} to {lr_high:+.3f}; Diebold-Mariano p = "
            f"{test['log_return_diebold_mariano']['p_value']:.3g}",
            "better" if lr_low > 0 else "worse" if lr_high < 0 else "close",
        )
    )
    hit, calls, up = test["direction_hit_rate"], test["direction_call_share"], test["up_share"]
    headlines.append(
        Headline(
            "direction of the next move",
            f"{percent(hit)} right of the calls",
            f"always 'up': {percent(up)}",
            f"calls a move in {percent(calls)} of the forecasts",
            "better" if math.isfinite(hit) and hit > max(up, 1 - up) else "worse",
        )
    )
    if "coverage_80" in test:
        headlines.append(
            Headline(
                "interval coverage (80% / 95%)",
                f"{100 * test['coverage_80']:.1f}% / {100 * test['coverage_95']:.1f}%",
                f"EWMA random walk: {percent(test['ewma_random_walk_coverage_80'])} / "
                f"{percent(test['ewma_random_walk_coverage_95'])}",
                f"CRPS {test['crps']:,.4g} vs EWMA random walk {test['ewma_random_walk_crps']:,.4g} (skill "
                f"{test['crps_skill']:+.3f}; vs training volatility {test['train_vol_crps_skill']:+.3f})",
                "better" if test["crps_skill"] > 0 else "worse",
            )
        )
    if test.get("alpha") is not None:
        headlines.append(
            Headline(
                "shrink weight toward persistence (fitted on validation)",
                f"alpha {test['alpha']:.3f}",
                f"unshrunk skill {test['unshrunk_skill']:+.3f}",
                "the model adds nothing to persistence" if test["alpha"] == 0 else f"skill {test['skill']:+.3f} shrunk",
                "worse" if test["alpha"] == 0 else "close",
            )
        )
    return headlines


def report_facts(run_dir: Path, meta: dict, metrics: list[dict]):
    """Test RMSE, MAE and direction against persistence, the loss and forecast plots and the
    comparison in words, for ``rnnlab.html_report``."""
    facts = Facts(val_curve=("val_rmse", "validation RMSE (price units)"))
    test = read_json(Path(run_dir) / "test.json")
    if test is not None:
        facts.headline += _test_headlines(test)
        if test.get("comparison_text"):
            facts.texts.append(("Against persistence, in words", test["comparison_text"]))
    else:
        rows = [r for r in metrics if r.get("val_skill") is not None]
        if rows:
            last = rows[-1]
            facts.headline.append(
                Headline(
                    f"validation RMSE at epoch {last.get('epoch', 0):g} (no test yet)",
                    f"RMSE {last['val_rmse']:,.4g}",
                    f"persistence: RMSE {last['val_persistence_rmse']:,.4g}",
                    f"skill {last['val_skill']:+.3f}",
                    "better" if last["val_skill"] > 0 else "worse",
                )
            )
    facts.figures += [
        ("Training and validation loss per epoch; the best epoch on validation is kept", "loss.png"),
        ("Test period: actual prices, the model's forecasts and persistence", "forecast.png"),
    ]
    return facts
