"""series: forecast any regular multivariate series many steps ahead, judged against three
closed-form baselines (repeat-last, seasonal naive, a ridge map from window to horizon).

What is specific to this task and nothing else:

* data: a table (``rnnlab.data.table``) split chronologically (by fractions or the papers' ETTh
  protocol), z-scored on the training rows, cut into every (lookback, horizon) window at stride 1;
* rows: each target column of a window is one row through shared weights (channel independence),
  reading its own values and, beside them, those of the input-only columns; per-window
  normalisation subtracts each column's last value (or mean) and adds it back to the forecast;
* the model: a segment decoder (``ModelSpec.decode_steps``, SegRNN) over L/W segments of W rows,
  decoding H/W segments at once; trained with MSE on the scaled values;
* metrics as the papers report them (MSE and MAE of the z-scored targets, averaged over windows,
  steps and channels), per horizon step, and in the data's own units; the baselines beside each.

The loop is ``rnnlab.train``; one evaluation per epoch, the best epoch on validation MSE kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import averaging, report, runs, train
from ..cells import ModelSpec
from ..config import SeriesConfig
from ..data import table as tables
from ..errors import UserError
from ..facts import Facts, Headline, read_json
from . import series_backtest
from .definition import COMMON_SPACE, ApiData, Forecaster, OnnxIO, TaskDefinition
from .series_data import (  # noqa: F401  (the data side, read through this module too)
    BASELINES,
    REVIN_EPS,
    Layout,
    Part,
    baseline_forecasts,
    errors,
    fit_baselines,
    layout_of,
    predict,
    read_table,
    spec_of,
    split_parts,
)

WINDOWS_SHOWN = 3


# --------------------------------------------------------------------------- the task


class SeriesTask(train.TaskBase):
    """The task side of the training loop: one step = one batch of shuffled training windows
    (each giving one row per target), one evaluation = one epoch."""

    name = "series"
    item_name = "windows"

    def __init__(self, cfg: SeriesConfig, table: tables.Table):
        self.cfg, self.table = cfg, table
        self.layout = layout_of(cfg, table.columns)
        self.parts, self.scaler = split_parts(cfg, table)
        self.dtype = np.dtype(cfg.dtype)
        self.baselines, self.ridge_choice = baseline_forecasts(cfg, self.layout, self.parts)
        val_truth = self.parts["val"].truth(self.layout)
        self.val_baseline_mse = {
            name: float(np.mean((f - val_truth) ** 2)) for name, f in self.baselines["val"].items()
        }
        self.batch_size = cfg.batch_size
        self.items_per_step = cfg.batch_size
        self.epochs = train.ShuffledEpochs(len(self.parts["train"].inputs), cfg.batch_size, cfg.seed)
        self.steps_per_epoch = self.epochs.steps_per_epoch

    def next_batch(self):
        train_part = self.parts["train"]
        idx = np.sort(self.epochs.next())  # in order: the windows are views of one array
        self.items_per_step = len(idx)
        rows, norm = self.layout.rows(train_part.inputs[idx], self.dtype)
        return rows, self.layout.row_targets(train_part.futures[idx], norm, self.dtype), True

    @property
    def epoch(self) -> float:
        return self.epochs.epoch

    def evaluate(self, trainer) -> dict:
        part = self.parts["val"]
        forecast = predict(trainer, self.layout, part.inputs, self.dtype)
        err = errors(forecast, part.truth(self.layout), self.scaler, self.layout)
        out = {"epoch": round(self.epoch, 3), "val_mse": err["mse"], "val_mae": err["mae"], "val_loss": err["mse"]}
        out.update({f"val_{name}_mse": mse for name, mse in self.val_baseline_mse.items()})
        return out

    def describe_eval(self, trainer, state, record, final) -> str:
        mean = record.get("train_loss_mean")
        train_text = f"train {self.cfg.loss.upper()} {mean:.4f}" if mean is not None else "train -"
        return (
            f"epoch {record['epoch']:g}/{self.cfg.epochs} | {train_text} | val MSE {record['val_mse']:.4f} "
            f"MAE {record['val_mae']:.4f} (ridge {record['val_ridge_mse']:.4f}, seasonal naive "
            f"{record['val_seasonal_naive_mse']:.4f})"
        )

    def data_state(self) -> dict:
        return self.epochs.state()

    def load_data_state(self, state: dict) -> None:
        self.epochs.load_state(state)

    def checkpoint_meta(self) -> dict:
        return {
            "layout": self.layout.to_dict(),
            "scaler": {"mean": self.scaler.mean.tolist(), "std": self.scaler.std.tolist()},
            "table": {
                "source": self.table.source,
                "rows": len(self.table.values),
                "first": str(self.table.times[0]),
                "last": str(self.table.times[-1]),
                "step": tables.step_text(self.table.step),
                "windows": {name: len(p.inputs) for name, p in self.parts.items()},
            },
        }

    # ----- the run skeleton's hooks (rnnlab.runner)
    @property
    def loss(self) -> str:
        return self.cfg.loss

    def spec(self) -> ModelSpec:
        return spec_of(self.cfg, self.layout)

    def console_lines(self) -> list[str]:
        cfg, layout = self.cfg, self.layout
        counts = ", ".join(f"{name} {len(p.inputs):,}" for name, p in self.parts.items())
        targets = ", ".join(layout.columns[i] for i in layout.targets)
        extra = ", ".join(layout.columns[i] for i in layout.inputs_only)
        return [
            f"{self.table.source}: {len(self.table.values):,} rows every {tables.step_text(self.table.step)}, "
            f"{self.table.times[0]} to {self.table.times[-1]}",
            f"forecast {targets}{f' (reading {extra} too)' if extra else ''}: {cfg.horizon} rows from "
            f"{cfg.lookback}, in segments of {cfg.segment}; windows: {counts}",
            "validation MSE of the baselines: "
            + ", ".join(f"{name.replace('_', ' ')} {mse:.4f}" for name, mse in self.val_baseline_mse.items()),
        ]

    def budget(self) -> tuple[train.Budget, int]:
        total_steps = self.cfg.epochs * self.steps_per_epoch
        return train.Budget(
            max_steps=total_steps,
            max_minutes=self.cfg.max_minutes,
            eval_every=self.steps_per_epoch,
            max_steps_flag=f"--epochs {self.cfg.epochs}",
        ), total_steps

    def after_training(self, trainer, summary: dict, run) -> dict:
        """The loss plot; unless interrupted, the best epoch's model (held by ``run``) on the test
        windows beside the baselines (``test.json``, ``forecast.png``, ``error_by_step.png``)."""
        report.plot_losses(
            run.path, "MSE (scaled)", "val_mse", baseline=("ridge (validation)", self.val_baseline_mse["ridge"])
        )
        extra = {"epochs": round(self.epoch, 3), "test": None}
        if summary["interrupted"]:
            return extra
        best = run.best
        if "test" not in self.parts:  # --test-fraction 0
            return extra
        with averaging.holding(trainer, best and best.params):
            forecast = predict(trainer, self.layout, self.parts["test"].inputs, self.dtype)
        test = self.test_result(forecast)
        test.update(model="best" if best else "checkpoint", step=best.step if best else summary["step"])
        test["train_seconds"] = round(summary["train_seconds"], 3)
        plot_forecasts(run.path / "forecast.png", self, forecast)
        plot_error_by_step(run.path / "error_by_step.png", test)
        run.write_text("test.json", json.dumps(test, indent=1) + "\n")
        return dict(extra, test=test)

    def test_result(self, forecast: np.ndarray) -> dict:
        """The model's and every baseline's errors on the test windows, and the verdict in words."""
        truth = self.parts["test"].truth(self.layout)
        result = {
            "windows": len(truth),
            "lookback": self.cfg.lookback,
            "horizon": self.cfg.horizon,
            "targets": [self.layout.columns[i] for i in self.layout.targets],
            "errors": {
                "model": errors(forecast, truth, self.scaler, self.layout),
                **{name: errors(f, truth, self.scaler, self.layout) for name, f in self.baselines["test"].items()},
            },
            "ridge_choice": self.ridge_choice,
        }
        result["comparison_text"] = describe(result)
        return result


def describe(result: dict) -> str:
    """The test result in words: the model against the best baseline, and whether it beats the
    linear map (a model that does not adds nothing)."""
    model = result["errors"]["model"]
    base = {k: v for k, v in result["errors"].items() if k != "model"}
    best = min(base, key=lambda k: base[k]["mse"])
    ridge = base["ridge"]["mse"]
    text = [
        f"On {result['windows']:,} test windows ({result['horizon']} rows ahead from {result['lookback']}), "
        f"the model's MSE is {model['mse']:.4f} and MAE {model['mae']:.4f} (scaled units); "
        + "; ".join(f"{k.replace('_', ' ')} {v['mse']:.4f} / {v['mae']:.4f}" for k, v in base.items())
        + "."
    ]
    if model["mse"] < ridge:
        text.append(
            f"It beats the linear map from window to horizon by {100 * (1 - model['mse'] / ridge):.1f}% in MSE."
        )
    else:
        text.append(
            f"It does not beat the linear map from window to horizon (MSE {ridge:.4f}): the recurrent model adds "
            "nothing here over a closed-form fit."
        )
    if best != "ridge" and base[best]["mse"] < model["mse"]:
        text.append(f"The {best.replace('_', ' ')} baseline is better still.")
    return " ".join(text)


# --------------------------------------------------------------------------- plots


def plot_forecasts(path: Path, task: SeriesTask, forecast: np.ndarray) -> Path:
    """A few test windows of the last target: the lookback and the truth over the horizon, the model
    and each baseline (scaled units undone)."""
    plt = report.pyplot()
    layout, part = task.layout, task.parts["test"]
    j = len(layout.targets) - 1
    column = layout.targets[j]
    mean, std = task.scaler.mean[column], task.scaler.std[column]
    picks = np.linspace(0, len(forecast) - 1, WINDOWS_SHOWN).astype(int)
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.6 * len(picks)), dpi=100, squeeze=False)
    L, H = layout.lookback, layout.horizon
    for ax, i in zip(axes[:, 0], picks):
        past = np.arange(-L, 0)
        ahead = np.arange(H)
        ax.plot(past, part.inputs[i, :, column] * std + mean, color="0.5", label="lookback")
        ax.plot(ahead, part.futures[i, :, column] * std + mean, color="k", label="truth")
        for name, style in zip(BASELINES, (":", "--", "-.")):
            f = task.baselines["test"][name][i, :, j]
            ax.plot(ahead, f * std + mean, style, linewidth=1, label=name.replace("_", " "))
        ax.plot(ahead, forecast[i, :, j] * std + mean, color="tab:blue", linewidth=1.5, label="model")
        ax.axvline(-0.5, color="0.8", linewidth=1)
        ax.set_ylabel(layout.columns[column])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small", ncol=6)
    axes[-1, 0].set_xlabel("rows from the forecast's origin")
    fig.suptitle(f"Test windows: {layout.columns[column]}, {H} rows ahead")
    fig.tight_layout()
    report.save_figure(fig, path)
    return Path(path)


def plot_error_by_step(path: Path, test: dict) -> Path:
    """MSE per horizon step of the model and each baseline (scaled units)."""
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    steps = np.arange(1, test["horizon"] + 1)
    for name, style in zip(BASELINES, (":", "--", "-.")):
        ax.plot(steps, test["errors"][name]["mse_by_step"], style, label=name.replace("_", " "))
    ax.plot(steps, test["errors"]["model"]["mse_by_step"], color="tab:blue", linewidth=1.5, label="model")
    ax.set_xlabel("horizon step")
    ax.set_ylabel("test MSE (scaled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    report.save_figure(fig, path)
    return Path(path)


# --------------------------------------------------------------------------- runs


def open_task(cfg: SeriesConfig, meta: dict | None, where: str) -> SeriesTask:
    """The data of a run: the table, its windows, scaler and baselines, and the shuffled order, at
    the checkpoint's place in it when ``meta`` is a checkpoint's."""
    task = SeriesTask(cfg, read_table(cfg))
    if meta is not None:
        task.restore(meta, where)
    return task


def _scaler_of(saved: dict) -> tables.Standardizer:
    return tables.Standardizer(np.asarray(saved["mean"], np.float64), np.asarray(saved["std"], np.float64))


def load_run(run_dir: str | os.PathLike, which: str = "best", backend: str | None = None):
    """A saved series model: ``extras["layout"]`` (columns, targets, windows) and ``extras["scaler"]``."""
    return runs.load_run(
        run_dir,
        which,
        "series",
        SeriesConfig,
        backend,
        "mse",  # a loaded model forecasts; its training loss does not matter
        {"layout": ("layout", Layout.from_dict), "scaler": ("scaler", _scaler_of)},
    )


def evaluate_run(run_dir, which: str = "best", backend: str | None = None) -> dict:
    """A saved model on its run's test windows again, beside the baselines."""
    loaded = load_run(run_dir, which, backend)
    task = SeriesTask(loaded.cfg, read_table(loaded.cfg))
    if "test" not in task.parts:
        raise UserError(f"{run_dir} was trained with --test-fraction 0: it has no test windows to evaluate")
    forecast = predict(loaded.trainer, task.layout, task.parts["test"].inputs, task.dtype)
    step = loaded.meta["step"] if which == "best" else loaded.meta["loop"]["step"]
    return dict(task.test_result(forecast), run=str(run_dir), model=which, step=step)


