"""Judging point forecasts against persistence: errors, scale-free errors, intervals and a test.

Everything here is plain NumPy on arrays of equal length ``[n]``: ``actual`` prices,
``predicted`` prices and ``last``, the persistence forecast (the value before each
actual).  Neighbouring forecast errors of a price series may be correlated, so the
skill's interval resamples blocks of points; the Diebold-Mariano test follows the
literature for one-step forecasts (no autocovariances, the Harvey-Leybourne-Newbold
small-sample correction, a Student-t p-value) and can allow for autocorrelation
(``lags="auto"``) where the user believes the loss differences are autocorrelated.

Prices that grow tenfold over a backtest make squared errors in price units a vote of the
last years; ``log_returns`` turns a comparison into log-return units, where every period
weighs alike, and the same functions then apply unchanged.
"""

from __future__ import annotations

import math

import numpy as np


def moved(actual: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The steps where the price moved: the ones a direction is scored on."""
    return actual != last


def direction(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> dict:
    """How the forecasts call the direction of the next move.

    ``direction_call_share``: the share of the forecasts that call a move at all (a forecast
    equal to the last value calls none: it is a no-call, not a miss).  ``direction_hit_rate``:
    among the calls made on steps where the price moved, the share with the right sign; NaN
    when there is no such call (persistence makes none).
    """
    called = predicted != last
    scored = called & moved(actual, last)
    right = np.sign(predicted - last) == np.sign(actual - last)
    return {
        "direction_hit_rate": float(np.mean(right[scored])) if scored.any() else float("nan"),
        "direction_call_share": float(np.mean(called)) if len(called) else float("nan"),
    }


def price_metrics(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> dict:
    """MAE, RMSE, MAPE (%) and the direction calls (``direction``)."""
    err = predicted - actual
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape_percent": float(100 * np.mean(np.abs(err) / actual)),
        **direction(actual, predicted, last),
    }


def log_returns(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> tuple:
    """The same forecasts in log-return units: (actual log(actual / last), forecast log(predicted /
    last), persistence 0), each ``[n]``.  Feed them to ``skill``, ``skill_interval`` or
    ``diebold_mariano`` for the scale-free comparison: a 1% miss weighs the same at any price."""
    actual, predicted, last = (np.asarray(a, dtype=np.float64) for a in (actual, predicted, last))
    return np.log(actual / last), np.log(predicted / last), np.zeros_like(last)


def skill(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray) -> float:
    """1 - RMSE(model) / RMSE(persistence): above 0 beats persistence, 1 is perfect."""
    persistence = float(np.sqrt(np.mean((last - actual) ** 2)))
    if not persistence > 0:
        return float("nan")
    return 1.0 - float(np.sqrt(np.mean((predicted - actual) ** 2))) / persistence


def skill_interval(
    actual: np.ndarray, predicted: np.ndarray, last: np.ndarray, draws: int = 2000, block: int = 10, seed: int = 0
) -> tuple[float, float]:
    """95% moving-block bootstrap interval of the skill.

    Resamples blocks of ``block`` consecutive points (errors of neighbouring
    forecasts are correlated, so single points would understate the spread) and
    recomputes 1 - RMSE_model / RMSE_persistence ``draws`` times.
    """
    ratios = block_bootstrap_ratios((predicted - actual) ** 2, (last - actual) ** 2, block, draws, seed)
    return interval_95(1.0 - np.sqrt(ratios))


def block_bootstrap_ratios(
    numerator: np.ndarray, denominator: np.ndarray, block: int, draws: int = 2000, seed: int = 0
) -> np.ndarray:
    """mean(numerator) / mean(denominator) over ``draws`` moving-block resamples of the pairs
    (blocks of ``block`` consecutive ones, so correlated neighbours travel together)."""
    n = len(numerator)
    if n == 0:
        return np.empty(0)
    block = max(1, min(block, n))
    starts = np.random.default_rng(seed).integers(0, n - block + 1, (draws, math.ceil(n / block)))
    idx = (starts[..., None] + np.arange(block)).reshape(draws, -1)[:, :n]
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator[idx].mean(axis=1) / denominator[idx].mean(axis=1)


def interval_95(draws: np.ndarray) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles of the finite ``draws`` (NaN, NaN when there are none)."""
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_block(n: int) -> int:
    """A block length for ``n`` points: about n^(1/3), the usual rate for a moving-block bootstrap."""
    return max(1, round(n ** (1 / 3)))


def persistence_scale(train_prices: np.ndarray) -> float:
    """MASE's scale: the mean absolute one-step change of the prices a model was fitted on (the
    in-sample persistence MAE), so a MASE of 1 is as good as persistence was in sample."""
    changes = np.abs(np.diff(np.asarray(train_prices, dtype=np.float64)))
    return float(changes.mean()) if changes.size else float("nan")


def newey_west_lags(n: int) -> int:
    """The Newey-West automatic lag for ``n`` points: floor(4 (n/100)^(2/9))."""
    return int(math.floor(4 * (n / 100) ** (2 / 9)))


def long_run_variance(d: np.ndarray, lags: int | None = None) -> float:
    """Newey-West (Bartlett kernel) estimate of the long-run variance of the series ``d``: its
    variance plus weighted autocovariances up to ``lags`` (None: ``newey_west_lags``), each
    autocovariance summed over the pairs it has and divided by n."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if lags is None:
        lags = newey_west_lags(n)
    lags = max(0, min(lags, n - 1))
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, lags + 1):
        variance += 2 * (1 - k / (lags + 1)) * float(centred[k:] @ centred[:-k]) / n
    return variance


def student_t_two_sided_p(statistic: float, dof: int) -> float:
    """P(|T| >= |statistic|) for T Student-t with ``dof`` (>= 1, whole) degrees of freedom.

    The finite sums of Abramowitz and Stegun 26.7.3-26.7.4 for P(|T| < t): with
    theta = atan(t / sqrt(dof)), an odd ``dof`` gives (2/pi)(theta + sin(theta) cos(theta)
    (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)), an even one sin(theta) (1 + 1/2 cos^2 +
    1*3/(2*4) cos^4 + ...), each with (dof - 1) // 2 terms (so no SciPy is needed).
    """
    if not math.isfinite(statistic):
        return float("nan") if math.isnan(statistic) else 0.0
    dof = int(dof)
    if dof < 1:
        return float("nan")
    theta = math.atan(abs(statistic) / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    k = np.arange(1, (dof - 1) // 2 + 1, dtype=np.float64)
    if dof % 2:
        ratios = 2 * k / (2 * k + 1) * cos2  # term k / term k-1
        terms = np.cumprod(ratios[:-1]) if dof > 3 else np.empty(0)
        inside = (
            2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * (1 + float(terms.sum())))
            if dof > 1
            else 2 * theta / math.pi
        )
    else:
        terms = np.cumprod((2 * k - 1) / (2 * k) * cos2)
        inside = math.sin(theta) * (1 + float(terms.sum()))
    return float(min(1.0, max(0.0, 1.0 - inside)))


def diebold_mariano(actual: np.ndarray, predicted: np.ndarray, last: np.ndarray, lags: int | str = 0) -> dict:
    """Diebold-Mariano test of equal squared error, model against persistence, as run for
    one-step forecasts.

    d_t = (model error)^2 - (persistence error)^2; the statistic is mean(d) over its standard
    error, times the Harvey-Leybourne-Newbold (1997) small-sample factor sqrt((n + 1 - 2h +
    h(h-1)/n) / n) with h = 1, and its two-sided p-value is read from a Student-t with n - 1
    degrees of freedom.  ``lags``: the autocovariances in the variance of mean(d); 0 (the
    default, h - 1 for one-step forecasts: Diebold and Mariano 1995, R's ``forecast::dm.test``
    with h = 1), a number, or ``"auto"`` for a Newey-West variance with ``newey_west_lags(n)``
    lags, for loss differences believed autocorrelated.  With ``lags=0`` the statistic is the
    paired t statistic of d.  A negative statistic means the model's squared errors are smaller.
    """
    d = (np.asarray(predicted) - actual) ** 2 - (np.asarray(last) - actual) ** 2
    return diebold_mariano_of_differences(d, lags)


def diebold_mariano_of_differences(d: np.ndarray, lags: int | str = 0, horizon: int = 1) -> dict:
    """Diebold-Mariano test of a loss difference ``d`` (model's loss less the reference's, one per
    forecast), for forecasts ``horizon`` steps ahead: the Harvey-Leybourne-Newbold factor
    sqrt((n + 1 - 2h + h(h-1)/n) / n) and a Student-t(n - 1) p-value; ``lags`` as in
    ``diebold_mariano``."""
    d = np.asarray(d, np.float64)
    n, h = len(d), int(horizon)
    used = newey_west_lags(n) if lags == "auto" else int(lags)
    out = {
        "points": n,
        "lags": used,
        "variance": "newey-west" if lags == "auto" else "lags" if used else "plain",
        "correction": "harvey-leybourne-newbold",
        "distribution": f"student-t({max(n - 1, 0)})",
    }
    factor = (n + 1 - 2 * h + h * (h - 1) / n) / n if n else 0.0
    if n < 2 or factor <= 0:
        return dict(out, statistic=float("nan"), p_value=float("nan"))
    variance = long_run_variance(d, used)
    if not variance > 0:
        statistic = 0.0 if d.mean() == 0 else math.copysign(math.inf, d.mean())
    else:
        statistic = float(d.mean() / math.sqrt(variance / n) * math.sqrt(factor))
    return dict(out, statistic=statistic, p_value=student_t_two_sided_p(statistic, n - 1))


def describe_dm(dm: dict) -> str:
    """How a ``diebold_mariano`` result was computed, in words."""
    if dm["variance"] == "newey-west":
        how = f"a Newey-West variance with {dm['lags']} lags (loss differences taken as autocorrelated)"
    elif dm["lags"]:
        how = f"a Bartlett variance with {dm['lags']} lags"
    else:
        how = "no autocovariances (one-step forecasts)"
    return f"{how}, the Harvey-Leybourne-Newbold correction and a {dm['distribution']} p-value"


def compare_with_persistence(
    actual: np.ndarray, predicted: np.ndarray, last: np.ndarray, scale: np.ndarray | float
) -> dict:
    """The model's RMSE, MAE and MASE next to persistence's, its direction calls, and the skill
    in price units (``skill``) and in log-return units (``log_return_skill``).

    ``scale``: MASE's denominator, one number or one per point (each point scaled by the
    in-sample persistence MAE of the model that forecast it).
    """
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), np.shape(actual))
    model = price_metrics(actual, predicted, last)
    persistence = price_metrics(actual, last, last)
    out = {"points": int(len(actual))}
    for key in ("rmse", "mae"):
        out[key], out[f"persistence_{key}"] = model[key], persistence[key]
    out["direction_hit_rate"], out["direction_call_share"] = model["direction_hit_rate"], model["direction_call_share"]
    out["mase"] = float(np.mean(np.abs(predicted - actual) / scale))
    out["persistence_mase"] = float(np.mean(np.abs(last - actual) / scale))
    out["skill"] = skill(actual, predicted, last)
    out["log_return_skill"] = skill(*log_returns(actual, predicted, last))
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


# --------------------------------------------------------------------------- baselines and conformal quantiles


def ewma_volatility(prices: np.ndarray, decay: float) -> np.ndarray:
    """``[N + 1]`` the volatility a forecaster knows before each point of ``prices`` ``[N]``:
    entry t is the standard deviation expected of log(p_t / p_(t-1)), from the returns before it
    only, r_1 .. r_(t-1) (entry N is the one after the last price).

    An exponentially weighted mean of the squared returns (RiskMetrics: J.P. Morgan/Reuters,
    RiskMetrics Technical Document, 1996, decay 0.94 for daily returns), updated point by point:
    S_t = decay S_(t-1) + (1 - decay) r_(t-1)^2, divided by the weight it has so far
    (1 - decay^(t-1)), so it needs no starting value and equals the textbook recursion once the
    start has faded.  Entries 0 and 1 know no return: NaN.
    """
    log_prices = np.log(np.asarray(prices, dtype=np.float64))
    squared = np.diff(log_prices) ** 2  # r_1 .. r_(N-1)
    out = np.full(len(log_prices) + 1, np.nan)
    total = weight = 0.0
    for t, r2 in enumerate(squared, start=2):
        total = decay * total + (1 - decay) * r2
        weight = decay * weight + (1 - decay)
        out[t] = math.sqrt(total / weight)
    return out


def random_walk_quantiles(last: np.ndarray, sd, levels) -> np.ndarray:
    """``[n, K]`` price quantiles at ``levels`` of a random walk in log-price centred on ``last``
    ``[n]`` with volatility ``sd`` (one number, or ``[n]``, in log-return units)."""
    z = normal_quantiles(levels)
    sd = np.broadcast_to(np.asarray(sd, dtype=np.float64), np.shape(last))
    return np.asarray(last, dtype=np.float64)[:, None] * np.exp(sd[:, None] * z[None, :])


def random_walk_scores(actual: np.ndarray, last: np.ndarray, sd) -> dict:
    """Per point ``[n]``: the random walk's CRPS (``crps``) and whether ``actual`` lies inside its
    80% and 95% intervals (``inside_80``, ``inside_95``)."""
    out = {"crps": crps_from_quantiles(actual, random_walk_quantiles(last, sd, CRPS_LEVELS))}
    for level in (80, 95):
        q = random_walk_quantiles(last, sd, interval_levels(level / 100))
        out[f"inside_{level}"] = (actual >= q[:, 0]) & (actual <= q[:, 1])
    return out


def conformal_ranks(m: int, levels) -> np.ndarray:
    """The 1-based order statistics of ``m`` calibration residuals that split conformal
    prediction reads at ``levels``: ceil((m + 1) p) for p >= 1/2 and, by symmetry,
    floor((m + 1) p) below, so the central interval at level 1 - a runs from the
    floor((m + 1) a/2)-th to the ceil((m + 1)(1 - a/2))-th and a new exchangeable residual
    falls inside with probability at least 1 - a.  Ranks past the sample (too few residuals
    for the level) are clipped to 1 and m: ``conformal_enough`` says when that happens."""
    x = (m + 1) * np.atleast_1d(np.asarray(levels, dtype=np.float64))
    ranks = np.where(x >= (m + 1) / 2, np.ceil(x - 1e-9), np.floor(x + 1e-9))
    return np.clip(ranks, 1, m).astype(np.int64)


def conformal_enough(m: int, level: float) -> bool:
    """Whether ``m`` residuals give a bounded central ``level`` interval (m >= 2 / (1 - level) - 1)."""
    return math.ceil((m + 1) * (1 + level) / 2 - 1e-9) <= m


REFERENCE_WALK = "ewma_random_walk"  # the baseline ``crps_skill`` is measured against


def against_random_walks(actual: np.ndarray, last: np.ndarray, crps: np.ndarray, walks: dict) -> dict:
    """The model's mean CRPS (``crps`` ``[n]``, per point) next to each random walk's.

    ``walks``: name -> volatility (one number or ``[n]``).  For each: ``<name>_crps``, its own
    interval coverage ``<name>_coverage_80`` / ``_95``, and the model's CRPS skill against it,
    ``crps_skill`` for ``REFERENCE_WALK`` and ``<short name>_crps_skill`` for the others
    (``train_vol_random_walk`` -> ``train_vol_crps_skill``).
    """
    out = {"crps": float(np.mean(crps))}
    for name, sd in walks.items():
        scores = random_walk_scores(actual, last, sd)
        reference = float(scores["crps"].mean())
        out[f"{name}_crps"] = reference
        for level in (80, 95):
            out[f"{name}_coverage_{level}"] = float(scores[f"inside_{level}"].mean())
        key = "crps_skill" if name == REFERENCE_WALK else f"{name.removesuffix('_random_walk')}_crps_skill"
        out[key] = float(1.0 - out["crps"] / reference) if reference > 0 else float("nan")
    return out
