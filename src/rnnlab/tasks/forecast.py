"""forecast: the next value of a price series from a window of past values, against persistence.

What is specific to this task and nothing else:

* data: a price CSV (or the built-in generated series) reduced to one open per
  ``--every`` bin, split chronologically into train/validation/test, windows
  cut inside each part (``data.series``);
* features: ``levels`` feeds the window's prices scaled to [-1, 1] and predicts
  the next scaled price (the classic exercise); ``returns`` feeds the window's
  log-returns (scaled) and predicts the next log-return, turned back into a
  price by the last price.  Both see the same ``--window`` prices and are
  tested on the same points, so their numbers compare directly;
* the loss: ``--loss-steps last`` scores only the forecast after the whole
  window (the exercise); ``all`` also scores the one-step forecast at every
  position inside the window (each output sees only values before its target);
* the baseline: persistence, "the next value is the last one", and the report
  in price units next to it (MAE, RMSE, MAPE, direction accuracy, skill).

An epoch is one pass over the shuffled training windows; the loop evaluates
after each, so ``metrics.jsonl`` is the per-epoch history.  Random streams from
``--seed``: parameters ``seed``, shuffling ``[seed, 0]``.  The built-in series
uses its own fixed seed, so changing ``--seed`` changes only the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import averaging, report, runs, train
from ..cells import ModelSpec
from ..config import ForecastConfig
from ..data.prices import load_prices, parse_every, parse_utc, resample_opens
from ..data.series import MinMaxScaler, ScaleScaler, check_points, generated_prices, scaler_from_dict, windows
from ..errors import UserError
from ..facts import Facts, Headline, read_json
from . import forecast_onnx
from . import forecast_stats as stats
from .definition import COMMON_SPACE, ApiData, OnnxIO, TaskDefinition
from .forecast_stats import price_metrics, skill_interval

BUILTIN_SEED = 0
ZOOM_POINTS = 60  # points in the close-up panel of the forecast plot


# What each feature set adds to the open: the completed bin's candle, as log-returns against its open.
CANDLE_CHANNELS = {"open": (), "ohlc": ("high", "low", "close"), "ohlcv": ("high", "low", "close", "volume")}


CALIBRATION_FILE = "calibration.json"  # what is fitted on validation after training (``Calibration``)


def spec_of(cfg: ForecastConfig) -> ModelSpec:
    inputs = 1 + len(CANDLE_CHANNELS[cfg.features])
    outputs = 2 if cfg.head == "gaussian" else 1  # (mean, log-variance) or the point forecast
    return ModelSpec(
        cfg.cell, inputs, cfg.hidden_size, outputs, cfg.layers, "dense", residual=cfg.residual, norm=cfg.norm
    )


def loss_of(cfg: ForecastConfig) -> str:
    return "gaussian_nll" if cfg.head == "gaussian" else "mse"


def columns_of(feature_set: str) -> tuple:
    """The CSV columns a feature set reads."""
    return ("open",) + tuple(c for c in CANDLE_CHANNELS[feature_set] if c != "open")


def candle_channels(candles: pd.DataFrame | None, feature_set: str, source: str) -> np.ndarray | None:
    """``[N, C]`` unscaled candle inputs of each point, or None for ``open``.

    The forecast of point k+1 is made when bin k opens, so bin k's own high, low, close
    and volume are not known yet: row k holds bin k-1's log(high/open), log(low/open),
    log(close/open) and, for ``ohlcv``, log(1+volume) of bin k-1 minus that of bin k-2.
    Row 0 (and row 1's volume change) have no completed bin before them: zeros.
    """
    if feature_set == "open":
        return None
    if candles is None:
        raise UserError(
            f"--features {feature_set} needs candles (high, low, close) and {source} has only opens; "
            "pass --csv with a Binance kline or OHLCV file, or use --features open"
        )
    o = candles["open"].to_numpy(dtype=np.float64)
    own = [np.log(candles[c].to_numpy(dtype=np.float64) / o) for c in ("high", "low", "close")]
    if feature_set == "ohlcv":
        log_volume = np.log1p(candles["volume"].to_numpy(dtype=np.float64))
        own.append(np.diff(log_volume, prepend=log_volume[:1]))
    rows = np.stack(own, axis=1)
    out = np.zeros_like(rows)
    out[1:] = rows[:-1]
    return out


# --------------------------------------------------------------------------- data


@dataclass
class Series:
    """The selected price series: one value per bin, and what was noticed while making it."""

    prices: pd.Series  # float64 prices, indexed by bin start (UTC)
    source: str  # the CSV path, or "built-in"
    every: pd.Timedelta
    notes: list
    channels: np.ndarray | None = None  # [N, C] candle inputs of each point (``candle_channels``)

    @property
    def anchor(self) -> pd.Timestamp:
        """Start of the first bin; later data reuses this bin grid."""
        return self.prices.index[0]


def _selected_gaps(data, start, end) -> list:
    """The file's gaps that fall inside [start, end)."""
    lo, hi = parse_utc(start, "--start"), parse_utc(end, "--end")
    return [g for g in data.gaps if (lo is None or g[1] > lo) and (hi is None or g[0] < hi)]


def load_series(cfg: ForecastConfig) -> Series:
    """The run's price series: ``--csv`` (or the built-in one), ``--start/--end``, one open per ``--every``."""
    every = parse_every(cfg.every)
    notes = []
    if cfg.csv:
        data = load_prices(cfg.csv, columns_of(cfg.features))
        data = dataclasses.replace(data, gaps=_selected_gaps(data, cfg.start, cfg.end))
        notes += data.notes()
        frame, source = data.frame, cfg.csv
    else:
        hours = every / pd.Timedelta(hours=1)
        frame, source = generated_prices(cfg.builtin_points, BUILTIN_SEED, hours).to_frame("open"), "built-in"
    resampled = resample_opens(frame, every, cfg.start or None, cfg.end or None)
    if resampled.empty_bins:
        first = resampled.empty_bins[0]
        notes.append(
            f"{len(resampled.empty_bins)} {cfg.every} bin(s) hold no row (first at {first:%Y-%m-%d %H:%M}); "
            "left out, so a window may span them"
        )
    prices = resampled.opens.astype(np.float64)
    channels = candle_channels(resampled.candles, cfg.features, source)
    if cfg.train_length:
        prices = prices.iloc[-cfg.train_length :]
        channels = None if channels is None else channels[-cfg.train_length :]
    return Series(prices, source, every, notes, channels)


class Features:
    """How windows of prices become model numbers, and model outputs become prices again.

    ``levels`` (the exercise): inputs are the L prices scaled to [-1, 1], the target
    is the next price on the same scale.  ``returns``: inputs are the L-1 log-returns
    inside the window and the target is the next log-return, both divided by the
    training part's RMS return (zero stays zero, so an output of 0 is exactly the
    persistence forecast); the forecast is ``last price * exp(return)``.  Scalers
    are fitted on the training part only.  ``input_range`` is the (min, max) of the
    training inputs, to tell when later inputs leave it.  Candle inputs (``--features
    ohlc``/``ohlcv``, see ``candle_channels``) follow the price input, each divided by
    its RMS over the training part.
    """

    def __init__(
        self,
        target: str,
        scaler,
        input_range: tuple[float, float] = (-1.0, 1.0),
        channel_scales: tuple = (),
        volatility: float = float("nan"),
    ):
        self.target, self.scaler, self.input_range = target, scaler, tuple(input_range)
        self.channel_scales = tuple(float(x) for x in channel_scales)
        self.volatility = float(volatility)  # RMS one-step log-return of the training part

    @classmethod
    def fit(cls, target: str, train_prices: np.ndarray, train_channels: np.ndarray | None = None) -> Features:
        if target == "returns":
            features = cls(target, ScaleScaler.fit(np.log(train_prices[1:] / train_prices[:-1])))
        else:
            features = cls(target, MinMaxScaler.fit(train_prices))
        scaled = features.scaler.transform(features._values(train_prices))
        features.input_range = (float(scaled.min()), float(scaled.max()))
        features.volatility = float(np.sqrt(np.mean(np.diff(np.log(train_prices)) ** 2)))
        if train_channels is not None:
            rms = np.sqrt(np.mean(np.square(train_channels), axis=0))
            features.channel_scales = tuple(float(x) if x > 0 else 1.0 for x in rms)  # a flat channel stays 0
        return features

    def _values(self, prices: np.ndarray) -> np.ndarray:
        return np.diff(np.log(prices), axis=-1) if self.target == "returns" else prices

    def inputs(self, price_windows: np.ndarray, channel_windows: np.ndarray | None = None) -> np.ndarray:
        """``[n, L]`` prices (and ``[n, L, C]`` candle rows of the same points) -> ``[n, L', 1 + C]``
        model inputs (L' = L, or L-1 for returns: the step of each return is its later point)."""
        x = self.scaler.transform(self._values(np.asarray(price_windows, dtype=np.float64)))[..., None]
        if not self.channel_scales:
            return x
        steps = x.shape[1]
        candles = np.asarray(channel_windows, dtype=np.float64)[:, -steps:, :] / np.asarray(self.channel_scales)
        return np.concatenate([x, candles], axis=-1)

    def targets(self, price_windows: np.ndarray, next_prices: np.ndarray) -> np.ndarray:
        """``[n]`` scaled targets of the forecasts after the windows."""
        if self.target == "returns":
            return self.scaler.transform(np.log(next_prices / price_windows[:, -1]))
        return self.scaler.transform(next_prices)

    def persistence(self, price_windows: np.ndarray) -> np.ndarray:
        """``[n]`` the output that means "the next price is the last one" (0 for returns)."""
        return self.targets(price_windows, price_windows[:, -1])

    def to_prices(self, price_windows: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Model outputs ``[n]`` -> forecast prices ``[n]``."""
        if self.target == "returns":
            return price_windows[:, -1] * np.exp(self.scaler.inverse(outputs))
        return self.scaler.inverse(outputs)

    def outside_share(self, inputs: np.ndarray) -> float:
        """Share of ``inputs`` outside the range the training inputs covered."""
        lo, hi = self.input_range
        tol = 1e-6 * max(1.0, abs(lo), abs(hi))  # float32 inputs round
        prices = inputs[..., 0]
        return float(np.mean((prices < lo - tol) | (prices > hi + tol)))

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "scaler": self.scaler.to_dict(),
            "input_range": list(self.input_range),
            "channel_scales": list(self.channel_scales),
            "volatility": self.volatility,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Features:
        return cls(
            d["target"],
            scaler_from_dict(d["scaler"]),
            d["input_range"],
            d.get("channel_scales", ()),
            d.get("volatility", float("nan")),
        )


@dataclass
class Part:
    """The windows of one split, in model units and in prices."""

    price_windows: np.ndarray  # [n, L] the prices seen
    actual: np.ndarray  # [n] the price that followed each window
    times: pd.DatetimeIndex  # [n] bin start of each ``actual``
    inputs: np.ndarray  # [n, L', 1] model inputs
    targets: np.ndarray  # [n] scaled target of the forecast after the window
    random_walk_sd: np.ndarray  # [n] EWMA volatility known before each ``actual`` (``stats.ewma_volatility``)

    @property
    def last(self) -> np.ndarray:
        """The persistence forecast: the last price of each window."""
        return self.price_windows[:, -1]

    def sequence_targets(self, loss_steps: str) -> np.ndarray:
        """``[n, 1, 1]`` (score the last output) or ``[n, L', 1]`` (every output: input t+1 is target t)."""
        if loss_steps == "last":
            return self.targets[:, None, None]
        return np.concatenate([self.inputs[:, 1:, 0], self.targets[:, None]], axis=1)[..., None]


def channel_windows(channels: np.ndarray | None, points: np.ndarray, window: int) -> np.ndarray | None:
    """``[n, L, C]``: the candle rows of the window before each of ``points`` (None without candles)."""
    if channels is None:
        return None
    return (
        np.stack([channels[t - window : t] for t in points])
        if len(points)
        else np.empty((0, window, channels.shape[1]))
    )


def build_parts(
    prices: pd.Series,
    window: int,
    fractions,
    target: str,
    channels: np.ndarray | None = None,
    ewma_lambda: float = ForecastConfig.ewma_lambda,
) -> tuple[Features, dict]:
    """(features fitted on the training part, ``{"train", "val", "test": Part}``); ``channels``:
    the series' candle inputs (``candle_channels``), or None for opens only; ``ewma_lambda``: the
    decay of the random-walk baseline's volatility."""
    values = prices.to_numpy(dtype=np.float64)
    volatility = stats.ewma_volatility(values, ewma_lambda)
    n_train, n_val, _ = check_points(len(values), window, fractions)
    if fractions[2] == 0:  # no test part: validation takes the points rounding left over
        n_val = len(values) - n_train
    features = Features.fit(target, values[:n_train], None if channels is None else channels[:n_train])
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(values))}
    parts = {}
    for name, (a, b) in bounds.items():
        w, nxt = windows(values[a:b], window)
        candles = channel_windows(channels, np.arange(a + window, b), window)
        parts[name] = Part(
            w,
            nxt,
            prices.index[a + window : b],
            features.inputs(w, candles),
            features.targets(w, nxt),
            volatility[a + window : b],
        )
    return features, parts


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


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- the task


class ForecastTask(train.TaskBase):
    """The task side of the training loop (see ``rnnlab.train.run``): one step = one
    batch of shuffled training windows, one evaluation = one epoch."""

    name = "forecast"
    item_name = "windows"

    def __init__(self, cfg: ForecastConfig, series: Series):
        self.cfg, self.series = cfg, series
        self.features, self.parts = build_parts(
            series.prices, cfg.window, cfg.fractions, cfg.target, series.channels, cfg.ewma_lambda
        )
        dtype = np.dtype(cfg.dtype)
        train_part = self.parts["train"]
        self.train_inputs = train_part.inputs.astype(dtype)
        self.train_targets = train_part.sequence_targets(cfg.loss_steps).astype(dtype)
        self.eval_inputs = {name: p.inputs.astype(dtype) for name, p in self.parts.items()}
        val = self.parts["val"]
        # Persistence in the model's units: the output that would mean "the next price is the last one".
        self.val_persistence_mse = float(
            np.mean((self.features.targets(val.price_windows, val.last) - val.targets) ** 2)
        )
        self.val_persistence_rmse = float(np.sqrt(np.mean((val.last - val.actual) ** 2)))
        self.batch_size = cfg.batch_size
        self.items_per_step = cfg.batch_size
        self.steps_per_epoch = math.ceil(len(train_part.actual) / cfg.batch_size)
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.order = np.empty(0, dtype=np.int64)
        self.cursor = 0
        self.batches = 0

    def next_batch(self):
        if self.cursor >= len(self.order):  # a new epoch: a new shuffle
            self.order = self.rng.permutation(len(self.train_inputs))
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += len(idx)
        self.batches += 1
        self.items_per_step = len(idx)
        return self.train_inputs[idx], self.train_targets[idx], True  # windows are independent: zero state

    @property
    def epoch(self) -> float:
        return self.batches / self.steps_per_epoch

    def forecasts(self, trainer, name: str, calibration: Calibration | None = None) -> Forecasts:
        """The forecasts after every window of part ``name``."""
        part = self.parts[name]
        return make_forecasts(
            trainer, self.features, part.price_windows, self.eval_inputs[name], calibration, part.random_walk_sd
        )

    def evaluate(self, trainer) -> dict:
        out = {"epoch": round(self.epoch, 3)}
        for name in ("train", "val"):
            f = self.forecasts(trainer, name)
            part = self.parts[name]
            out[f"{name}_mse"] = float(np.mean((f.mean - part.targets) ** 2))
            err = f.point - part.actual
            out[f"{name}_rmse"] = float(np.sqrt(np.mean(err**2)))
            if f.log_var is not None:  # the Gaussian head's own loss, in nats per forecast (model units)
                out[f"{name}_nll"] = float(
                    np.mean(0.5 * (f.log_var + (part.targets - f.mean) ** 2 * np.exp(-f.log_var)))
                    + 0.5 * math.log(2 * math.pi)
                )
        out["val_persistence_rmse"] = self.val_persistence_rmse
        out["val_skill"] = 1.0 - out["val_rmse"] / out["val_persistence_rmse"]
        out["val_persistence_mse"] = self.val_persistence_mse
        # The best epoch is the one with the lowest validation RMSE in price units, the number the
        # skill is made of (for levels this is the same as the scaled MSE; for returns the price
        # error weighs each return by the price level). Relative to persistence: below 1 beats it.
        out["val_loss"] = (out["val_rmse"] / out["val_persistence_rmse"]) ** 2
        return out

    def describe_eval(self, trainer, state, record, final) -> str:
        mean = record.get("train_loss_mean")
        train_text = f"train loss {mean:.5f}" if mean is not None else "train -"
        return (
            f"epoch {record['epoch']:g}/{self.cfg.epochs} | {train_text} | val MSE {record['val_mse']:.5f} | "
            f"val RMSE {record['val_rmse']:,.2f} (persistence {record['val_persistence_rmse']:,.2f}, "
            f"skill {record['val_skill']:+.3f})"
        )

    def data_state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "cursor": self.cursor,
            "batches": self.batches,
        }

    def load_data_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.cursor, self.batches = int(state["cursor"]), int(state["batches"])

    def checkpoint_meta(self) -> dict:
        prices = self.series.prices
        return {
            "features": self.features.to_dict(),
            "series": {
                "source": self.series.source,
                "every": self.cfg.every,
                "anchor": str(self.series.anchor),
                "points": int(len(prices)),
                "first": str(prices.index[0]),
                "last": str(prices.index[-1]),
                "windows": {name: len(p.actual) for name, p in self.parts.items()},
            },
        }

    # ----- the run skeleton's hooks (rnnlab.runner)
    @property
    def loss(self) -> str:
        return loss_of(self.cfg)

    def spec(self) -> ModelSpec:
        return spec_of(self.cfg)

    def initial_params(self, params: dict) -> None:
        if self.cfg.target == "returns":
            # Start at persistence: a zero readout forecasts a zero return, i.e. the last price,
            # so training moves away from the baseline only as far as the data pays for it.
            params["readout.W"][...] = 0.0
            params["readout.b"][...] = 0.0

    def console_lines(self) -> list[str]:
        return self.summary_lines()

    def budget(self) -> tuple[train.Budget, int]:
        total_steps = self.cfg.epochs * self.steps_per_epoch
        return train.Budget(
            max_steps=total_steps, max_minutes=self.cfg.max_minutes, eval_every=self.steps_per_epoch, eval_at_start=True
        ), total_steps

    def after_training(self, trainer, summary: dict, run) -> dict:
        """The loss plot; unless interrupted, the shrink weight (``--shrink auto``, fitted on
        validation, ``calibration.json``) and the best epoch's model (held by ``run``) against
        persistence on the test part (``test.json``, ``forecast.png``)."""
        cfg = self.cfg
        plot_history(run.path, cfg.loss_steps)
        extra = {"epochs": round(self.epoch, 3), "test": None, "alpha": None}
        if summary["interrupted"]:
            return extra
        best = run.best  # the evaluation before the first epoch always makes one
        with averaging.holding(trainer, best.params):
            calibration = fit_calibration(cfg, trainer, self.features, self.parts["val"], self.eval_inputs["val"])
            run.write_text(CALIBRATION_FILE, json.dumps(dict(calibration.to_dict(), step=best.step)) + "\n")
            if len(self.parts["test"].actual) == 0:  # no test part: --test-fraction 0
                return dict(extra, alpha=calibration.alpha)
            forecasts = {name: self.forecasts(trainer, name, calibration) for name in ("val", "test")}
        result = {name: compare(self.parts[name], f, self.features) for name, f in forecasts.items()}
        test = dict(
            result["test"],
            model="best",
            step=best.step,
            epoch=best.meta["metrics"]["epoch"],
            comparison_text=describe(result["test"]),
            val=result["val"],
            target=cfg.target,
            head=cfg.head,
            train_seconds=round(summary["train_seconds"], 3),
        )
        plot_forecast(
            run.path / "forecast.png",
            self.parts["test"],
            forecasts["test"],
            result["test"],
            f"{Path(self.series.source).name} every {cfg.every}, {cfg.cell} on {cfg.target}",
        )
        run.write_text("test.json", json.dumps(test, indent=1) + "\n")
        return dict(extra, test=test, alpha=calibration.alpha)

    def summary_lines(self) -> list[str]:
        """What the run trains on, for the console."""
        counts = ", ".join(f"{name} {len(part.actual)}" for name, part in self.parts.items())
        return describe_series(self.cfg, self.series, f"; windows of {self.cfg.window}: {counts}")


