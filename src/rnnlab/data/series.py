"""From a price series to supervised windows, without look-ahead.

* Splits are chronological (default 70/15/15 of the points), and windows are
  cut inside each part, so no window straddles a split: the first ``window``
  points of validation and test serve only as inputs.
* Window ``i`` of a part is ``X[i:i+L]`` and its target is ``X[i+L]``, the value
  right after the window (the exercise text's ``X[i+1]`` is a slip: it would be
  a value inside the window).
* The scaler maps the *training* part to [-1, 1]; validation and test values
  may fall outside it, which is what a deployed model would see too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MinMaxScaler:
    """x -> 2 (x - low) / (high - low) - 1, with ``low``/``high`` from the training part only."""

    low: float
    high: float

    @classmethod
    def fit(cls, train_values: np.ndarray) -> MinMaxScaler:
        low, high = float(np.min(train_values)), float(np.max(train_values))
        if not high > low:
            raise UserError(f"the training part is constant ({low:g}); a [-1, 1] scaler needs some variation")
        return cls(low, high)

    def transform(self, x):
        return 2.0 * (np.asarray(x, dtype=np.float64) - self.low) / (self.high - self.low) - 1.0

    def inverse(self, y):
        return (np.asarray(y, dtype=np.float64) + 1.0) * 0.5 * (self.high - self.low) + self.low

    def to_dict(self) -> dict:
        return {"kind": "minmax", "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict) -> MinMaxScaler:
        return cls(float(d["low"]), float(d["high"]))


@dataclass(frozen=True)
class ScaleScaler:
    """x -> x / scale, with ``scale`` the training part's root mean square: zero stays zero.

    For log-returns, where zero means "no change": an untrained model that outputs
    0 forecasts exactly the persistence price, and inputs keep their sign.
    """

    scale: float

    @classmethod
    def fit(cls, train_values: np.ndarray) -> ScaleScaler:
        scale = float(np.sqrt(np.mean(np.square(train_values))))
        if not scale > 0:
            raise UserError("the training part never changes; a return scaler needs some variation")
        return cls(scale)

    def transform(self, x):
        return np.asarray(x, dtype=np.float64) / self.scale

    def inverse(self, y):
        return np.asarray(y, dtype=np.float64) * self.scale

    def to_dict(self) -> dict:
        return {"kind": "scale", "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> ScaleScaler:
        return cls(float(d["scale"]))


def scaler_from_dict(d: dict):
    """The scaler a ``to_dict`` wrote (a dict without ``kind`` is the [-1, 1] min-max one)."""
    return ScaleScaler.from_dict(d) if d.get("kind") == "scale" else MinMaxScaler.from_dict(d)


def split_sizes(n: int, fractions=(0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """Points in train, validation and test: the first two rounded down, test takes the rest."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise UserError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_train, n_val = int(n * fractions[0]), int(n * fractions[1])
    return n_train, n_val, n - n_train - n_val


def points_needed(window: int, fractions=(0.7, 0.15, 0.15)) -> int:
    """The fewest points for which every non-empty part holds at least one window and its target."""
    n = window + 1
    while any(size < window + 1 for size, f in zip(split_sizes(n, fractions), fractions) if f > 0):
        n += 1
    return n


def check_points(n: int, window: int, fractions=(0.7, 0.15, 0.15)) -> tuple[int, int, int]:
    """``split_sizes(n)``, or a ``UserError`` saying how many points ``window`` needs."""
    if window < 1:
        raise UserError(f"--window must be at least 1, got {window}")
    needed = points_needed(window, fractions)
    if n < needed:
        raise UserError(
            f"{n} points are too few for --window {window} with a "
            f"{'/'.join(f'{f:g}' for f in fractions)} split: need at least {needed}; use a longer "
            "range, a shorter --every or a smaller --window"
        )
    return split_sizes(n, fractions)


def windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[N-L, L]`` (row i = values[i:i+L]) and targets ``[N-L]`` (values[i+L])."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise UserError(f"--window must be at least 1, got {window}")
    if len(values) <= window:
        return np.empty((0, window)), np.empty(0)
    inputs = np.lib.stride_tricks.sliding_window_view(values, window)[:-1].copy()
    return inputs, values[window:].copy()


def split_windows(values: np.ndarray, window: int, fractions=(0.7, 0.15, 0.15)) -> dict:
    """``{"train" | "val" | "test": (inputs [n, L], targets [n])}``, each cut inside its own part."""
    values = np.asarray(values, dtype=np.float64)
    n_train, n_val, _ = check_points(len(values), window, fractions)
    parts = {"train": values[:n_train], "val": values[n_train : n_train + n_val], "test": values[n_train + n_val :]}
    return {name: windows(part, window) for name, part in parts.items()}


def generated_prices(n: int = 3000, seed: int = 0, every_hours: float = 20.0) -> pd.Series:
    """The built-in series when no --csv is given: ``n`` prices every ``every_hours`` hours.

    Geometric Brownian motion (drift 2e-4, volatility 0.5% per step) times two
    slow cycles in log-price (amplitude 0.25 over 120 steps, 0.10 over 37 steps).
    The cycles give it structure a model can learn and persistence cannot, so it
    tests that training works; real prices are closer to the random walk alone.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    walk = np.cumsum(2e-4 + 0.005 * rng.standard_normal(n))
    cycles = 0.25 * np.sin(2 * np.pi * t / 120) + 0.10 * np.sin(2 * np.pi * t / 37 + 1.0)
    prices = 10_000.0 * np.exp(walk + cycles)
    index = pd.date_range("2020-01-01", periods=n, freq=pd.Timedelta(hours=every_hours), tz="UTC", name="timestamp")
    return pd.Series(prices, index=index, name="open")
