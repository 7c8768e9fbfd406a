"""``rnnlab forecast ...``: the price forecaster's verbs (train, backtest, predict)."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import ForecastConfig
from ..tasks import TASKS
from .common import (
    add_config_flags,
    add_run_flags,
    add_saved_run_flags,
    config_from_args,
    positive_int,
    resume_hint,
    task_verbs,
    train_from_args,
)


def add_verbs(tasks) -> None:
    """The ``forecast`` command and its verbs.

    Long on purpose: the verbs and their flags, one after another; split, one command's flags would
    be scattered.
    """
    fverbs = task_verbs(
        tasks,
        "forecast",
        TASKS["forecast"].help,
        "Forecast the next value of a price series from a window of past values (BTCUSDT "
        "20-hour opens in the classic exercise), tested in price units against the "
        "persistence forecast (next = last).",
    )
    ft = fverbs.add_parser(
        "train",
        usage="%(prog)s [options]",
        help="train (or --resume), then test against persistence",
        description="Train for --epochs passes over the shuffled training windows, keep the "
        "best epoch on validation, then test it against persistence. Writes "
        "config.toml, metrics.jsonl (one row per epoch), checkpoint.*, best.*, "
        "test.json, loss.png, forecast.png and report.html.",
    )
    add_config_flags(ft, ForecastConfig)
    add_run_flags(ft, "runs/forecast")

    fb = fverbs.add_parser(
        "backtest",
        usage="%(prog)s [options]",
        help="rolling-origin evaluation: many forecast origins, each fitted on its past only",
        description="Fit the model at --origins forecast origins --stride points apart (each "
        "on the points before it only: scaler, model and best epoch), forecast "
        "one step ahead every point up to the next origin, and judge the pooled "
        "forecasts against persistence (skill with a block-bootstrap interval, "
        "Diebold-Mariano test, MASE). Writes plan.json, origin-*/, "
        "backtest.json, backtest.png and report.html; run the same command "
        "again to continue a stopped backtest.",
    )
    add_config_flags(fb, ForecastConfig)
    add_run_flags(fb, "runs/backtest", resume=False)
    bt = fb.add_argument_group("backtest")
    bt.add_argument("--origins", type=positive_int, default=10, metavar="N", help="forecast origins (default 10)")
    bt.add_argument(
        "--stride",
        type=positive_int,
        default=None,
        metavar="S",
        help="points between origins (default: the origins share the last --test-fraction of the points)",
    )
    bt.add_argument(
        "--retrain-every",
        type=positive_int,
        default=1,
        metavar="K",
        help="fit at every K-th origin and reuse that fit (scaler included) in between (default 1)",
    )
    bt.add_argument(
        "--workers", type=positive_int, default=1, metavar="N", help="processes fitting origins at once (default 1)"
    )
    bt.add_argument(
        "--dm-lags",
        type=dm_lags,
        default=0,
        metavar="K",
        help="autocovariances in the Diebold-Mariano test's variance: 0 (default, as for one-step "
        "forecasts), a number, or auto (Newey-West's rule, for loss differences you believe "
        "autocorrelated); the output says which was used. Changing it on a finished backtest "
        "only summarizes it again",
    )

    fp = fverbs.add_parser(
        "predict",
        help="forecast the value after the last window of a CSV",
        description="Forecast the next value after the last --window points of --csv "
        "(binned on the run's grid), or of the run's own series.",
    )
    add_saved_run_flags(fp)
    fp.add_argument("--csv", metavar="FILE", help="price CSV (default: the series the run was trained on)")
    fp.add_argument("--start", metavar="DATE", help="first date of the CSV's range (default: its first row)")
    fp.add_argument(
        "--end",
        metavar="DATE",
        help="end of the range, exclusive: forecast the bin after the last one before it (default: the CSV's last row)",
    )
    fp.add_argument("--last", action="store_true", help="use the last checkpoint instead of the best epoch")
    fp.add_argument("--json", action="store_true", help="print one JSON object")


def dm_lags(text: str):
    """``--dm-lags``: a whole number >= 0 or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or 'auto', got {text!r}")
    return value


def _forecast_train(args) -> int:
    summary = train_from_args(ForecastConfig, args)
    if summary is None:
        return 0
    print(f"{summary['stop_reason']} after {summary['epochs']:g} epochs; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        return resume_hint("forecast", summary)
    test = summary["test"]
    if test is None:
        skill = 1.0 - summary["best_val_loss"] ** 0.5  # val_loss is (RMSE / persistence RMSE)^2
        print(f"no test part (--test-fraction 0); best validation skill {skill:+.4f} against persistence")
        print(f"report: {summary['run_dir']}/report.html")
        return 0
    print(
        f"test ({test['model']} model, epoch {test['epoch']:g}): RMSE {test['rmse']:,.2f} vs persistence "
        f"{test['persistence_rmse']:,.2f}, skill {test['skill']:+.4f}"
    )
    print(test["comparison_text"])
    if test["target"] == "levels" and test["inputs_outside_training_range"] > 0.05:
        print("hint: prices left the training range; --target returns forecasts changes, which do not")
    print(f"report: {summary['run_dir']}/report.html")
    return 0


def _forecast_backtest(args) -> int:
    from .. import backtest

    cfg, _ = config_from_args(ForecastConfig, args)
    settings = backtest.Settings(args.origins, args.stride or 0, args.retrain_every, args.workers, args.dm_lags)
    result = backtest.run_backtest(cfg, settings, args.out, force=args.force, quiet=args.quiet)
    if result["interrupted"]:
        print(
            f"stopped with {result['origins_left']} origin(s) left; run the same command again to continue "
            f"(finished origins in {result['backtest_dir']} are kept)"
        )
        return 130
    backtest.print_summary(result)
    return 0


def _forecast_predict(args) -> int:
    from ..model import load

    model = load(args.run, "checkpoint" if args.last else "best", args.backend)
    model.expect_task("forecast", "forecast predict")
    result = model.predict(args.csv, args.start, args.end)
    if args.json:
        print(json.dumps(result))
        return 0
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"next {result['every']} value after {result['last_time'][:16]} (bin starting {result['next_time'][:16]}): "
        f"{result['forecast']:,.2f} ({result['change_percent']:+.2f}% from the last value "
        f"{result['last_price']:,.2f}, which is the persistence forecast)"
    )
    walk = result["random_walk_interval_80"]
    if "interval_80" in result:
        (low, high), (low95, high95) = result["interval_80"], result["interval_95"]
        print(f"80% interval {low:,.2f} to {high:,.2f}; 95% interval {low95:,.2f} to {high95:,.2f}")
    print(
        f"a random walk with the volatility known now ({100 * result['ewma_volatility']:.2f}% per step, "
        f"exponentially weighted) gives 80% {walk[0]:,.2f} to {walk[1]:,.2f}"
    )
    return 0


COMMANDS = {
    ("forecast", "train"): _forecast_train,
    ("forecast", "backtest"): _forecast_backtest,
    ("forecast", "predict"): _forecast_predict,
}
