"""Any regular time series with numeric columns: read, checked, split, windowed, and the closed-form
baselines a long-horizon forecast is judged against.

The data side of the planned ``series`` task (issue 31), built apart from any model:

* ``load_table``: a CSV or a pandas DataFrame with a time column and numeric columns.  Unsorted or
  duplicate times, irregular spacing, a non-numeric or missing cell and a constant column are each
  one ``UserError`` naming the column and line; nothing is filled silently.
* ``ett_hour_splits`` (the papers' protocol for ETTh1: 12/4/4 months of hours, each split's windows
  looking back into the one before) and ``fraction_splits``.
* ``Standardizer``: z-scoring fitted on the training part only.
* ``windows``: every (lookback L, horizon H) pair at stride 1, ``[n, L, C]`` and ``[n, H, C]``.
* Baselines in closed form: ``repeat_last``, ``seasonal_naive``, and ``Ridge`` (a linear map from the
  window to the horizon, fitted on the training windows, per channel or shared across channels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import UserError
from .prices import exact_floats

TIME_NAMES = ("date", "time", "timestamp", "datetime")
HOURS_PER_MONTH = 30 * 24  # the papers' month, for the ETT protocol


@dataclass
class Table:
    """A checked series: ``values`` ``[N, C]`` float64, ``times`` ``[N]``, the column names."""

    values: np.ndarray
    times: pd.DatetimeIndex
    columns: tuple[str, ...]
    step: pd.Timedelta
    source: str


def load_table(data, time_column: str | None = None, columns=None, source: str | None = None) -> Table:
    """Read ``data`` (a CSV path or a DataFrame) into a ``Table``: the time column (default: the
    first named date/time/timestamp/datetime, else the first column), and ``columns`` (default:
    every other one), each checked to be numeric, complete and not constant."""
    if isinstance(data, pd.DataFrame):
        source, line_offset = source or "the DataFrame", 0
        frame = data.copy()
        if isinstance(frame.index, pd.DatetimeIndex):  # the usual shape: times as the index
            frame = frame.rename_axis(frame.index.name or "time").reset_index()
    elif os.fspath(data).lower().endswith(".parquet"):
        source = source or os.fspath(data)
        frame, line_offset = _read_parquet(source), 0
    else:
        source = source or os.fspath(data)
        if not os.path.isfile(source):
            raise UserError(f"series file {source!r} does not exist or is not a file; pass a CSV with a time column")
        try:
            frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"{source} is not a readable CSV ({str(exc).strip()})") from None
        line_offset = 2  # 1-based lines, after the header
    if frame.empty:
        raise UserError(f"{source} has no rows")
    names = [str(c) for c in frame.columns]
    frame.columns = names
    if time_column is None:
        time_column = next((c for c in names if c.lower() in TIME_NAMES), names[0])
    if time_column not in names:
        raise UserError(f"{source} has no column {time_column!r} (it has {', '.join(names)}); choose --time-column")
    chosen = [c for c in names if c != time_column] if columns is None else list(columns)
    missing = [c for c in chosen if c not in names]
    if missing:
        raise UserError(f"{source} has no column {', '.join(map(repr, missing))} (it has {', '.join(names)})")
    if not chosen:
        raise UserError(f"{source} has no column besides the time column {time_column!r}")

    def where(i: int) -> str:
        return f"line {i + line_offset}" if line_offset else f"row {i}"

    times, step = _regular_times(frame[time_column], time_column, source, where)
    values = np.empty((len(frame), len(chosen)))
    for k, column in enumerate(chosen):
        numbers = exact_floats(frame[column])  # as written, to the last bit (not every pandas parses so)
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = frame[column].iloc[i]
            shown = "empty" if pd.isna(cell) else repr(str(cell))
            raise UserError(f"{source}, {where(i)}: {column} is {shown}, not a number; fix or remove the row")
        if numbers.size > 1 and np.ptp(numbers) == 0:
            raise UserError(f"{source}: column {column!r} is constant ({numbers[0]:g}); leave it out with --columns")
        values[:, k] = numbers
    return Table(values, times, tuple(chosen), pd.Timedelta(step), source)


def _read_parquet(path: str) -> pd.DataFrame:
    """A Parquet file as a frame of its columns (rows are then named by their 0-based number)."""
    if not os.path.isfile(path):
        raise UserError(f"series file {path!r} does not exist or is not a file")
    try:
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        raise UserError(f"reading {path} needs pyarrow: pip install 'rnnlab[parquet]' (or pass a CSV)") from None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable Parquet file ({str(exc).strip()})") from None
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis(frame.index.name or "time").reset_index()
    return frame


def _regular_times(cells: pd.Series, time_column: str, source: str, where) -> tuple[pd.DatetimeIndex, int]:
    """The times of ``cells`` and their step (ns), or a ``UserError`` naming the first unreadable,
    out-of-order, repeated or irregular one (``where(i)`` names row ``i``)."""
    times = pd.to_datetime(cells, errors="coerce", utc=True, format="mixed")
    if times.isna().any():
        i = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise UserError(f"{source}, {where(i)}: cannot read the time {cells.iloc[i]!r} in {time_column!r}")
    times = pd.DatetimeIndex(times)
    gaps = np.diff(times.as_unit("ns").asi8)  # nanoseconds, whatever unit the parser chose
    if (gaps <= 0).any():
        i = int(np.flatnonzero(gaps <= 0)[0]) + 1
        what = "repeats" if gaps[i - 1] == 0 else "comes before"
        raise UserError(
            f"{source}, {where(i)}: the time {times[i]} {what} the one before it; sort the rows and keep one per time"
        )
    if len(gaps):
        step = int(pd.Series(gaps).mode().iloc[0])
        if (gaps != step).any():
            i = int(np.flatnonzero(gaps != step)[0]) + 1
            raise UserError(
                f"{source}, {where(i)}: the series is not regular: {times[i - 1]} to {times[i]} is "
                f"{pd.Timedelta(int(gaps[i - 1]))}, the rest {pd.Timedelta(step)}; resample it or fill the gap first"
            )
    else:
        step = 0
    return times, step


def step_text(step: pd.Timedelta) -> str:
    """A time step in words a person writes: ``1h``, ``15min``, ``1d``, ``30s``."""
    seconds = step.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(step)


# --------------------------------------------------------------------------- splits and scaling


def ett_hour_splits(n: int, lookback: int) -> dict[str, tuple[int, int]]:
    """The papers' ETTh1/ETTh2 protocol: rows ``[start, stop)`` of train (12 months of hours),
    validation and test (4 months each); validation and test start ``lookback`` rows early, so
    their first window looks back into the part before."""
    train, val, test = 12 * HOURS_PER_MONTH, 4 * HOURS_PER_MONTH, 4 * HOURS_PER_MONTH
    if n < train + val + test:
        raise UserError(
            f"--split ett-hour needs {train + val + test:,} hourly rows (12 + 4 + 4 months); the series has {n:,}"
        )
    return {
        "train": (0, train),
        "val": (train - lookback, train + val),
        "test": (train + val - lookback, train + val + test),
    }


def fraction_splits(n: int, fractions: tuple[float, float, float], lookback: int) -> dict[str, tuple[int, int]]:
    """Chronological train/validation/test by ``fractions`` of the rows, each later part starting
    ``lookback`` rows early (as the papers' protocol)."""
    n_train = int(n * fractions[0])
    n_val = int(n * fractions[1])
    return {
        "train": (0, n_train),
        "val": (n_train - lookback, n_train + n_val),
        "test": (n_train + n_val - lookback, n),
    }


@dataclass
class Standardizer:
    """z-scoring per column, fitted on the training rows only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        return cls(values.mean(axis=0), values.std(axis=0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


def windows(values: np.ndarray, lookback: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window at stride 1 of ``values`` ``[N, C]``: inputs ``[n, L, C]`` and the horizon that
    follows each ``[n, H, C]`` (n = N - L - H + 1; views, not copies)."""
    n = len(values) - lookback - horizon + 1
    if n < 1:
        raise UserError(f"{len(values)} rows are too few for --lookback {lookback} and --horizon {horizon}")
    view = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon, axis=0)  # [n, C, L+H]
    view = np.moveaxis(view, -1, 1)[:n]
    return view[:, :lookback], view[:, lookback:]


