"""The forecast task's data: the price series, its splits and windows, and the features a model reads.

Everything here comes before a model exists: a price CSV (or the built-in series) binned to one
open per ``--every``; the candle channels known at each decision time; the scaler fitted on the
training part only (``Features``); the windows of each part (``Part``, ``build_parts``), none
straddling a split, each with the EWMA volatility known before its point.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ForecastConfig
from ..data.prices import load_prices, parse_every, parse_utc, resample_opens
from ..data.series import MinMaxScaler, ScaleScaler, check_points, generated_prices, scaler_from_dict, windows
from ..errors import UserError
from . import forecast_stats as stats

BUILTIN_SEED = 0


# What each feature set adds to the open: the completed bin's candle, as log-returns against its open.
CANDLE_CHANNELS = {"open": (), "ohlc": ("high", "low", "close"), "ohlcv": ("high", "low", "close", "volume")}


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


@dataclass
class Series:
    """The selected price series: one value per bin, and what was noticed while making it."""

    prices: pd.Series  # float64 prices, indexed by bin start (UTC)
    source: str  # the CSV path, or "built-in"
    every: pd.Timedelta
    notes: list
    channels: np.ndarray | None = None  # [N, C] candle inputs of each point (``candle_channels``)

    @property
    def times(self) -> pd.DatetimeIndex:
        """The time of each point (what a backtest's origins are laid on)."""
        return self.prices.index

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


def describe_series(cfg: ForecastConfig, series: Series, windows_text: str = "") -> list[str]:
    """The data line (and notes) a run or backtest prints first."""
    p = series.prices
    return [
        f"data: {series.source}, {len(p)} points every {cfg.every} from {p.index[0]:%Y-%m-%d %H:%M} "
        f"to {p.index[-1]:%Y-%m-%d %H:%M} ({p.min():,.2f} to {p.max():,.2f}){windows_text}; target {cfg.target}",
        *(f"note: {n}" for n in series.notes),
    ]


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
