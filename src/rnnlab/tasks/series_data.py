"""The series task's data side, built apart from the model: a table read and cut, split without
look-ahead, z-scored on its training rows, windows turned into the segment decoder's rows and
back (``Layout``), the three closed-form baselines, and the papers' errors.

``rnnlab.tasks.series`` (the task) and ``rnnlab.tasks.series_backtest`` (its rolling origins)
both read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cells import ModelSpec
from ..config import SeriesConfig
from ..data import table as tables
from ..errors import UserError

REVIN_EPS = 1e-5  # inside the square root of a window's variance (RevIN's)
EVAL_WINDOWS = 512  # windows per forward pass at evaluation (bounds memory for long horizons)
RIDGE_PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)
BASELINES = ("ridge", "seasonal_naive", "repeat_last")


# --------------------------------------------------------------------------- rows of the model


@dataclass(frozen=True)
class Layout:
    """Which columns a run forecasts and reads, and how a window becomes the model's rows."""

    columns: tuple[str, ...]
    targets: tuple[int, ...]  # indices into columns
    inputs_only: tuple[int, ...]
    lookback: int
    horizon: int
    segment: int
    normalize: str

    @property
    def row_width(self) -> int:
        """Values per segment of one row: its own W, then W of each input-only column."""
        return self.segment * (1 + len(self.inputs_only))

    def window_norm(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale), each ``[n, 1, C]``: per-window normalisation maps a column's x to
        (x - shift) / scale, and the model's output y back to y * scale + shift."""
        ones = np.ones_like(windows[:, :1, :])
        if self.normalize == "last":
            return windows[:, -1:, :], ones
        if self.normalize == "mean":
            return windows.mean(axis=1, keepdims=True), ones
        if self.normalize == "revin":  # RevIN without its affine part (Kim et al. 2022)
            return windows.mean(axis=1, keepdims=True), np.sqrt(windows.var(axis=1, keepdims=True) + REVIN_EPS)
        return np.zeros_like(ones), ones

    def rows(self, windows: np.ndarray, dtype) -> tuple[np.ndarray, tuple]:
        """Windows ``[n, L, C]`` -> (model inputs ``[n * T, L/W, row_width]``, the window norm);
        row ``i * T + j`` is window i's target j (window-major, as the segment decoder expects)."""
        norm = self.window_norm(windows)
        z = (windows - norm[0]) / norm[1]
        n, T, K = len(z), len(self.targets), len(self.inputs_only)
        feats = np.empty((n, T, 1 + K, self.lookback), dtype)
        feats[:, :, 0] = np.moveaxis(z[:, :, list(self.targets)], 2, 1)
        if K:
            feats[:, :, 1:] = np.moveaxis(z[:, :, list(self.inputs_only)], 2, 1)[:, None]
        N, W = self.lookback // self.segment, self.segment
        feats = feats.reshape(n, T, 1 + K, N, W).transpose(0, 1, 3, 2, 4)
        return np.ascontiguousarray(feats.reshape(n * T, N, (1 + K) * W)), norm

    def row_targets(self, futures: np.ndarray, norm: tuple, dtype) -> np.ndarray:
        """Futures ``[n, H, C]`` -> training targets ``[n * T, H/W, W]``, normalised as their window."""
        t = list(self.targets)
        z = np.moveaxis((futures[:, :, t] - norm[0][:, :, t]) / norm[1][:, :, t], 2, 1)  # [n, T, H]
        return np.ascontiguousarray(z.reshape(-1, self.horizon // self.segment, self.segment), dtype=dtype)

    def forecast(self, outputs: np.ndarray, norm: tuple) -> np.ndarray:
        """Model outputs ``[n * T, H/W, W]`` -> forecasts ``[n, H, T]`` (the window norm undone)."""
        t = list(self.targets)
        y = np.asarray(outputs, np.float64).reshape(-1, len(t), self.horizon)
        return np.moveaxis(y, 1, 2) * norm[1][:, :, t] + norm[0][:, :, t]

    def to_dict(self) -> dict:
        return {
            "columns": list(self.columns),
            "targets": list(self.targets),
            "inputs_only": list(self.inputs_only),
            "lookback": self.lookback,
            "horizon": self.horizon,
            "segment": self.segment,
            "normalize": self.normalize,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        return cls(
            tuple(str(c) for c in d["columns"]),
            tuple(int(i) for i in d["targets"]),
            tuple(int(i) for i in d["inputs_only"]),
            int(d["lookback"]),
            int(d["horizon"]),
            int(d["segment"]),
            str(d["normalize"]),
        )


def layout_of(cfg: SeriesConfig, columns: tuple[str, ...]) -> Layout:
    """The run's ``Layout``; a target that is not a read column is one line."""
    wanted = cfg.column_list("targets") or list(columns)
    unknown = [t for t in wanted if t not in columns]
    if unknown:
        raise UserError(
            f"--targets {', '.join(unknown)}: not among the columns read ({', '.join(columns)}); "
            "name columns of the file (and of --columns, when given)"
        )
    if len(set(wanted)) != len(wanted):
        raise UserError(f"--targets names a column twice: {cfg.targets}")
    targets = tuple(columns.index(t) for t in wanted)
    inputs_only = tuple(i for i in range(len(columns)) if i not in targets)
    return Layout(columns, targets, inputs_only, cfg.lookback, cfg.horizon, cfg.segment, cfg.normalize)


def spec_of(cfg: SeriesConfig, layout: Layout) -> ModelSpec:
    return ModelSpec(
        cfg.cell,
        layout.row_width,
        cfg.hidden_size,
        cfg.segment,
        cfg.layers,
        "dense_relu",
        residual=cfg.residual,
        norm=cfg.norm,
        decode_steps=cfg.horizon // cfg.segment,
        decode_channels=len(layout.targets),
    )


def predict(trainer, layout: Layout, windows: np.ndarray, dtype) -> np.ndarray:
    """Forecasts ``[n, H, T]`` (float64, scaled units) of windows ``[n, L, C]``, in chunks."""
    out = []
    for start in range(0, len(windows), EVAL_WINDOWS):
        rows, norm = layout.rows(windows[start : start + EVAL_WINDOWS], dtype)
        y, _ = trainer.forward(trainer.init_carry(len(rows)), rows)
        out.append(layout.forecast(y, norm))
    return np.concatenate(out) if out else np.empty((0, layout.horizon, len(layout.targets)))


# --------------------------------------------------------------------------- data


@dataclass
class Part:
    """One split's windows, scaled: inputs ``[n, L, C]`` (every column), futures ``[n, H, C]``."""

    inputs: np.ndarray
    futures: np.ndarray
    first_row: int  # the table row of the first window's first value

    def truth(self, layout: Layout) -> np.ndarray:
        return self.futures[:, :, list(layout.targets)]


def read_table(cfg: SeriesConfig) -> tables.Table:
    """The run's table: ``--csv`` or the built-in generated one, cut to ``--start``..``--end``
    (end exclusive) and its last ``--train-length`` rows."""
    import pandas as pd

    data = cfg.csv or tables.builtin_frame()
    source = None if cfg.csv else "the built-in series"
    table = tables.load_table(data, cfg.time_column or None, cfg.column_list("columns"), source)
    keep = np.ones(len(table.times), bool)
    for name, text in (("start", cfg.start), ("end", cfg.end)):
        if not text:
            continue
        try:
            when = pd.Timestamp(text)
        except ValueError:
            raise UserError(f"--{name} {text!r} is not a date or time (e.g. 2018-01-01 or 2018-01-01T06:00)") from None
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        keep &= (table.times >= when) if name == "start" else (table.times < when)
    rows = np.flatnonzero(keep)
    if cfg.train_length:
        rows = rows[-cfg.train_length :]
    if len(rows) < 2:
        raise UserError(f"{table.source}: {len(rows)} row(s) between --start and --end; widen the range")
    return tables.Table(table.values[rows], table.times[rows], table.columns, table.step, table.source)


def split_parts(cfg: SeriesConfig, table: tables.Table) -> tuple[dict[str, Part], tables.Standardizer]:
    """Train/val/test windows and the scaler fitted on the training rows only."""
    n = len(table.values)
    if cfg.split == "ett-hour":
        bounds = tables.ett_hour_splits(n, cfg.lookback)
    else:
        bounds = tables.fraction_splits(n, cfg.fractions, cfg.lookback)
    scaler = tables.Standardizer.fit(table.values[slice(*bounds["train"])])
    scaled = scaler.transform(table.values)
    parts = {}
    for name, (start, stop) in bounds.items():
        if name == "test" and cfg.split == "fractions" and cfg.test_fraction == 0:
            continue  # no test part: train and validate only (a backtest's fits)
        rows = stop - start
        if rows < cfg.lookback + cfg.horizon:
            raise UserError(
                f"{table.source}: the {name} part has {rows:,} rows, fewer than --lookback {cfg.lookback} + "
                f"--horizon {cfg.horizon}; use a longer series, shorter windows or other --val/--test fractions"
            )
        inputs, futures = tables.windows(scaled[start:stop], cfg.lookback, cfg.horizon)
        parts[name] = Part(inputs, futures, start)
    return parts, scaler


# --------------------------------------------------------------------------- baselines


def fit_baselines(cfg: SeriesConfig, layout: Layout, parts: dict[str, Part]) -> tuple[dict, dict]:
    """Each baseline as a function of the targets' windows ``[n, L, T]`` (scaled) -> ``[n, H, T]``,
    the ridge map fitted on the training windows; and what was chosen for it (penalty and
    centering, by validation MSE)."""
    t, H = list(layout.targets), layout.horizon
    ridge, chosen = _fit_ridge(parts["train"].inputs[:, :, t], parts["train"].truth(layout), parts, t)
    return {
        "ridge": ridge,
        "seasonal_naive": lambda x: tables.seasonal_naive(x, H, cfg.season),
        "repeat_last": lambda x: tables.repeat_last(x, H),
    }, chosen


def baseline_forecasts(cfg: SeriesConfig, layout: Layout, parts: dict[str, Part]) -> tuple[dict, dict]:
    """Each baseline's forecasts ``[n, H, T]`` of every part, and the ridge map's choice."""
    baselines, chosen = fit_baselines(cfg, layout, parts)
    t = list(layout.targets)
    out = {name: {k: f(part.inputs[:, :, t]) for k, f in baselines.items()} for name, part in parts.items()}
    return out, chosen


def _fit_ridge(train_x, train_y, parts, t):
    """One ridge map from a channel's window to its horizon, shared by the target channels, its
    penalty and centering (none, or the window's last value subtracted) chosen on validation."""
    val_x, val_y = parts["val"].inputs[:, :, t], parts["val"].futures[:, :, t]
    best = None
    for centering in ("none", "last"):
        shift_train = train_x[:, -1:, :] if centering == "last" else 0.0
        shift_val = val_x[:, -1:, :] if centering == "last" else 0.0
        for penalty in RIDGE_PENALTIES:
            fitted = tables.Ridge.fit(train_x - shift_train, train_y - shift_train, penalty)
            mse = float(np.mean((fitted.predict(val_x - shift_val) + shift_val - val_y) ** 2))
            if best is None or mse < best[0]:
                best = (mse, fitted, centering, penalty)
    _, fitted, centering, penalty = best

    def forecast(x):
        shift = x[:, -1:, :] if centering == "last" else 0.0
        return fitted.predict(x - shift) + shift

    return forecast, {"penalty": penalty, "centering": centering}


def errors(forecast: np.ndarray, truth: np.ndarray, scaler: tables.Standardizer, layout: Layout) -> dict:
    """MSE and MAE of a forecast ``[n, H, T]`` in scaled units (as the papers report them, and per
    horizon step) and in the data's own units (the targets' scale undone)."""
    scaled = tables.errors_by_step(forecast, truth)
    t = list(layout.targets)
    std = scaler.std[t]
    own = tables.errors_by_step(forecast * std, truth * std)  # the mean cancels in a difference
    return dict(scaled, mse_original=own["mse"], mae_original=own["mae"])