# --------------------------------------------------------------------------- baselines


def repeat_last(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """``[n, H, C]``: the window's last value, held over the horizon."""
    return np.repeat(inputs[:, -1:, :], horizon, axis=1)


def seasonal_naive(inputs: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``[n, H, C]``: the value one ``season`` before each horizon step (the window's last season
    repeated); the lookback must hold a whole season."""
    if not 1 <= season <= inputs.shape[1]:
        raise UserError(f"--season {season} must be between 1 and the lookback {inputs.shape[1]}")
    last = inputs[:, -season:, :]
    reps = -(-horizon // season)
    return np.tile(last, (1, reps, 1))[:, :horizon]


@dataclass
class Ridge:
    """A linear map from the window (``[L]``, plus a constant) to the horizon (``[H]``), the same
    for every channel (``shared``) or one per channel, fitted in closed form with an L2 penalty."""

    weights: np.ndarray  # [L + 1, H] shared, or [C, L + 1, H]
    shared: bool

    @classmethod
    def fit(cls, inputs: np.ndarray, targets: np.ndarray, penalty: float = 1.0, shared: bool = True) -> Ridge:
        """Fit on training windows ``inputs`` ``[n, L, C]`` and ``targets`` ``[n, H, C]``."""

        def solve(x, y):  # x [m, L], y [m, H]
            x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
            gram = x1.T @ x1 + penalty * np.diag(np.r_[np.ones(x.shape[1]), 0.0])  # the constant not penalized
            return np.linalg.solve(gram, x1.T @ y)

        if shared:
            x = np.moveaxis(inputs, 2, 1).reshape(-1, inputs.shape[1])
            y = np.moveaxis(targets, 2, 1).reshape(-1, targets.shape[1])
            return cls(solve(x, y), True)
        return cls(np.stack([solve(inputs[:, :, c], targets[:, :, c]) for c in range(inputs.shape[2])]), False)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """``[n, H, C]`` for windows ``[n, L, C]``."""
        x1 = np.concatenate([inputs, np.ones((inputs.shape[0], 1, inputs.shape[2]))], axis=1)  # [n, L+1, C]
        if self.shared:
            return np.einsum("nlc,lh->nhc", x1, self.weights)
        return np.einsum("nlc,clh->nhc", x1, self.weights)


def errors_by_step(predicted: np.ndarray, targets: np.ndarray) -> dict:
    """MSE and MAE averaged over windows, horizon steps and channels (as the papers report them),
    and per horizon step (``[H]``)."""
    err = predicted - targets
    return {
        "mse": float(np.mean(err**2)),
        "mae": float(np.mean(np.abs(err))),
        "mse_by_step": np.mean(err**2, axis=(0, 2)).tolist(),
        "mae_by_step": np.mean(np.abs(err), axis=(0, 2)).tolist(),
    }


# --------------------------------------------------------------------------- the built-in series


def builtin_frame(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A generated hourly table to try the series task on without a file: ``load`` (daily and weekly
    cycles with a slow trend and AR(1) noise), ``temperature`` (a daily cycle lagging the load's),
    and ``demand``, which follows the load two hours late.  Seeded, so every run sees the same."""
    rng = np.random.default_rng([seed, 31])
    hours = np.arange(rows)
    day, week = 2 * np.pi * hours / 24, 2 * np.pi * hours / (24 * 7)
    noise = np.zeros(rows)
    shocks = rng.standard_normal(rows) * 0.3
    for t in range(1, rows):
        noise[t] = 0.9 * noise[t - 1] + shocks[t]
    load = 10 + 2.0 * np.sin(day) + 1.0 * np.sin(week) + hours / rows + noise
    temperature = 15 + 4.0 * np.sin(day - 1.0) + 0.5 * rng.standard_normal(rows)
    demand = np.roll(load, 2) * 0.8 + 0.3 * rng.standard_normal(rows)
    demand[:2] = demand[2]
    times = pd.date_range("2024-01-01", periods=rows, freq="h")
    return pd.DataFrame({"date": times, "load": load, "temperature": temperature, "demand": demand})
