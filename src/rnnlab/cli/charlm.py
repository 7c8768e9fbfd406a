"""``rnnlab charlm ...``: the character-level language model's verbs (prepare, train, sample, eval)."""

from __future__ import annotations

import json

from ..config import PRESETS, CharLMConfig
from ..tasks import TASKS
from .common import (
    add_config_flags,
    add_run_flags,
    add_saved_run_flags,
    flag_type,
    non_negative_float,
    non_negative_int,
    task_verbs,
    train_and_report,
)


def add_verbs(tasks) -> None:
    """The ``charlm`` command and its verbs.

    Long on purpose: the verbs and their flags, one after another; split, one command's flags would
    be scattered.
    """
    verbs = task_verbs(tasks, "charlm", TASKS["charlm"].help, "Character-level language model.")

    tr = verbs.add_parser(
        "train",
        usage="%(prog)s [options]",
        help="train (or --resume) a model",
        description="Train a character-level language model. Writes config.toml, "
        "metrics.jsonl, checkpoint.*, best.*, samples.jsonl, loss.png and report.html "
        "into --out.",
    )
    add_config_flags(tr, CharLMConfig)
    tr.add_argument_group("preset").add_argument(
        "--preset",
        choices=sorted(PRESETS),
        metavar="NAME",
        help="start from named settings, flags given beside it win (docs/charlm.md lists each preset's settings "
        "and measured results): "
        + "; ".join(
            f"{name}: {preset.about}" + (f" ({preset.assumption()})" if preset.budget_seconds else "")
            for name, preset in PRESETS.items()
        ),
    )
    add_run_flags(tr, "runs/charlm")

    pr = verbs.add_parser(
        "prepare",
        help="turn a text of any size into memory-mapped ids for --data",
        description="Read --text (a UTF-8 file, a directory of them joined in sorted path order, "
        ".gz/.xz files, or - for standard input) in chunks with bounded memory, and "
        "write train.bin and val.bin (character ids of the smallest unsigned type "
        "that holds the training part's vocabulary) and manifest.json into --out. "
        "Train on it with `charlm train --data DIR`. --verify DIR re-hashes a "
        "prepared directory against its manifest.",
    )
    pr.add_argument("--text", metavar="FILE_OR_DIR", help="the corpus: a file, a directory, or - (standard input)")
    pr.add_argument("--out", metavar="DIR", help="a new (or empty) directory for the prepared data")
    spec, default = CharLMConfig.__dataclass_fields__["val_fraction"].metadata["setting"], 0.1
    pr.add_argument(
        "--val-fraction",
        type=flag_type(spec, default),
        default=default,
        metavar="X",
        help="tail of the text held out for validation (default 0.1)",
    )
    pr.add_argument("--verify", metavar="DIR", help="instead: re-hash DIR's files against its manifest")
    pr.add_argument("--quiet", action="store_true", help="no progress bars")

    sa = verbs.add_parser("sample", help="generate text from a trained run")
    add_saved_run_flags(sa)
    sa.add_argument(
        "--length", type=non_negative_int, default=500, metavar="N", help="characters to generate (default 500)"
    )
    sa.add_argument(
        "--temperature",
        type=non_negative_float,
        default=1.0,
        metavar="X",
        help="divides the logits; lower = more conservative, 0 = argmax (default 1)",
    )
    sa.add_argument(
        "--top-k",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="sample among the N most likely characters (0 = all)",
    )
    sa.add_argument("--prime", default="", metavar="TEXT", help="text to start from")
    sa.add_argument("--seed", type=non_negative_int, default=0, metavar="N", help="sampling seed (default 0)")
    sa.add_argument("--best", action="store_true", help="use the best-on-validation model")

    ev = verbs.add_parser("eval", help="validation loss in nats/char and bits/char")
    add_saved_run_flags(ev)
    ev.add_argument("--text", metavar="FILE", help="evaluate on this file (default: the run's validation split)")
    ev.add_argument("--best", action="store_true", help="use the best-on-validation model")
    ev.add_argument("--json", action="store_true", help="print one JSON object")


def _print_best(summary: dict) -> None:
    if summary["best_val_loss"] is not None:
        print(f"best validation {summary['best_val_loss']:.4f} nats/char")


def _charlm_train(args) -> int:
    preset = PRESETS[args.preset].settings if args.preset else None
    return train_and_report("charlm", CharLMConfig, args, _print_best, preset)


def _charlm_sample(args) -> int:
    from ..model import load

    model = load(args.run, "best" if args.best else "checkpoint", args.backend)
    model.expect_task("charlm", "charlm sample")
    print(args.prime + model.sample(args.length, args.prime, args.temperature, args.top_k, args.seed))
    return 0


def _charlm_eval(args) -> int:
    from ..tasks import charlm

    result = charlm.evaluate_run(args.run, args.text, "best" if args.best else "checkpoint", args.backend)
    if args.json:
        print(json.dumps(result))
    else:
        skipped = result["unknown_chars_skipped"]
        note = f" ({skipped} characters outside the vocabulary skipped)" if skipped else ""
        print(
            f"{result['nats_per_char']:.4f} nats/char, {result['bits_per_char']:.4f} bits/char "
            f"on {result['chars']} characters of {result['text']}{note}"
        )
    return 0


def _charlm_prepare(args) -> int:
    from ..data import corpus
    from ..errors import UserError

    if args.verify:
        counts = corpus.verify(args.verify)
        print(
            f"{args.verify}: train.bin ({counts['train']:,} ids) and val.bin ({counts['val']:,} ids) match "
            "their checksums"
        )
        return 0
    if not args.text or not args.out:
        raise UserError("charlm prepare needs --text FILE_OR_DIR and --out DIR (or --verify DIR)")
    m = corpus.prepare(args.text, args.out, args.val_fraction, progress=not args.quiet)
    skipped = m["files_skipped_not_text"]
    note = f"; {skipped} file(s) skipped: not UTF-8 text" if skipped else ""
    print(
        f"prepared {m['chars']:,} characters from {m['files']} file(s){note}: {m['train']['ids']:,} training and "
        f"{m['val']['ids']:,} validation ids ({m['dtype']}, {len(m['vocab'])} characters) in {args.out}"
    )
    print(f"train with: rnnlab charlm train --data {args.out}")
    return 0


COMMANDS = {
    ("charlm", "prepare"): _charlm_prepare,
    ("charlm", "train"): _charlm_train,
    ("charlm", "sample"): _charlm_sample,
    ("charlm", "eval"): _charlm_eval,
}
