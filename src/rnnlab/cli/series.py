"""``rnnlab series ...``: the many-step forecaster's verbs (train, eval)."""

from __future__ import annotations

import json

from ..config import SeriesConfig
from ..tasks import TASKS
from .common import add_config_flags, add_run_flags, add_saved_run_flags, task_verbs, train_and_report


def add_verbs(tasks) -> None:
    """The ``series`` command and its verbs."""
    verbs = task_verbs(
        tasks,
        "series",
        TASKS["series"].help,
        "Forecast the target columns of any regular table --horizon rows ahead from --lookback rows "
        "(SegRNN's segment encoder and parallel decoder, each channel through shared weights), "
        "judged on the papers' MSE and MAE against repeat-last, seasonal naive and a ridge map.",
    )
    tr = verbs.add_parser(
        "train",
        usage="%(prog)s [options]",
        help="train (or --resume), then test against the baselines",
        description="Train on shuffled windows, keep the best epoch on validation MSE, then test it "
        "beside repeat-last, seasonal naive and the ridge map. Writes config.toml, metrics.jsonl, "
        "checkpoint.*, best.*, test.json, loss.png, forecast.png, error_by_step.png and report.html.",
    )
    add_config_flags(tr, SeriesConfig)
    add_run_flags(tr, "runs/series")

    ev = verbs.add_parser("eval", help="test a saved model on its run's test windows again")
    add_saved_run_flags(ev)
    ev.add_argument("--last", action="store_true", help="use the last checkpoint, not the best epoch")
    ev.add_argument("--json", action="store_true", help="print one JSON object")


def _print_test(test: dict) -> None:
    model = test["errors"]["model"]
    print(
        f"test ({test['windows']:,} windows, {test['horizon']} rows ahead): MSE {model['mse']:.4f} "
        f"MAE {model['mae']:.4f} (scaled); in the data's units MSE {model['mse_original']:.4g} "
        f"MAE {model['mae_original']:.4g}"
    )
    print(test["comparison_text"])


def _print_result(summary: dict) -> None:
    if summary["test"] is None:
        print(f"no test part (--test-fraction 0); best validation MSE {summary['best_val_loss']:.4f} (scaled)")
    else:
        _print_test(summary["test"])


def _series_train(args) -> int:
    return train_and_report("series", SeriesConfig, args, _print_result)


def _series_eval(args) -> int:
    from ..tasks import series

    result = series.evaluate_run(args.run, "checkpoint" if args.last else "best", args.backend)
    if args.json:
        print(json.dumps(result))
    else:
        _print_test(result)
    return 0


COMMANDS = {("series", "train"): _series_train, ("series", "eval"): _series_eval}