def describe_series(cfg: ForecastConfig, series: Series, windows_text: str = "") -> list[str]:
    """The data line (and notes) a run or backtest prints first."""
    p = series.prices
    return [
        f"data: {series.source}, {len(p)} points every {cfg.every} from {p.index[0]:%Y-%m-%d %H:%M} "
        f"to {p.index[-1]:%Y-%m-%d %H:%M} ({p.min():,.2f} to {p.max():,.2f}){windows_text}; target {cfg.target}",
        *(f"note: {n}" for n in series.notes),
    ]


# --------------------------------------------------------------------------- plots


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


# --------------------------------------------------------------------------- runs


def open_task(cfg: ForecastConfig, meta: dict | None, where: str) -> ForecastTask:
    """The data of a run: the series, its windows and scaler fitted on the training part, and the
    shuffled order, at the checkpoint's place in it when ``meta`` is a checkpoint's."""
    task = ForecastTask(cfg, load_series(cfg))
    if meta is not None:
        task.restore(meta, where)
    return task


def load_run(run_dir: str | os.PathLike, which: str = "best", backend: str | None = None, calibrated: bool = True):
    """A saved forecast model: ``extras["features"]`` (its scaler and target) and
    ``extras["calibration"]``, what was fitted on validation for the best epoch (shrink weight,
    interval residuals; empty for the last checkpoint or with ``calibrated=False``)."""
    loaded = runs.load_run(
        run_dir, which, "forecast", ForecastConfig, backend, "mse", {"features": ("features", Features.from_dict)}
    )
    loaded.extras["calibration"] = saved_calibration(run_dir, which) if calibrated else Calibration()
    return loaded


