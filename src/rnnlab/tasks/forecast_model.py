"""The forecast task's model side: forecasts in prices from a trained model, their distribution,
the shrink weight and interval calibration fitted on validation, and the comparison of one part's
forecasts with persistence (``compare``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config import ForecastConfig
from . import forecast_stats as stats
from .forecast_data import Features, Part, Series, channel_windows
from .forecast_stats import price_metrics, skill_interval


@dataclass
class Calibration:
    """What a run fits on its validation part after training, for its best epoch.

    ``alpha``: the shrink weight toward persistence (``--shrink auto``), else None.
    ``residuals``: the sorted standardized residuals (actual - mean) / sd of the Gaussian head
    on validation (``--intervals calibrated``), else None; the order statistics split conformal
    prediction prescribes (``stats.conformal_ranks``) replace the normal quantiles, so intervals
    keep the tails the data has and cover at least their level in expectation.  ``unshrunk_residuals``: the same for
    the unshrunk mean, when there is a shrink weight (to report the model without shrinking).
    """

    alpha: float | None = None
    residuals: np.ndarray | None = None
    points: int = 0
    unshrunk_residuals: np.ndarray | None = None

    def to_dict(self) -> dict:
        def listed(z):
            return None if z is None else [round(float(v), 6) for v in z]

        return {
            "alpha": self.alpha,
            "fitted_on": "validation",
            "points": self.points,
            "residuals": listed(self.residuals),
            "unshrunk_residuals": listed(self.unshrunk_residuals),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        def array(z):
            return None if z is None else np.sort(np.asarray(z, dtype=np.float64))

        return cls(
            None if d.get("alpha") is None else float(d["alpha"]),
            array(d.get("residuals")),
            int(d.get("points", 0)),
            array(d.get("unshrunk_residuals")),
        )

    def without_shrinking(self) -> Calibration:
        residuals = self.unshrunk_residuals if self.alpha is not None else self.residuals
        return Calibration(None, residuals, self.points)

    def unit_quantiles(self, levels) -> np.ndarray:
        """Quantiles of the standardized forecast error at ``levels``: the conformal order
        statistics of the residuals, or the standard normal's."""
        if self.residuals is None:
            return stats.normal_quantiles(levels)
        return self.residuals[stats.conformal_ranks(len(self.residuals), levels) - 1]

    def too_few_for(self, level: float) -> bool:
        """Whether the residuals are too few for a conformal ``level`` interval with its guarantee
        (the extreme residual then bounds it, and it may cover less)."""
        return self.residuals is not None and not stats.conformal_enough(len(self.residuals), level)


