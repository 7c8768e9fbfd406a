"""What every command's parser shares: one-line usage errors, checked number types, the flags a
config class generates, the run flags, and training from parsed flags (here or under torchrun)."""

from __future__ import annotations

import argparse
import math

from ..config import BACKEND_NAMES, describe_range, flag, from_toml, in_range, settings_of

RUN_HELP = "run directory written by `train` (or `import`)"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus exit 2), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind, minimum, inclusive):
    """An argparse type: ``kind`` (int/float) that is finite and > minimum (>= if inclusive)."""
    wanted = f"{'an integer' if kind is int else 'a number'} {'>=' if inclusive else '>'} {minimum}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        ok = value >= minimum if inclusive else value > minimum
        if not ok or value in (float("inf"), float("-inf")):  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    return parse


positive_int = number(int, 1, inclusive=True)
non_negative_int = number(int, 0, inclusive=True)
positive_float = number(float, 0, inclusive=False)
non_negative_float = number(float, 0, inclusive=True)


def finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def float_list(text):
    """'1e-4,3e-4' -> [0.0001, 0.0003], each > 0."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated numbers > 0, e.g. 1e-4,3e-4,1e-3")
    return [positive_float(p) for p in parts]


def flag_type(spec, default):
    """The argparse type of a setting: numbers checked against its range as they are parsed."""
    if spec.choices is not None or isinstance(default, str):
        return None
    kind = int if isinstance(default, int) and not isinstance(default, bool) else float
    wanted = describe_range(spec, kind)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if kind is float and not math.isfinite(value) or not in_range(spec, value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    return parse


def add_config_flags(parser, config_cls, skip=()) -> None:
    """One flag per setting of ``config_cls`` (``--hidden-size`` for ``hidden_size``), in argument
    groups, with the config's default shown in --help and the registry's choices."""
    groups = {}
    for name, (spec, default) in settings_of(config_cls).items():
        if name in skip:
            continue
        if spec.group not in groups:
            groups[spec.group] = parser.add_argument_group(spec.group)
        help_text = spec.help if default == "" else f"{spec.help} (default {default})"
        kwargs = dict(help=help_text, dest=name, default=None)
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
        elif isinstance(default, bool):  # --tie-weights / --no-tie-weights; None = not given
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=flag_type(spec, default), metavar=spec.metavar)
        groups[spec.group].add_argument(f"--{flag(name)}", *spec.aliases, **kwargs)
    for name, reason in getattr(config_cls, "REFUSED", {}).items():
        parser.add_argument(f"--{flag(name)}", action=_Refused, reason=reason)


class _Refused(argparse.Action):
    """A flag of another task: not in --help; given anyway, it is a one-line error with the reason."""

    def __init__(self, option_strings, dest, reason: str, **kwargs):
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.reason = reason

    def __call__(self, parser, namespace, values, option_string=None):
        given = f"{option_string} {values}" if values is not None else option_string
        parser.error(f"{given}: {self.reason}")


def config_from_args(config_cls, args, preset: dict | None = None):
    """(config, overrides): the --config file (or defaults), then the preset, then explicit flags."""
    import dataclasses

    cfg = from_toml(config_cls, args.config) if args.config else config_cls()
    overrides = dict(preset or {})
    for name in settings_of(config_cls):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return dataclasses.replace(cfg, **overrides), overrides


def add_run_flags(parser, default_out: str, resume: bool = True) -> None:
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE.toml", help="start from this config; flags override it")
    run.add_argument("--out", default=default_out, metavar="DIR", help=f"run directory (default {default_out})")
    if resume:
        run.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    run.add_argument("--force", action="store_true", help="replace a run already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-eval lines")


def add_saved_run_flags(parser) -> None:
    """--run and --backend of the verbs that use a saved model (sample, eval, predict)."""
    parser.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="run on this backend (default: the run's own)")


# Each task's group of verbs, by task name, so that verbs a task gets from a capability it declares
# (``backtest`` for a forecaster) can be added after its own (``cli/__init__``).
TASK_VERB_GROUPS: dict = {}


def task_verbs(tasks, name: str, help_text: str, description: str):
    """The sub-parser group of one task's verbs (train, sample, eval, ...); a verb is required."""
    verbs = tasks.add_parser(name, help=help_text, description=description).add_subparsers(
        dest="verb", metavar="VERB", parser_class=Parser
    )
    verbs.required = True
    TASK_VERB_GROUPS[name] = verbs
    return verbs


def train_from_args(config_cls, args, preset: dict | None = None) -> dict | None:
    """The config from the flags (``--config``, the preset, the flags given), then the run
    (``runner.train_job``: here, or as one process of a torchrun job); returns the summary on
    the process that reports (None on the others)."""
    from ..runner import train_job

    cfg, overrides = config_from_args(config_cls, args, preset)
    return train_job(cfg, args.out, resume=args.resume, force=args.force, overrides=overrides, quiet=args.quiet)


def train_and_report(task: str, config_cls, args, print_result, preset: dict | None = None) -> int:
    """``rnnlab TASK train``: the run (``train_from_args``), then why it stopped and where it is
    saved.  After Ctrl-C or SIGTERM: how to resume, and the exit code of a program stopped by that
    signal (128 + its number); otherwise ``print_result(summary)`` and the report's path."""
    summary = train_from_args(config_cls, args, preset)
    if summary is None:
        return 0
    print(f"{summary['stop_reason']} at step {summary['step']:,}; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        print(f"resume with: rnnlab {task} train --resume --out {summary['run_dir']}")
        return 143 if "SIGTERM" in (summary.get("stop_reason") or "") else 130
    print_result(summary)
    print(f"report: {summary['run_dir']}/report.html")
    return 0
