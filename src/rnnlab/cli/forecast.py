"""``rnnlab forecast ...``: the price forecaster's verbs (train, predict)."""

from __future__ import annotations

import json
import sys

from ..config import ForecastConfig
from ..tasks import TASKS
from .common import add_config_flags, add_run_flags, add_saved_run_flags, resume_hint, task_verbs, train_from_args


def add_verbs(tasks) -> None:
    """The ``forecast`` command and its verbs."""
    fverbs = task_verbs(tasks, "forecast", TASKS["forecast"].help,
                         "Forecast the next value of a price series from a window of past values (BTCUSDT "
                         "20-hour opens in the classic exercise), tested in price units against the "
                         "persistence forecast (next = last).")
    ft = fverbs.add_parser("train", usage="%(prog)s [options]", help="train (or --resume), then test against persistence",
                           description="Train for --epochs passes over the shuffled training windows, keep the "
                                       "best epoch on validation, then test it against persistence. Writes "
                                       "config.toml, metrics.jsonl (one row per epoch), checkpoint.*, best.*, "
                                       "test.json, loss.png, forecast.png and report.html.")
    add_config_flags(ft, ForecastConfig)
    add_run_flags(ft, "runs/forecast")

    fp = fverbs.add_parser("predict", help="forecast the value after the last window of a CSV",
                           description="Forecast the next value after the last --window points of --csv "
                                       "(binned on the run's grid), or of the run's own series.")
    add_saved_run_flags(fp)
    fp.add_argument("--csv", metavar="FILE", help="price CSV (default: the series the run was trained on)")
    fp.add_argument("--last", action="store_true", help="use the last checkpoint instead of the best epoch")
    fp.add_argument("--json", action="store_true", help="print one JSON object")


def _forecast_train(args) -> int:
    summary = train_from_args(ForecastConfig, args)
    if summary is None:
        return 0
    print(f"{summary['stop_reason']} after {summary['epochs']:g} epochs; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        return resume_hint("forecast", summary)
    test = summary["test"]
    print(f"test ({test['model']} model, epoch {test['epoch']:g}): RMSE {test['rmse']:,.2f} vs persistence "
          f"{test['persistence_rmse']:,.2f}, skill {test['skill']:+.4f}")
    print(test["comparison_text"])
    if test["target"] == "levels" and test["inputs_outside_training_range"] > 0.05:
        print("hint: prices left the training range; --target returns forecasts changes, which do not")
    print(f"report: {summary['run_dir']}/report.html")
    return 0


def _forecast_predict(args) -> int:
    from ..tasks import forecast

    result = forecast.predict_next(args.run, args.csv, "checkpoint" if args.last else "best", args.backend)
    if args.json:
        print(json.dumps(result))
        return 0
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"next {result['every']} value after {result['last_time'][:16]} (bin starting {result['next_time'][:16]}): "
          f"{result['forecast']:,.2f} ({result['change_percent']:+.2f}% from the last value "
          f"{result['last_price']:,.2f}, which is the persistence forecast)")
    return 0


COMMANDS = {("forecast", "train"): _forecast_train, ("forecast", "predict"): _forecast_predict}