def saved_calibration(run_dir: str | os.PathLike, which: str = "best") -> Calibration:
    """What a finished run fitted on validation for its best epoch (``CALIBRATION_FILE``); empty for
    the last checkpoint, which it was not fitted for, and for a run that has none yet."""
    saved = read_json(Path(run_dir) / CALIBRATION_FILE) if which == "best" else None
    try:
        return Calibration() if saved is None else Calibration.from_dict(saved)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(
            f"{run_dir}/{CALIBRATION_FILE} is damaged ({exc}); run `forecast train --resume` on the "
            "finished run to fit it again"
        ) from exc


def check_grid(data, every: pd.Timedelta, anchor: pd.Timestamp, every_text: str) -> None:
    """Refuse a price file whose rows cannot be put on a run's bins (``every`` long from ``anchor``):
    candles longer than a bin, a bin that is not a whole number of candles, or rows off the grid."""
    step = data.step
    if step is None:
        return
    if step > every:
        raise UserError(
            f"{data.source} has {_duration(step)} candles, longer than the run's --every {every_text}: "
            "its bins cannot be made from them; use a file of shorter candles"
        )
    if every % step != pd.Timedelta(0):
        raise UserError(
            f"the run's --every {every_text} is not a whole number of {data.source}'s "
            f"{_duration(step)} candles; use a file whose candles divide {every_text}"
        )
    offset = (data.frame.index[0] - anchor) % step
    if offset != pd.Timedelta(0):
        raise UserError(
            f"{data.source}'s rows fall {_duration(offset)} off the run's bin grid (bins start at "
            f"{anchor:%Y-%m-%d %H:%M} plus multiples of {every_text}); use candles aligned to it"
        )