def report_facts(run_dir: Path, meta: dict, metrics: list[dict]):
    """Test MSE and MAE against the ridge map and the seasonal naive forecast, the plots and the
    comparison in words, for ``rnnlab.html_report``."""
    facts = Facts(val_curve=("val_mse", "validation MSE (scaled)"))
    test = read_json(Path(run_dir) / "test.json")
    if test is not None:
        model, base = test["errors"]["model"], test["errors"]
        where = f"{test['horizon']} rows ahead, {test['windows']:,} test windows, scaled units"
        for name in ("ridge", "seasonal_naive"):
            ratio = model["mse"] / base[name]["mse"]
            facts.headline.append(
                Headline(
                    f"test MSE and MAE ({where})",
                    f"MSE {model['mse']:.4f}, MAE {model['mae']:.4f}",
                    f"{name.replace('_', ' ')}: MSE {base[name]['mse']:.4f}, MAE {base[name]['mae']:.4f}",
                    f"MSE ratio {ratio:.3f}",
                    "better" if ratio < 1 else "close" if ratio < 1.01 else "worse",
                )
            )
        facts.texts.append(("Against the baselines, in words", test["comparison_text"]))
    facts.figures += [
        ("Training and validation MSE; the dashed line is the ridge map's validation MSE", "loss.png"),
        ("Test windows: the lookback, the truth, the model and the baselines", "forecast.png"),
        ("Test MSE by horizon step, the model and the baselines", "error_by_step.png"),
    ]
    return facts


