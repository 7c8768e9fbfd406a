"""``rnnlab forecast ...``: the price forecaster's verbs (train, predict; ``backtest`` comes with
every task that forecasts, from ``cli/backtest.py``)."""

from __future__ import annotations

import json
import sys

from ..config import ForecastConfig
from ..tasks import TASKS
from .common import (
    add_config_flags,
    add_run_flags,
    add_saved_run_flags,
    task_verbs,
    train_and_report,
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


def _print_result(summary: dict) -> None:
    test = summary["test"]
    if test is None:
        skill = 1.0 - summary["best_val_loss"] ** 0.5  # val_loss is (RMSE / persistence RMSE)^2
        print(f"no test part (--test-fraction 0); best validation skill {skill:+.4f} against persistence")
        return
    print(
        f"test ({test['model']} model, epoch {test['epoch']:g}): RMSE {test['rmse']:,.2f} vs persistence "
        f"{test['persistence_rmse']:,.2f}, skill {test['skill']:+.4f}"
    )
    print(test["comparison_text"])
    if test["target"] == "levels" and test["inputs_outside_training_range"] > 0.05:
        print("hint: prices left the training range; --target returns forecasts changes, which do not")


def _forecast_train(args) -> int:
    return train_and_report("forecast", ForecastConfig, args, _print_result)


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
    ("forecast", "predict"): _forecast_predict,
}