def _duration(delta: pd.Timedelta) -> str:
    minutes = delta / pd.Timedelta(minutes=1)
    return f"{minutes / 60:g}-hour" if minutes >= 60 else f"{minutes:g}-minute"


def predict_next(
    run_dir: str | os.PathLike,
    csv: str | None = None,
    which: str = "best",
    backend: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> dict:
    """Forecast the value after the last window of ``csv`` (default: the run's own series),
    within ``[start, end)`` when given.

    The CSV is binned on the run's grid (same ``--every``, same anchor), so its
    points line up with the ones the model was trained on; a file that cannot be put
    on that grid is refused with the reason.
    """
    return predict_from(load_run(run_dir, which, backend), run_dir, which, csv, start, end)


def predict_from(
    loaded, run_dir, which: str, csv: str | None = None, start: str | None = None, end: str | None = None
) -> dict:
    """``predict_next`` for a model already loaded (``load_run``; ``rnnlab.Model.predict``)."""
    trainer, cfg, meta, features = loaded.trainer, loaded.cfg, loaded.meta, loaded.extras["features"]
    if csv:
        data = load_prices(csv, columns_of(cfg.features))
        notes = data.notes()
        every = parse_every(cfg.every)
        anchor = pd.Timestamp(meta["series"]["anchor"])
        check_grid(data, every, anchor, cfg.every)
        resampled = resample_opens(data.frame, every, start, end, anchor=anchor)
        prices, source = resampled.opens, csv
        channels = candle_channels(resampled.candles, cfg.features, source)
        empty = [t for t in resampled.empty_bins if t >= prices.index[-1] - every * cfg.window]
        if empty:
            notes.append(
                f"{len(empty)} empty {cfg.every} bin(s) inside the last window (first "
                f"{empty[0]:%Y-%m-%d %H:%M}): the window spans them"
            )
    else:
        series = load_series(
            dataclasses.replace(
                cfg, train_length=0, **({"start": start} if start else {}), **({"end": end} if end else {})
            )
        )
        prices, source, every, notes, channels = (
            series.prices,
            series.source,
            series.every,
            series.notes,
            series.channels,
        )
    if len(prices) < cfg.window:
        raise UserError(
            f"{source} gives {len(prices)} point(s) every {cfg.every}; the model needs a window of {cfg.window}"
        )
    w = prices.to_numpy(dtype=np.float64)[-cfg.window :][None]
    model_inputs = features.inputs(w, channel_windows(channels, np.array([len(prices)]), cfg.window))
    model_inputs = model_inputs.astype(np.dtype(cfg.dtype))
    f = make_forecasts(trainer, features, w, model_inputs, loaded.extras["calibration"])
    predicted, last = float(f.point[0]), float(w[0, -1])
    if features.outside_share(model_inputs) > 0:
        notes.append("the last window lies partly outside the range of the training inputs: the model extrapolates")
    last_time = prices.index[-1]
    result = {
        "run": str(run_dir),
        "model": which,
        "source": source,
        "every": cfg.every,
        "window_from": str(prices.index[-cfg.window]),
        "last_time": str(last_time),
        "last_price": last,
        "next_time": str(last_time + every),
        "forecast": predicted,
        "persistence": last,
        "change_percent": 100 * (predicted / last - 1),
        "notes": notes,
    }
    if f.alpha is not None:
        result.update(alpha=f.alpha, unshrunk_forecast=float(f.unshrunk[0]))
    if f.log_var is not None:
        for level in (0.8, 0.95):
            low, high = f.interval(level)
            result[f"interval_{round(100 * level)}"] = [float(low[0]), float(high[0])]
    # The baseline a forecaster would use: a random walk with the volatility known now.
    sd = float(stats.ewma_volatility(prices.to_numpy(dtype=np.float64), cfg.ewma_lambda)[-1])
    result["ewma_volatility"] = sd
    for level in (80, 95):
        q = stats.random_walk_quantiles(np.array([last]), sd, stats.interval_levels(level / 100))
        result[f"random_walk_interval_{level}"] = [float(q[0, 0]), float(q[0, 1])]
    return result


# --------------------------------------------------------------------------- report


def report_facts(run_dir: Path, meta: dict, metrics: list[dict]):
    """Test RMSE, MAE and direction against persistence, the loss and forecast plots and the
    comparison in words, for ``rnnlab.html_report``."""
    facts = Facts(val_curve=("val_rmse", "validation RMSE (price units)"))
    test = read_json(Path(run_dir) / "test.json")
    if test is not None:
        low, high = test.get("skill_ci95") or (float("nan"), float("nan"))
        skill = test["skill"]
        facts.headline.append(
            Headline(
                f"test RMSE ({test['points']:,} points, price units)",
                f"RMSE {test['rmse']:,.4g}",
                f"persistence: RMSE {test['persistence_rmse']:,.4g}",
                f"skill {skill:+.3f} (95% CI {low:+.3f} to {high:+.3f})",
                "better" if low > 0 else "worse" if high < 0 else "close",
            )
        )
        facts.headline.append(
            Headline(
                "test MAE",
                f"MAE {test['mae']:,.4g}",
                f"persistence: MAE {test['persistence_mae']:,.4g}",
                f"MAE skill {test['mae_skill']:+.3f}",
                "better" if test["mae_skill"] > 0 else "worse",
            )
        )
        lr_low, lr_high = test["log_return_skill_ci95"]
        facts.headline.append(
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
        facts.headline.append(
            Headline(
                "direction of the next move",
                f"{percent(hit)} right of the calls",
                f"always 'up': {percent(up)}",
                f"calls a move in {percent(calls)} of the forecasts",
                "better" if math.isfinite(hit) and hit > max(up, 1 - up) else "worse",
            )
        )
        if "coverage_80" in test:
            facts.headline.append(
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
            facts.headline.append(
                Headline(
                    "shrink weight toward persistence (fitted on validation)",
                    f"alpha {test['alpha']:.3f}",
                    f"unshrunk skill {test['unshrunk_skill']:+.3f}",
                    "the model adds nothing to persistence"
                    if test["alpha"] == 0
                    else f"skill {test['skill']:+.3f} shrunk",
                    "worse" if test["alpha"] == 0 else "close",
                )
            )
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


# --------------------------------------------------------------------------- the task, for the registry


def _demo_config(quick: bool) -> ForecastConfig:
    return ForecastConfig(cell="lstm", target="returns", **({"epochs": 4, "builtin_points": 1000} if quick else {}))


def _demo_intro(cfg: ForecastConfig) -> str:
    return (
        f"{cfg.cell} H={cfg.hidden_size} on the built-in price series ({cfg.builtin_points} points), against "
        f"persistence ({cfg.epochs} epochs, {cfg.backend} backend)"
    )


def _frame_bytes(data) -> bytes:
    """``rnnlab.fit("forecast", data=...)``: a Series of prices or a DataFrame of candles, as a CSV."""
    if isinstance(data, pd.Series):
        frame = data.rename("open").to_frame()
    elif isinstance(data, pd.DataFrame):
        frame = data.rename(columns=str.lower)
    else:
        raise UserError(
            f"forecast data= must be a pandas Series of prices or a DataFrame of candles, got {type(data).__name__}"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise UserError("forecast data= needs a DatetimeIndex (the time of each price)")
    if "open" not in frame:
        raise UserError(f"forecast data= DataFrame needs an open column (it has {', '.join(frame.columns)})")
    frame = frame.copy()
    frame.index = frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
    frame.index.name = "timestamp"
    return frame.to_csv(date_format="%Y-%m-%d %H:%M:%S%z").encode("utf-8")


def _check_inputs(cfg: ForecastConfig) -> None:
    if cfg.csv:
        load_prices(cfg.csv, columns_of(cfg.features))


def _evaluate(run_dir, options: dict) -> dict:
    test = read_json(Path(run_dir) / "test.json")
    if test is None:
        raise UserError(f"{run_dir} has no test result (test.json): it was stopped, or trained with test_fraction=0")
    return test


def _onnx_extras(run_dir, which: str, meta: dict) -> dict:
    shrinks = meta["config"].get("shrink") == "auto"
    return {"shrink_alpha": saved_calibration(run_dir, which).alpha if shrinks else None}


def _predict(model, csv: str | None = None, start: str | None = None, end: str | None = None) -> dict:
    return predict_from(model.loaded, model.run_dir, model.which, csv, start, end)


TASK = TaskDefinition(
    name="forecast",
    config_cls=ForecastConfig,
    help="forecast the next price of a series, against persistence",
    objective="val (RMSE / persistence RMSE)^2",
    budget_fields=("epochs",),
    open_task=open_task,
    load_run=load_run,
    report_facts=report_facts,
    evaluate=_evaluate,
    sweep_space={
        **COMMON_SPACE,
        "hidden_size": {"choices": [16, 32, 64]},
        "window": {"low": 10, "high": 60, "step": 5},
    },
    demo=_demo_config,
    demo_intro=_demo_intro,
    check_inputs=_check_inputs,
    api_data=ApiData("csv", "data.csv", _frame_bytes, "a pandas Series of prices or a DataFrame of candles"),
    onnx=OnnxIO(
        forecast_onnx.graph,
        extras=_onnx_extras,
        metadata=lambda meta, extras: {
            "rnnlab.features": json.dumps(meta.get("features")),
            "rnnlab.calibration_alpha": json.dumps(extras.get("shrink_alpha")),
        },
    ),
    model_methods={"predict": _predict},
    forecasts=True,
)
