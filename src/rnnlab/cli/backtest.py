"""``rnnlab TASK backtest``: rolling-origin evaluation, for every task that forecasts a series.

A task gets this verb by declaring a ``Forecaster`` in its definition
(``rnnlab.tasks.definition``); the command line adds it to that task's verbs (``cli/__init__``)
and runs ``rnnlab.backtest`` with the task's own config class.
"""

from __future__ import annotations

import argparse

from ..tasks import TASKS
from .common import add_config_flags, add_run_flags, config_from_args, positive_int


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


def add_verb(verbs, task) -> None:
    """The ``backtest`` verb of ``task`` (a ``TaskDefinition`` with a forecaster) in its ``verbs``."""
    fb = verbs.add_parser(
        "backtest",
        usage="%(prog)s [options]",
        help="rolling-origin evaluation: many forecast origins, each fitted on its past only",
        description="Fit the model at --origins forecast origins --stride points apart (each "
        "on the points before it only: scaler, model and best epoch), forecast from "
        "every point up to the next origin, and judge the pooled forecasts against the "
        "task's baselines (forecast: persistence and random walks, one step ahead; "
        "series: the ridge map, seasonal naive and repeat-last, --horizon rows ahead) "
        "with a block-bootstrap interval of the skill and a Diebold-Mariano test. "
        "Writes plan.json, origin-*/, backtest.json, backtest.png and report.html; run "
        "the same command again to continue a stopped backtest.",
    )
    add_config_flags(fb, task.config_cls)
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
        help="autocovariances in the Diebold-Mariano test's variance of one-step forecasts: 0 "
        "(default), a number, or auto (Newey-West's rule, for loss differences you believe "
        "autocorrelated); the output says which was used. Changing it on a finished backtest "
        "only summarizes it again. Many-step forecasts (series) always use H - 1 Bartlett lags",
    )


def run(args) -> int:
    from .. import backtest

    cfg, _ = config_from_args(TASKS[args.task].config_cls, args)
    settings = backtest.Settings(args.origins, args.stride or 0, args.retrain_every, args.workers, args.dm_lags)
    result = backtest.run_backtest(cfg, settings, args.out, force=args.force, quiet=args.quiet)
    if result["interrupted"]:
        print(
            f"stopped with {result['origins_left']} origin(s) left; run the same command again to continue "
            f"(finished origins in {result['backtest_dir']} are kept)"
        )
        return 143 if result.get("signal") == "SIGTERM" else 130  # 128 + the signal's number
    TASKS[args.task].forecaster.print_summary(result)
    return 0


COMMANDS = {(name, "backtest"): run for name, task in TASKS.items() if task.forecasts}
