"""``rnnlab denoise ...``: the OU denoiser's verbs (train, search, eval)."""

from __future__ import annotations

import json

from ..config import DenoiseConfig
from ..tasks import TASKS
from .common import (
    add_config_flags,
    add_run_flags,
    add_saved_run_flags,
    config_from_args,
    float_list,
    non_negative_int,
    positive_int,
    task_verbs,
    train_and_report,
)


def add_verbs(tasks) -> None:
    """The ``denoise`` command and its verbs."""
    dverbs = task_verbs(
        tasks,
        "denoise",
        TASKS["denoise"].help,
        "Recover a clean OU signal from noisy observations with a Dense-ReLU-GRU-Dense model, "
        "measured against the exact Kalman estimate for the same process.",
    )
    dt = dverbs.add_parser(
        "train",
        usage="%(prog)s [options]",
        help="train (or --resume), then test against Kalman",
        description="Train on fresh sequences every step, then compare with the Kalman "
        "estimate on --test-sequences fresh sequences. Writes config.toml, "
        "metrics.jsonl, checkpoint.*, best.*, test.json, loss.png, traces.png and "
        "report.html.",
    )
    add_config_flags(dt, DenoiseConfig)
    add_run_flags(dt, "runs/denoise")

    ds = dverbs.add_parser(
        "search",
        usage="%(prog)s [options]",
        help="learning-rate search: one run per rate, curves, table, best rate",
        description="Train one run per learning rate (same seed, same data), plot every "
        "training curve on one log-scale figure, print a table and name the "
        "rate with the lowest validation MSE.",
    )
    ds.add_argument(
        "--lrs",
        type=float_list,
        default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        metavar="LIST",
        help="comma-separated learning rates (default 1e-4,3e-4,1e-3,3e-3,1e-2)",
    )
    add_config_flags(ds, DenoiseConfig, skip=("lr",))
    add_run_flags(ds, "runs/denoise-search", resume=False)

    de = dverbs.add_parser("eval", help="test a saved model against Kalman on fresh sequences")
    add_saved_run_flags(de)
    de.add_argument("--best", action="store_true", help="use the best-on-validation model")
    de.add_argument(
        "--sequences", type=positive_int, default=100_000, metavar="N", help="fresh test sequences (default 100000)"
    )
    de.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="N", help="seed of the fresh test sequences (default 0)"
    )
    de.add_argument("--json", action="store_true", help="print one JSON object")


def _print_denoise_test(result: dict) -> None:
    from ..tasks import denoise

    print(
        f"test on {result['test_sequences']:,} fresh sequences ({result['model']} model, step {result['step']}): "
        f"model MSE {result['model_mse']:.5f}, Kalman {denoise.ESTIMATOR_NAMES[result['target']]} MSE {result['kalman_mse']:.5f}, "
        f"mse_ratio_to_kalman {result['mse_ratio_to_kalman']:.4f}"
    )
    print(result["comparison_text"])


def _denoise_train(args) -> int:
    return train_and_report("denoise", DenoiseConfig, args, lambda summary: _print_denoise_test(summary["test"]))


def _denoise_search(args) -> int:
    from ..lr_search import lr_search, search_table

    cfg, _ = config_from_args(DenoiseConfig, args)
    result = lr_search(cfg, args.lrs, args.out, force=args.force, quiet=args.quiet)
    print(search_table(result))
    print(f"figure: {args.out}/lr_search.png; table: {args.out}/search.md")
    return 0


def _denoise_eval(args) -> int:
    from ..tasks import denoise

    result = denoise.evaluate_run(
        args.run, "best" if args.best else "checkpoint", args.sequences, args.seed, args.backend
    )
    if args.json:
        print(json.dumps(result))
    else:
        _print_denoise_test(result)
    return 0


COMMANDS = {
    ("denoise", "train"): _denoise_train,
    ("denoise", "search"): _denoise_search,
    ("denoise", "eval"): _denoise_eval,
}
