"""``rnnlab <command>``: argument parsing only; the work is in the modules underneath.

One module per task registers its verbs (``cli/<task name>.py``, found through the task
registry) and one the tools (``tools``); what their parsers share is in ``common``.  Every failure ends in one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import TrainingDiverged, UserError
from ..tasks import TASKS
from . import backtest, tools
from .common import TASK_VERB_GROUPS, Parser

# Each task's verbs live in rnnlab/cli/<task name>.py (add_verbs and COMMANDS); found through the registry.
TASK_VERBS = [importlib.import_module(f"rnnlab.cli.{name}") for name in TASKS]
COMMANDS = {
    **{key: run for module in TASK_VERBS for key, run in module.COMMANDS.items()},
    **backtest.COMMANDS,
    **tools.COMMANDS,
}
COMMAND_GROUPS = {"tasks": tuple(TASKS), "tools": ("demo", "report", "sweep", "export", "import")}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rnnlab",
        usage="rnnlab [-h] [--version] COMMAND ...",
        description="Train small recurrent networks (vanilla RNN, GRU, LSTM) on NumPy, JAX or\n"
        "PyTorch, and measure them against honest baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    # The command list is printed grouped (see _command_groups), not as argparse's one flat list.
    tasks = parser.add_subparsers(
        dest="task", metavar="COMMAND", parser_class=Parser, help=argparse.SUPPRESS, prog="rnnlab"
    )
    tasks.required = True
    for module in TASK_VERBS:
        module.add_verbs(tasks)
    for name, task in TASKS.items():
        if task.forecasts:  # a capability the task declares: rolling-origin backtests
            backtest.add_verb(TASK_VERB_GROUPS[name], task)
    tools.add_commands(tasks)
    parser.epilog = _command_groups(tasks)
    return parser


MAX_ERROR_CHARS = 600  # an error quoting a huge input (a 10 MB CSV line) shows its start


def _one_line(message: str) -> str:
    message = " ".join(str(message).split())
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + f"... ({len(message):,} characters in all)"
    return message


def _os_error_text(exc: OSError) -> str:
    """One line for an operating-system error, naming the file and saying what to do."""
    import errno

    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (
            f"no space left to write{where}: {exc.strerror}; free some space (or lift the limit) and run the "
            "command again. A training run keeps its last complete checkpoint: continue it with --resume"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write or read{where}: {exc.strerror}; choose a path you may write (e.g. another --out)"
    return f"{exc.strerror or exc}{where}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure ends in one line on stderr and exit code 2 (130 after
    Ctrl-C).  Set RNNLAB_TRACEBACK=1 to see the traceback of an unexpected error."""
    import warnings

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0): a code, as from every path
        return exc.code if isinstance(exc.code, int) else 2
    # Warnings from the libraries underneath are kept until the command ends: on success each
    # is one line, on failure the error's one line is all the user sees.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        code, error = _run(args)
    if error is not None:
        print(f"rnnlab: {error}", file=sys.stderr)
    else:
        seen = set()
        for w in caught:
            text = _one_line(f"{w.category.__name__}: {w.message}")
            if text not in seen:
                seen.add(text)
                print(f"rnnlab: warning: {text}", file=sys.stderr)
    return code


def _run(args) -> tuple[int, str | None]:
    """(exit code, error line or None) of one parsed command."""
    import os

    try:
        return COMMANDS[(args.task, args.verb)](args), None
    except TrainingDiverged as exc:
        return 2, f"training stopped: {_one_line(exc)}"
    except UserError as exc:
        return 2, f"error: {_one_line(exc)}"
    except KeyboardInterrupt:
        return 130, "interrupted"
    except BrokenPipeError:  # e.g. `rnnlab charlm sample ... | head`
        return 0, None
    except OSError as exc:
        if os.environ.get("RNNLAB_TRACEBACK"):
            raise
        return 2, f"error: {_one_line(_os_error_text(exc))}"
    except MemoryError:
        return 2, "error: out of memory; lower --batch-size or --hidden-size, or use a smaller input"
    except Exception as exc:  # a bug: still one line, with the way to see where
        if os.environ.get("RNNLAB_TRACEBACK"):
            raise
        return 2, (
            f"internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in rnnlab; please report it "
            "with the command; RNNLAB_TRACEBACK=1 shows where)"
        )


def _command_groups(tasks) -> str:
    """The commands, grouped, with their one-line help."""
    helps = {a.dest: a.help for a in tasks._choices_actions}
    width = max(map(len, helps)) + 2
    lines = []
    for group, names in COMMAND_GROUPS.items():
        lines.append(f"{group}:")
        lines += [f"  {name.ljust(width)}{helps[name]}" for name in names]
        lines.append("")
    lines.append(
        "`rnnlab COMMAND --help` explains a command; a task's verbs (train, eval, ...) each have their own --help."
    )
    return "\n".join(lines)