# --------------------------------------------------------------------------- the task, for the registry


def _frame_bytes(data) -> bytes:
    """``rnnlab.fit("series", data=...)``: a DataFrame (times as a column or the index), as a CSV
    whose numbers read back to the same bits."""
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_frame(str(data.name or "value"))
    if not isinstance(data, pd.DataFrame):
        raise UserError(f"series data= must be a pandas DataFrame with a time column, got {type(data).__name__}")
    frame = data
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis(frame.index.name or "date").reset_index()
    tables.load_table(frame, source="data=")  # the checks of a file, naming the DataFrame's row
    return frame.to_csv(index=False).encode("utf-8")


def _predict(model, csv: str | None = None, start: str | None = None, end: str | None = None) -> dict:
    """The next ``horizon`` rows of each target after the last ``lookback`` rows of ``csv`` (default:
    the run's own table) before ``end`` (exclusive; default: all of it), in the data's units, with
    repeat-last and seasonal naive beside them.  ``start`` is not used (the window is the last rows)."""
    import pandas as pd

    cfg = model.cfg
    layout, scaler = model.loaded.extras["layout"], model.loaded.extras["scaler"]
    data = csv or cfg.csv or tables.builtin_frame()
    table = tables.load_table(
        data, cfg.time_column or None, list(layout.columns), None if csv or cfg.csv else "the built-in series"
    )
    keep = len(table.values) if end is None else int(np.searchsorted(table.times, pd.Timestamp(end, tz="UTC")))
    if keep < layout.lookback:
        raise UserError(
            f"{table.source}: {keep} rows before {end or 'the end'}, fewer than the lookback {layout.lookback}"
        )
    window = scaler.transform(table.values[keep - layout.lookback : keep])[None]
    scaled = predict(model.trainer, layout, window, np.dtype(cfg.dtype))[0]  # [H, T]
    t = list(layout.targets)

    def own(values):  # scaled [H, T] -> {column: list in the data's units}
        values = values * scaler.std[t] + scaler.mean[t]
        return {layout.columns[c]: values[:, j].tolist() for j, c in enumerate(t)}

    origin = table.times[keep - 1]
    x = window[:, :, t]
    return {
        "origin": str(origin),
        "times": [str(origin + table.step * (i + 1)) for i in range(layout.horizon)],
        "forecast": own(scaled),
        "repeat_last": own(tables.repeat_last(x, layout.horizon)[0]),
        "seasonal_naive": own(tables.seasonal_naive(x, layout.horizon, cfg.season)[0]),
    }