@dataclass
class Forecasts:
    """One-step forecasts after some price windows, in the model's units and in prices.

    ``mean`` is the model's output shrunk toward persistence by ``alpha`` (``--shrink auto``:
    persistence + alpha * (model - persistence), in the model's units: scaled prices for
    levels, scaled log-returns for returns); ``log_var`` the Gaussian head's log-variance in
    the same units, or None for a point forecast.  Quantiles map to prices through the
    same monotone map as the mean, so an interval in prices holds the probability it had.
    """

    price_windows: np.ndarray  # [n, L]
    mean: np.ndarray  # [n]
    unshrunk_mean: np.ndarray  # [n]
    log_var: np.ndarray | None  # [n]
    features: Features
    calibration: Calibration = dataclasses.field(default_factory=Calibration)
    random_walk_sd: np.ndarray | None = None  # [n] EWMA volatility known at each forecast (log-return units)

    @property
    def alpha(self) -> float | None:
        return self.calibration.alpha

    @property
    def last(self) -> np.ndarray:
        """The persistence forecast: the last price of each window."""
        return self.price_windows[:, -1]

    @property
    def point(self) -> np.ndarray:
        """``[n]`` forecast prices (shrunk when ``alpha`` is set)."""
        return self.features.to_prices(self.price_windows, self.mean)

    @property
    def unshrunk(self) -> np.ndarray:
        """``[n]`` the model's own forecast prices."""
        return self.features.to_prices(self.price_windows, self.unshrunk_mean)

    def quantiles(self, levels) -> np.ndarray:
        """``[n, K]`` price quantiles at probability ``levels`` (Gaussian head only)."""
        z = self.calibration.unit_quantiles(levels)
        moved = self.mean[:, None] + np.exp(0.5 * self.log_var)[:, None] * z[None, :]
        return np.stack([self.features.to_prices(self.price_windows, moved[:, k]) for k in range(len(z))], axis=1)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` interval in prices: (low ``[n]``, high ``[n]``)."""
        q = self.quantiles(stats.interval_levels(level))
        return q[:, 0], q[:, 1]

    def without_shrinking(self) -> Forecasts:
        """The model's own forecasts (and intervals around them)."""
        return Forecasts(
            self.price_windows,
            self.unshrunk_mean,
            self.unshrunk_mean,
            self.log_var,
            self.features,
            self.calibration.without_shrinking(),
            self.random_walk_sd,
        )

    def random_walks(self) -> dict:
        """The probabilistic baselines, name -> volatility in log-return units: ``ewma_random_walk``
        (the volatility known at each forecast; the reference of ``crps_skill``) where the
        forecasts carry it, and ``train_vol_random_walk`` (the training part's, one number)."""
        walks = {} if self.random_walk_sd is None else {stats.REFERENCE_WALK: self.random_walk_sd}
        return dict(walks, train_vol_random_walk=self.features.volatility)

    def probabilistic_metrics(self, actual: np.ndarray) -> dict:
        """80% and 95% interval coverage and CRPS (price units), and each random walk's
        (``random_walks``) CRPS, coverage and the model's CRPS skill against it: ``crps_skill``
        against the EWMA one, ``train_vol_crps_skill`` against the training-volatility one."""
        if self.log_var is None:
            return {}
        crps = stats.crps_from_quantiles(actual, self.quantiles(stats.CRPS_LEVELS))
        out = {f"coverage_{round(100 * level)}": stats.coverage(actual, *self.interval(level)) for level in (0.8, 0.95)}
        return dict(out, **stats.against_random_walks(actual, self.last, crps, self.random_walks()))


def model_outputs(trainer, inputs: np.ndarray) -> np.ndarray:
    """The model's outputs after each whole window: ``[n, O]`` (float64) for inputs ``[n, L', F]``."""
    y, _ = trainer.forward(trainer.init_carry(inputs.shape[0]), inputs)
    return np.asarray(y[:, -1, :], dtype=np.float64)


def forecast_outputs(trainer, inputs: np.ndarray) -> np.ndarray:
    """The model's point forecast (the mean, for a Gaussian head) after each whole window: ``[n]``."""
    return model_outputs(trainer, inputs)[:, 0]


def make_forecasts(
    trainer,
    features: Features,
    price_windows: np.ndarray,
    inputs: np.ndarray,
    calibration: Calibration | None = None,
    random_walk_sd: np.ndarray | None = None,
) -> Forecasts:
    """The ``Forecasts`` of a model after ``price_windows`` ``[n, L]`` (model ``inputs`` ``[n, L', F]``);
    ``random_walk_sd`` ``[n]``: the EWMA volatility known at each forecast, for the baseline."""
    calibration = calibration or Calibration()
    outputs = model_outputs(trainer, inputs)
    raw = outputs[:, 0]
    alpha = calibration.alpha
    mean = raw if alpha is None else shrink_toward_persistence(raw, features.persistence(price_windows), alpha)
    return Forecasts(
        price_windows, mean, raw, outputs[:, 1] if outputs.shape[1] > 1 else None, features, calibration, random_walk_sd
    )


def fit_calibration(cfg: ForecastConfig, trainer, features: Features, part: Part, inputs: np.ndarray) -> Calibration:
    """The shrink weight and interval residuals of ``cfg`` (``--shrink``, ``--intervals``) fitted
    on the validation ``part``."""
    raw = make_forecasts(trainer, features, part.price_windows, inputs)
    persistence = features.persistence(part.price_windows)
    alpha = fit_shrink(raw.unshrunk_mean, part.targets, persistence) if cfg.shrink == "auto" else None
    residuals = unshrunk = None
    if cfg.head == "gaussian" and cfg.intervals == "calibrated":
        mean = raw.mean if alpha is None else shrink_toward_persistence(raw.mean, persistence, alpha)
        residuals = np.sort((part.targets - mean) * np.exp(-0.5 * raw.log_var))
        if alpha is not None:
            unshrunk = np.sort((part.targets - raw.mean) * np.exp(-0.5 * raw.log_var))
    return Calibration(alpha, residuals, len(part.actual), unshrunk)


def shrink_toward_persistence(outputs: np.ndarray, persistence: np.ndarray, alpha: float) -> np.ndarray:
    return persistence + alpha * (outputs - persistence)


def fit_shrink(outputs: np.ndarray, targets: np.ndarray, persistence: np.ndarray) -> float:
    """The weight alpha in [0, 1] of persistence + alpha * (model - persistence) with the least
    squared error against ``targets`` (all ``[n]``, in the model's units)."""
    move = outputs - persistence
    denominator = float(move @ move)
    if denominator == 0:
        return 0.0
    return float(np.clip(move @ (targets - persistence) / denominator, 0.0, 1.0))


def forecast_points(loaded, series: Series, points: np.ndarray) -> Forecasts:
    """The forecasts of a saved model (``load_run``, with its shrink weight) for the points
    ``points`` of ``series``, each from the window of actual prices right before it."""
    cfg, features = loaded.cfg, loaded.extras["features"]
    values = series.prices.to_numpy(dtype=np.float64)
    price_windows = np.stack([values[t - cfg.window : t] for t in points])
    inputs = features.inputs(price_windows, channel_windows(series.channels, points, cfg.window))
    volatility = stats.ewma_volatility(values[: max(points)], cfg.ewma_lambda)[points]  # only what came before
    return make_forecasts(
        loaded.trainer,
        features,
        price_windows,
        inputs.astype(np.dtype(cfg.dtype)),
        loaded.extras.get("calibration"),
        volatility,
    )


def compare(part: Part, forecasts: Forecasts, features: Features) -> dict:
    """The model's price metrics next to persistence's on one part, the skill in price units and
    in log-return units (with intervals and a Diebold-Mariano test), and with a Gaussian head its
    intervals' coverage and CRPS beside the random walks'; with a shrink weight, the unshrunk skill too."""
    predicted = forecasts.point
    model = price_metrics(part.actual, predicted, part.last)
    persistence = price_metrics(part.actual, part.last, part.last)
    out = {"points": int(len(part.actual)), "from": str(part.times[0]), "to": str(part.times[-1])}
    for key in ("mae", "rmse", "mape_percent"):
        out[key] = model[key]
        out[f"persistence_{key}"] = persistence[key]
    out["direction_hit_rate"], out["direction_call_share"] = model["direction_hit_rate"], model["direction_call_share"]
    out["skill"] = 1.0 - model["rmse"] / persistence["rmse"] if persistence["rmse"] > 0 else float("nan")
    out["skill_ci95"] = list(skill_interval(part.actual, predicted, part.last))
    returns = stats.log_returns(part.actual, predicted, part.last)
    out["log_return_skill"] = stats.skill(*returns)
    out["log_return_skill_ci95"] = list(skill_interval(*returns, block=stats.bootstrap_block(len(part.actual))))
    out["log_return_diebold_mariano"] = stats.diebold_mariano(*returns)
    out["mae_skill"] = 1.0 - model["mae"] / persistence["mae"] if persistence["mae"] > 0 else float("nan")
    scored = stats.moved(part.actual, part.last)  # as direction accuracy
    out["up_share"] = float(np.mean(part.actual[scored] > part.last[scored])) if scored.any() else float("nan")
    out["inputs_outside_training_range"] = features.outside_share(part.inputs)
    out.update(forecasts.probabilistic_metrics(part.actual))
    if forecasts.calibration.too_few_for(0.95):
        out["calibration_residuals"] = len(forecasts.calibration.residuals)
    if forecasts.alpha is not None:
        out["alpha"] = forecasts.alpha
        out["unshrunk_skill"] = stats.skill(part.actual, forecasts.unshrunk, part.last)
        out["unshrunk_skill_ci95"] = list(skill_interval(part.actual, forecasts.unshrunk, part.last))
        out.update(
            {f"unshrunk_{k}": v for k, v in forecasts.without_shrinking().probabilistic_metrics(part.actual).items()}
        )
    return out
