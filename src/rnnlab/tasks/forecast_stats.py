"""Judging point forecasts against persistence: errors, scale-free errors, intervals and a test.

Everything here is plain NumPy on arrays of equal length ``[n]``: ``actual`` prices,
``predicted`` prices and ``last``, the persistence forecast (the value before each
actual).  Neighbouring forecast errors of a price series are correlated, so the
interval resamples blocks and the Diebold-Mariano test uses a variance that allows
for autocorrelation; treating the points as independent would claim more certainty
than the data holds.
"""

from __future__ import annotations

import math

import numpy as np


def moved(actual: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The steps where the price moved: the ones a direction is scored on."""
    return actual != last


def price_metrics(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> dict:
    """MAE, RMSE, MAPE (%) and direction accuracy: the share of the steps where the price moved
    whose direction was called right (a step without a move has no direction to call, and
    predicting no move calls none); NaN when nothing moved."""
    err = predicted - actual
    scored = moved(actual, last)
    right = np.sign(predicted - last) == np.sign(actual - last)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "mape_percent": float(100 * np.mean(np.abs(err) / actual)),
            "direction_accuracy": float(np.mean(right[scored])) if scored.any() else float("nan")}


def skill(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> float:
    """1 - RMSE(model) / RMSE(persistence): above 0 beats persistence, 1 is perfect."""
    persistence = float(np.sqrt(np.mean((last - actual) ** 2)))
    if not persistence > 0:
        return float("nan")
    return 1.0 - float(np.sqrt(np.mean((predicted - actual) ** 2))) / persistence


def skill_interval(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray, draws: int = 2000,
                   block: int = 10, seed: int = 0) -> tuple[float, float]:
    """95% moving-block bootstrap interval of the skill.

    Resamples blocks of ``block`` consecutive points (errors of neighbouring
    forecasts are correlated, so single points would understate the spread) and
    recomputes 1 - RMSE_model / RMSE_persistence ``draws`` times.
    """
    n = len(actual)
    if n == 0:
        return float("nan"), float("nan")
    block = max(1, min(block, n))
    model_sq, persistence_sq = (predicted - actual) ** 2, (last - actual) ** 2
    starts = np.random.default_rng(seed).integers(0, n - block + 1, (draws, math.ceil(n / block)))
    idx = (starts[..., None] + np.arange(block)).reshape(draws, -1)[:, :n]
    with np.errstate(divide="ignore", invalid="ignore"):
        skills = 1.0 - np.sqrt(model_sq[idx].mean(axis=1) / persistence_sq[idx].mean(axis=1))
    skills = skills[np.isfinite(skills)]
    if skills.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(skills, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_block(n: int) -> int:
    """A block length for ``n`` points: about n^(1/3), the usual rate for a moving-block bootstrap."""
    return max(1, round(n ** (1 / 3)))


def persistence_scale(train_prices: np.ndarray) -> float:
    """MASE's scale: the mean absolute one-step change of the prices a model was fitted on (the
    in-sample persistence MAE), so a MASE of 1 is as good as persistence was in sample."""
    changes = np.abs(np.diff(np.asarray(train_prices, dtype=np.float64)))
    return float(changes.mean()) if changes.size else float("nan")


def long_run_variance(d: np.ndarray, lags: int | None = None) -> float:
    """Newey-West (Bartlett kernel) estimate of the long-run variance of the series ``d``: its
    variance plus weighted autocovariances up to ``lags`` (default floor(4 (n/100)^(2/9)))."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if lags is None:
        lags = int(math.floor(4 * (n / 100) ** (2 / 9)))
    lags = max(0, min(lags, n - 1))
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, lags + 1):
        variance += 2 * (1 - k / (lags + 1)) * float(centred[k:] @ centred[:-k]) / n
    return variance


def diebold_mariano(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray,
                    lags: int | None = None) -> dict:
    """Diebold-Mariano test of equal squared error, model against persistence.

    d_t = (model error)^2 - (persistence error)^2; the statistic is mean(d) over its
    standard error from the Newey-West long-run variance, compared with a standard
    normal (two-sided p-value).  A negative statistic means the model's squared errors
    are smaller.
    """
    d = (np.asarray(predicted) - actual) ** 2 - (np.asarray(last) - actual) ** 2
    n = len(d)
    if n < 2:
        return {"statistic": float("nan"), "p_value": float("nan"), "points": n}
    variance = long_run_variance(d, lags)
    if not variance > 0:
        statistic = 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    else:
        statistic = float(d.mean() / math.sqrt(variance / n))
    p_value = math.erfc(abs(statistic) / math.sqrt(2)) if math.isfinite(statistic) else 0.0
    return {"statistic": statistic, "p_value": float(p_value), "points": n}


def compare_with_persistence(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray,
                             scale: np.ndarray | float) -> dict:
    """The model's RMSE, MAE, MASE and direction accuracy next to persistence's, and the skill.

    ``scale``: MASE's denominator, one number or one per point (each point scaled by the
    in-sample persistence MAE of the model that forecast it).
    """
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), np.shape(actual))
    model = price_metrics(actual, predicted, last)
    persistence = price_metrics(actual, last, last)
    out = {"points": int(len(actual))}
    for key in ("rmse", "mae", "direction_accuracy"):
        out[key], out[f"persistence_{key}"] = model[key], persistence[key]
    out["mase"] = float(np.mean(np.abs(predicted - actual) / scale))
    out["persistence_mase"] = float(np.mean(np.abs(last - actual) / scale))
    out["skill"] = skill(actual, predicted, last)
    return out


# --------------------------------------------------------------------------- forecast distributions

# Probability levels at which a forecast distribution is read: the midpoints of 200 equal slices
# of (0, 1), so the mean over them is the midpoint rule for an integral over the levels.
CRPS_LEVELS = (np.arange(200) + 0.5) / 200


def normal_quantiles(levels) -> np.ndarray:
    """Standard normal quantiles at ``levels`` (each in (0, 1))."""
    from statistics import NormalDist

    unit = NormalDist()
    return np.array([unit.inv_cdf(float(p)) for p in np.atleast_1d(levels)])


def crps_from_quantiles(actual: np.ndarray, quantiles: np.ndarray, levels: np.ndarray = CRPS_LEVELS) -> np.ndarray:
    """``[n]`` continuous ranked probability scores, in the units of ``actual``, of forecast
    distributions given by their ``quantiles`` ``[n, K]`` at ``levels`` ``[K]``.

    CRPS is twice the integral over levels p of the pinball loss of the p-quantile; the mean
    over evenly spread levels is the midpoint rule for it (with 200 levels, within 0.1% of the
    closed form for a normal distribution).  Lower is better; for a point forecast it is the
    absolute error, so it compares with MAE.
    """
    diff = np.asarray(actual, dtype=np.float64)[:, None] - quantiles
    return 2.0 * np.mean(np.maximum(levels * diff, (levels - 1.0) * diff), axis=1)


def coverage(actual: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of ``actual`` inside [low, high]."""
    return float(np.mean((actual >= low) & (actual <= high)))


def interval_levels(level: float) -> tuple[float, float]:
    """The probability levels of a central interval: 0.8 -> (0.1, 0.9)."""
    return (1 - level) / 2, (1 + level) / 2