def _onnx_graph(g, core, spec: ModelSpec, params: dict, meta: dict, extras: dict) -> tuple:
    """Windows in the data's units ``window`` ``[B, L, C]`` (the run's columns in order) in, the
    forecast ``[B, H, T]`` in the data's units out: the z-scoring, the window norm, the rows and
    their undoing all inside the graph (``rnnlab.tasks.definition.OnnxIO``)."""
    layout = Layout.from_dict(meta["layout"])
    mean, std = (np.asarray(meta["scaler"][k], np.float64) for k in ("mean", "std"))
    L, H, W, C = layout.lookback, layout.horizon, layout.segment, len(layout.columns)
    T, K = len(layout.targets), len(layout.inputs_only)
    inputs = [g.helper.make_tensor_value_info("window", g.elem, ["B", L, C])]
    x = g.op("Div", [g.op("Sub", ["window", g.const(mean)]), g.const(std)])
    shift = scale = None
    if layout.normalize == "last":
        shift = g.op("Slice", [x, g.ints([L - 1]), g.ints([L]), g.ints([1])])
    elif layout.normalize in ("mean", "revin"):
        shift = g.op("ReduceMean", [x], axes=[1], keepdims=1)
    if shift is not None:
        x = g.op("Sub", [x, shift])
    if layout.normalize == "revin":
        variance = g.op("ReduceMean", [g.op("Mul", [x, x])], axes=[1], keepdims=1)
        scale = g.op("Sqrt", [g.op("Add", [variance, g.const(REVIN_EPS)])])
        x = g.op("Div", [x, scale])
    own = g.op("Transpose", [g.op("Gather", [x, g.ints(list(layout.targets))], axis=2)], perm=[0, 2, 1])
    feats = g.op("Unsqueeze", [own, g.ints([2])])  # [B, T, 1, L]
    if K:  # the input-only columns beside every target
        others = g.op("Transpose", [g.op("Gather", [x, g.ints(list(layout.inputs_only))], axis=2)], perm=[0, 2, 1])
        others = g.op("Expand", [g.op("Unsqueeze", [others, g.ints([1])]), g.ints([1, T, 1, 1])])
        feats = g.op("Concat", [feats, others], axis=2)  # [B, T, 1 + K, L]
    feats = g.op("Reshape", [feats, g.ints([0, T, 1 + K, L // W, W])])
    feats = g.op("Transpose", [feats], perm=[0, 1, 3, 2, 4])
    rows = g.op("Reshape", [feats, g.ints([-1, L // W, (1 + K) * W])])
    y, h_out, c_out = core(rows)  # [B * T, H / W, W]
    y = g.op("Transpose", [g.op("Reshape", [y, g.ints([-1, T, H])])], perm=[0, 2, 1])  # [B, H, T]
    t_list = list(layout.targets)
    if scale is not None:
        y = g.op("Mul", [y, g.op("Gather", [scale, g.ints(t_list)], axis=2)])
    if shift is not None:
        y = g.op("Add", [y, g.op("Gather", [shift, g.ints(t_list)], axis=2)])
    g.op("Add", [g.op("Mul", [y, g.const(std[t_list])]), g.const(mean[t_list])], ["prediction"])
    outputs = [g.helper.make_tensor_value_info("prediction", g.elem, ["B", H, T])]
    return inputs, outputs, h_out, c_out


def _check_inputs(cfg: SeriesConfig) -> None:
    read_table(cfg)


def _demo_config(quick: bool) -> SeriesConfig:
    return SeriesConfig(epochs=4) if quick else SeriesConfig()


def _demo_intro(cfg: SeriesConfig) -> str:
    return (
        f"{cfg.cell} H={cfg.hidden_size} forecasting the built-in hourly table {cfg.horizon} rows ahead "
        f"({cfg.epochs} epochs, {cfg.backend} backend)"
    )


TASK = TaskDefinition(
    name="series",
    config_cls=SeriesConfig,
    help="forecast any multivariate series many steps ahead, against ridge and seasonal naive",
    objective="val MSE (scaled)",
    budget_fields=("epochs",),
    open_task=open_task,
    load_run=load_run,
    report_facts=report_facts,
    evaluate=lambda run_dir, options: evaluate_run(run_dir, "best"),
    sweep_space={
        **COMMON_SPACE,
        "cell": {"choices": ["gru_reset_after", "lstm", "rnn"]},
        "hidden_size": {"choices": [64, 128, 256]},
        "dropout": {"low": 0.0, "high": 0.5},
    },
    demo=_demo_config,
    demo_intro=_demo_intro,
    check_inputs=_check_inputs,
    api_data=ApiData("csv", "data.csv", _frame_bytes, "a pandas DataFrame with a time column or index"),
    onnx=OnnxIO(
        _onnx_graph,
        metadata=lambda meta, extras: {"rnnlab.layout": json.dumps(meta.get("layout"))},
        state=False,
    ),
    model_methods={"predict": _predict},
    forecaster=Forecaster(
        load_series=read_table,
        forecastable=series_backtest.forecastable,
        describe_series=series_backtest.describe_series,
        points_needed=series_backtest.needed_points,
        origin_config=series_backtest.origin_config,
        fit_facts=lambda fit_cfg, series, start, stop: {},
        load_run=load_run,
        fitted_points=lambda loaded: loaded.meta["table"]["rows"],
        origin_record=series_backtest.origin_record,
        record_schema=series_backtest.RECORD_SCHEMA,
        summarize=series_backtest.summarize,
        write_figures=series_backtest.write_figures,
        report_parts=series_backtest.report_parts,
        print_summary=series_backtest.print_summary,
    ),
)
