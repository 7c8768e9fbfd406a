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
  in price units next to it (MAE, RMSE, MAPE, direction calls, skill).

This module is the task itself (the training side, loading, predicting, its definition); its
data is in ``forecast_data``, its model side in ``forecast_model``, its words and plots in
``forecast_text``, and the statistics in ``forecast_stats``.

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
from pathlib import Path

import numpy as np
import pandas as pd

from .. import averaging, jsonfile, runs, train
from ..cells import ModelSpec
from ..config import ForecastConfig
from ..data.prices import load_prices, parse_every, resample_opens
from ..errors import UserError
from ..facts import read_json
from . import forecast_backtest, forecast_onnx
from . import forecast_stats as stats
from .definition import COMMON_SPACE, ApiData, Forecaster, OnnxIO, TaskDefinition

# The task's parts live in forecast_data (series, features, windows), forecast_model (forecasts,
# calibration, comparison) and forecast_text (words, plots, report); the command line, backtests
# and tests read them through this module.
from .forecast_data import (  # noqa: F401
    BUILTIN_SEED,
    CANDLE_CHANNELS,
    Features,
    Part,
    Series,
    build_parts,
    candle_channels,
    channel_windows,
    check_grid,
    columns_of,
    describe_series,
    load_series,
)
from .forecast_model import (  # noqa: F401
    Calibration,
    Forecasts,
    compare,
    fit_calibration,
    fit_shrink,
    forecast_outputs,
    forecast_points,
    make_forecasts,
    model_outputs,
    shrink_toward_persistence,
)
from .forecast_text import (  # noqa: F401
    describe,
    describe_direction,
    describe_log_return_skill,
    describe_random_walks,
    describe_shrink_and_intervals,
    percent,
    plot_forecast,
    plot_history,
    report_facts,
)

CALIBRATION_FILE = "calibration.json"  # what is fitted on validation after training (``Calibration``)


def spec_of(cfg: ForecastConfig) -> ModelSpec:
    inputs = 1 + len(CANDLE_CHANNELS[cfg.features])
    outputs = 2 if cfg.head == "gaussian" else 1  # (mean, log-variance) or the point forecast
    return ModelSpec(
        cfg.cell, inputs, cfg.hidden_size, outputs, cfg.layers, "dense", residual=cfg.residual, norm=cfg.norm
    )


def loss_of(cfg: ForecastConfig) -> str:
    return "gaussian_nll" if cfg.head == "gaussian" else "mse"


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
        self.epochs = train.ShuffledEpochs(len(self.train_inputs), cfg.batch_size, cfg.seed)
        self.steps_per_epoch = self.epochs.steps_per_epoch

    def next_batch(self):
        idx = self.epochs.next()
        self.items_per_step = len(idx)
        return self.train_inputs[idx], self.train_targets[idx], True  # windows are independent: zero state

    @property
    def epoch(self) -> float:
        return self.epochs.epoch

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
        return self.epochs.state()

    def load_data_state(self, state: dict) -> None:
        self.epochs.load_state(state)

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
            max_steps=total_steps,
            max_minutes=self.cfg.max_minutes,
            eval_every=self.steps_per_epoch,
            eval_at_start=True,
            max_steps_flag=f"--epochs {self.cfg.epochs}",
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
    path = Path(run_dir) / CALIBRATION_FILE
    saved = jsonfile.read(path, jsonfile.CALIBRATION) if which == "best" and path.exists() else None
    try:
        return Calibration() if saved is None else Calibration.from_dict(saved)
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(
            f"{run_dir}/{CALIBRATION_FILE} is damaged ({exc}); run `forecast train --resume` on the "
            "finished run to fit it again"
        ) from exc


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


def _series_to_predict(cfg: ForecastConfig, meta: dict, csv: str | None, start: str | None, end: str | None):
    """The ``Series`` a forecast continues: ``csv`` binned on the run's grid (same ``--every``, same
    anchor; refused when it cannot be), or the run's own series, within ``[start, end)``."""
    if not csv:
        return load_series(
            dataclasses.replace(
                cfg, train_length=0, **({"start": start} if start else {}), **({"end": end} if end else {})
            )
        )
    data = load_prices(csv, columns_of(cfg.features))
    notes = data.notes()
    every = parse_every(cfg.every)
    anchor = pd.Timestamp(meta["series"]["anchor"])
    check_grid(data, every, anchor, cfg.every)
    resampled = resample_opens(data.frame, every, start, end, anchor=anchor)
    prices = resampled.opens
    empty = [t for t in resampled.empty_bins if t >= prices.index[-1] - every * cfg.window]
    if empty:
        notes.append(
            f"{len(empty)} empty {cfg.every} bin(s) inside the last window (first "
            f"{empty[0]:%Y-%m-%d %H:%M}): the window spans them"
        )
    return Series(prices, csv, every, notes, candle_channels(resampled.candles, cfg.features, csv))


def predict_from(
    loaded, run_dir, which: str, csv: str | None = None, start: str | None = None, end: str | None = None
) -> dict:
    """``predict_next`` for a model already loaded (``load_run``; ``rnnlab.Model.predict``)."""
    trainer, cfg, features = loaded.trainer, loaded.cfg, loaded.extras["features"]
    series = _series_to_predict(cfg, loaded.meta, csv, start, end)
    prices, source, every, notes, channels = series.prices, series.source, series.every, series.notes, series.channels
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
    forecaster=Forecaster(
        load_series=load_series,
        forecastable=lambda cfg, series: len(series.prices),
        describe_series=describe_series,
        points_needed=forecast_backtest.needed_points,
        origin_config=lambda fit_cfg, series, first: dataclasses.replace(fit_cfg, end=str(series.times[first])),
        fit_facts=forecast_backtest.fit_facts,
        load_run=load_run,
        fitted_points=lambda loaded: loaded.meta["series"]["points"],
        origin_record=forecast_backtest.origin_record,
        record_schema=forecast_backtest.RECORD_SCHEMA,
        summarize=forecast_backtest.summarize,
        write_figures=forecast_backtest.write_figures,
        report_parts=forecast_backtest.report_parts,
        print_summary=forecast_backtest.print_summary,
    ),
)
