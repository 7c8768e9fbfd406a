"""``rnnlab <task> <verb>``: argument parsing only; the work is in ``rnnlab.tasks``.

Every user mistake ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from . import __version__
from .cells import CELLS
from .config import (BACKEND_NAMES, PRESETS, PRUNERS, CharLMConfig, DenoiseConfig, ForecastConfig, describe_range,
                     flag, from_toml, in_range, settings_of)
from .errors import TrainingDiverged, UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus exit 2), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, minimum, inclusive):
    """An argparse type: ``kind`` (int/float) that is finite and > minimum (>= if inclusive)."""
    wanted = f"{'an integer' if kind is int else 'a number'} {'>=' if inclusive else '>'} {minimum}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        ok = value >= minimum if inclusive else value > minimum
        if not ok or value in (float("inf"), float("-inf")):  # NaN fails both comparisons
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    return parse


_positive_int = _number(int, 1, inclusive=True)
_non_negative_int = _number(int, 0, inclusive=True)
_positive_float = _number(float, 0, inclusive=False)
_non_negative_float = _number(float, 0, inclusive=True)


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _float_list(text):
    """'1e-4,3e-4' -> [0.0001, 0.0003], each > 0."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated numbers > 0, e.g. 1e-4,3e-4,1e-3")
    return [_positive_float(p) for p in parts]


def _flag_type(spec, default):
    """The argparse type of a setting: numbers checked against its range as they are parsed."""
    if spec.choices is not None or isinstance(default, str):
        return None
    kind = int if isinstance(default, int) and not isinstance(default, bool) else float
    wanted = describe_range(spec, kind)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        if kind is float and not math.isfinite(value) or not in_range(spec, value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    return parse


def _add_config_flags(parser, config_cls, skip=()) -> None:
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
        else:
            kwargs.update(type=_flag_type(spec, default), metavar=spec.metavar)
        groups[spec.group].add_argument(f"--{flag(name)}", *spec.aliases, **kwargs)


def _config_from_args(config_cls, args, preset: dict | None = None):
    """(config, overrides): the --config file (or defaults), then the preset, then explicit flags."""
    import dataclasses

    cfg = from_toml(config_cls, args.config) if args.config else config_cls()
    overrides = dict(preset or {})
    for name in settings_of(config_cls):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return dataclasses.replace(cfg, **overrides), overrides


def _add_run_flags(parser, default_out: str, resume: bool = True) -> None:
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE.toml", help="start from this config; flags override it")
    run.add_argument("--out", default=default_out, metavar="DIR", help=f"run directory (default {default_out})")
    if resume:
        run.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    run.add_argument("--force", action="store_true", help="replace a run already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar or per-eval lines")


RUN_HELP = "run directory written by `train` (or `import`)"


def _task_verbs(tasks, name: str, help_text: str, description: str):
    """The sub-parser group of one task's verbs (train, sample, eval, ...); a verb is required."""
    verbs = tasks.add_parser(name, help=help_text, description=description).add_subparsers(
        dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    return verbs


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnnlab", usage="rnnlab [-h] [--version] COMMAND ...",
                     description="Train small recurrent networks (vanilla RNN, GRU, LSTM) on NumPy, JAX or\n"
                                 "PyTorch, and measure them against honest baselines.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    # The command list is printed grouped (see _command_groups), not as argparse's one flat list.
    tasks = parser.add_subparsers(dest="task", metavar="COMMAND", parser_class=_Parser, help=argparse.SUPPRESS,
                                  prog="rnnlab")
    tasks.required = True
    verbs = _task_verbs(tasks, "charlm", "character-level language model", "Character-level language model.")

    tr = verbs.add_parser("train", usage="%(prog)s [options]", help="train (or --resume) a model",
                          description="Train a character-level language model. Writes config.toml, "
                                      "metrics.jsonl, checkpoint.*, best.*, samples.jsonl, loss.png and report.html "
                                      "into --out.")
    _add_config_flags(tr, CharLMConfig)
    tr.add_argument_group("preset").add_argument(
        "--preset", choices=sorted(PRESETS),
        help="min-char-rnn: the classic from-scratch exercise exactly (H=100, T=25, B=1, Adagrad 0.1, clip 5, "
             "summed loss, N(0,1)*0.01 weights)")
    _add_run_flags(tr, "runs/charlm")

    sa = verbs.add_parser("sample", help="generate text from a trained run")
    sa.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    sa.add_argument("--backend", choices=BACKEND_NAMES, help="run on this backend (default: the run's own)")
    sa.add_argument("--length", type=_non_negative_int, default=500, metavar="N",
                    help="characters to generate (default 500)")
    sa.add_argument("--temperature", type=_non_negative_float, default=1.0, metavar="X",
                    help="divides the logits; lower = more conservative, 0 = argmax (default 1)")
    sa.add_argument("--top-k", type=_non_negative_int, default=0, metavar="N",
                    help="sample among the N most likely characters (0 = all)")
    sa.add_argument("--prime", default="", metavar="TEXT", help="text to start from")
    sa.add_argument("--seed", type=_non_negative_int, default=0, metavar="N", help="sampling seed (default 0)")
    sa.add_argument("--best", action="store_true", help="use the best-on-validation model")

    ev = verbs.add_parser("eval", help="validation loss in nats/char and bits/char")
    ev.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    ev.add_argument("--backend", choices=BACKEND_NAMES, help="run on this backend (default: the run's own)")
    ev.add_argument("--text", metavar="FILE", help="evaluate on this file (default: the run's validation split)")
    ev.add_argument("--best", action="store_true", help="use the best-on-validation model")
    ev.add_argument("--json", action="store_true", help="print one JSON object")

    dverbs = _task_verbs(tasks, "denoise", "denoise an Ornstein-Uhlenbeck signal, against Kalman",
                         "Recover a clean OU signal from noisy observations with a Dense-ReLU-GRU-Dense model, "
                         "measured against the exact Kalman estimate for the same process.")
    dt = dverbs.add_parser("train", usage="%(prog)s [options]", help="train (or --resume), then test against Kalman",
                           description="Train on fresh sequences every step, then compare with the Kalman "
                                       "estimate on --test-sequences fresh sequences. Writes config.toml, "
                                       "metrics.jsonl, checkpoint.*, best.*, test.json, loss.png, traces.png and "
                                       "report.html.")
    _add_config_flags(dt, DenoiseConfig)
    _add_run_flags(dt, "runs/denoise")

    ds = dverbs.add_parser("search", usage="%(prog)s [options]", help="learning-rate search: one run per rate, curves, table, best rate",
                           description="Train one run per learning rate (same seed, same data), plot every "
                                       "training curve on one log-scale figure, print a table and name the "
                                       "rate with the lowest validation MSE.")
    ds.add_argument("--lrs", type=_float_list, default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2], metavar="LIST",
                    help="comma-separated learning rates (default 1e-4,3e-4,1e-3,3e-3,1e-2)")
    _add_config_flags(ds, DenoiseConfig, skip=("lr",))
    _add_run_flags(ds, "runs/denoise-search", resume=False)

    de = dverbs.add_parser("eval", help="test a saved model against Kalman on fresh sequences")
    de.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    de.add_argument("--backend", choices=BACKEND_NAMES, help="run on this backend (default: the run's own)")
    de.add_argument("--best", action="store_true", help="use the best-on-validation model")
    de.add_argument("--sequences", type=_positive_int, default=100_000, metavar="N",
                    help="fresh test sequences (default 100000)")
    de.add_argument("--seed", type=_non_negative_int, default=0, metavar="N",
                    help="seed of the fresh test sequences (default 0)")
    de.add_argument("--json", action="store_true", help="print one JSON object")

    fverbs = _task_verbs(tasks, "forecast", "forecast the next price of a series, against persistence",
                         "Forecast the next value of a price series from a window of past values (BTCUSDT "
                         "20-hour opens in the classic exercise), tested in price units against the "
                         "persistence forecast (next = last).")
    ft = fverbs.add_parser("train", usage="%(prog)s [options]", help="train (or --resume), then test against persistence",
                           description="Train for --epochs passes over the shuffled training windows, keep the "
                                       "best epoch on validation, then test it against persistence. Writes "
                                       "config.toml, metrics.jsonl (one row per epoch), checkpoint.*, best.*, "
                                       "test.json, loss.png, forecast.png and report.html.")
    _add_config_flags(ft, ForecastConfig)
    _add_run_flags(ft, "runs/forecast")

    fp = fverbs.add_parser("predict", help="forecast the value after the last window of a CSV",
                           description="Forecast the next value after the last --window points of --csv "
                                       "(binned on the run's grid), or of the run's own series.")
    fp.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    fp.add_argument("--backend", choices=BACKEND_NAMES, help="run on this backend (default: the run's own)")
    fp.add_argument("--csv", metavar="FILE", help="price CSV (default: the series the run was trained on)")
    fp.add_argument("--last", action="store_true", help="use the last checkpoint instead of the best epoch")
    fp.add_argument("--json", action="store_true", help="print one JSON object")

    ex = tasks.add_parser("export", help="write a run's model as min-char-rnn weights or a PyTorch state_dict",
                          description="Write the parameters of any run in a classic format: min-char-rnn "
                                      "(Wxh, Whh, Why, bh, by; a one-layer one-hot rnn) or the state_dict of "
                                      "nn.RNN/nn.GRU/nn.LSTM + nn.Linear. The file type follows --out: .npz, "
                                      ".pt/.pth (torch.save) or .safetensors.")
    ex.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    ex.add_argument("--best", action="store_true", help="export the best-on-validation model")
    ex.add_argument("--format", required=True, choices=("min-char-rnn", "torch"), help="classic format to write")
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write: .npz, .pt/.pth or .safetensors")
    ex.add_argument("--rnn-name", default="rnn", metavar="NAME", help="attribute name of the recurrent module "
                                                                     "in the state_dict (default rnn)")
    ex.add_argument("--fc-name", default="fc", metavar="NAME", help="attribute name of the nn.Linear (default fc)")
    ex.set_defaults(verb=None)

    sw = tasks.add_parser("sweep", help="hyperparameter sweep on Optuna (SQLite or PostgreSQL, many workers)",
                          description="Search hyperparameters with Optuna: each trial is a normal run in "
                                      "--out/trial_NNNN, bad trials are pruned from their validation losses, "
                                      "and the end writes trials.md, best.toml, history.png and importance.png. "
                                      "Start the same command on several machines with one --storage URL to "
                                      "share the study.")
    sweep_tasks = sw.add_subparsers(dest="verb", metavar="TASK", parser_class=_Parser)
    sweep_tasks.required = True
    for name, config_cls in (("charlm", CharLMConfig), ("denoise", DenoiseConfig), ("forecast", ForecastConfig)):
        st = sweep_tasks.add_parser(name, usage="%(prog)s [options]", help=f"sweep {name} runs",
                                    description=f"Sweep {name} runs. Training flags fix what is not searched.")
        group = st.add_argument_group("sweep")
        group.add_argument("--trials", type=_positive_int, default=20, metavar="N",
                           help="trials in the whole study, over all workers and machines (default 20)")
        group.add_argument("--study", metavar="NAME", help=f"study name (default {name}-sweep)")
        group.add_argument("--storage", metavar="URL", help="any SQLAlchemy URL, e.g. postgresql://user:pw@host/db "
                                                            "(default sqlite:///<out>/study.db)")
        group.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                           help="worker processes on this machine (default 1)")
        group.add_argument("--timeout-minutes", type=_non_negative_float, default=0.0, metavar="X",
                           help="start no new trial after X minutes (0 = no limit)")
        group.add_argument("--space", metavar="FILE.toml", help="search space, replacing the default "
                                                                "(see --print-space)")
        group.add_argument("--pruner", choices=PRUNERS, default="median",
                           help="stop bad trials early from their validation losses (default median)")
        group.add_argument("--print-space", action="store_true", help="print the search space as TOML and exit")
        group.add_argument("--heartbeat-seconds", type=_positive_int, default=10, metavar="S",
                           help="a worker silent for 3 S seconds has its trial failed and re-queued (default 10)")
        _add_config_flags(st, config_cls)
        run = st.add_argument_group("run")
        run.add_argument("--config", metavar="FILE.toml", help="base config of every trial; flags override it")
        run.add_argument("--out", metavar="DIR", help="sweep directory (default runs/<study>)")
        run.add_argument("--quiet", action="store_true", help="no per-trial lines")
        st.set_defaults(sweep_config=config_cls)

    im = tasks.add_parser("import", help="make a charlm run from min-char-rnn weights or a PyTorch state_dict",
                          description="Turn classic weights into a charlm run directory, so sample, eval, "
                                      "export and train --resume (fine-tuning) work on them. The file type "
                                      "follows --weights: .npz, .pt/.pth or .safetensors.")
    im.add_argument("--weights", required=True, metavar="FILE", help="weights file: .npz, .pt/.pth or .safetensors")
    im.add_argument("--format", required=True, choices=("min-char-rnn", "torch"), help="classic format of --weights")
    im.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    im.add_argument("--text", metavar="FILE", help="the corpus, for eval and fine-tuning (default: built-in)")
    im.add_argument("--chars", metavar="STRING", help="the vocabulary in the order of the model's one-hot rows "
                                                      "(default: the sorted characters of --text)")
    im.add_argument("--backend", choices=BACKEND_NAMES, default="numpy", help="backend of the run (default numpy)")
    im.add_argument("--rnn-name", default="rnn", metavar="NAME",
                    help="attribute name of the recurrent module in the state_dict (default rnn)")
    im.add_argument("--fc-name", default="fc", metavar="NAME", help="attribute name of the nn.Linear (default fc)")
    im.add_argument("--cell", choices=CELLS, help="the cell of a torch state_dict (default: the cell the file names, "
                                                  "else the one mapped to the module its shapes show)")
    im.add_argument("--force", action="store_true", help="replace a run already in --out")
    im.set_defaults(verb=None)

    rp = tasks.add_parser("report", help="write report.html for one run, or several runs side by side",
                          description="Rebuild a run's self-contained report.html (config, key metrics next to "
                                      "their baselines, loss curves, task plots, timing), or compare several "
                                      "runs on one page: a summary table, the settings that differ and their "
                                      "validation curves on one plot.")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `TASK train`")
    rp.add_argument("--out", metavar="FILE", help="where to write (default: RUN_DIR/report.html for one run, "
                                                  "./report.html for several)")
    rp.add_argument("--title", metavar="TEXT", help="page title (default: from the run names)")
    rp.set_defaults(verb=None)

    dm = tasks.add_parser("demo", help="train all three tasks on built-in data (~1.5 min) and write one report",
                          description="A character model (with samples before and after training), the OU "
                                      "denoiser next to the Kalman estimate and a forecaster next to "
                                      "persistence, on built-in data, in about 1.5 minutes on a 2-core "
                                      "laptop. Ends with a results table and OUT/report.html.")
    dm.add_argument("--out", default="runs/demo", metavar="DIR", help="demo directory (default runs/demo); "
                                                                     "its runs are replaced")
    dm.add_argument("--quick", action="store_true", help="tiny sizes: seconds instead of minutes")
    dm.add_argument("--quiet", action="store_true", help="no progress bars; only the table and the report path")
    dm.set_defaults(verb=None)

    parser.epilog = _command_groups(tasks)
    return parser


COMMAND_GROUPS = {"tasks": ("charlm", "denoise", "forecast"),
                  "tools": ("demo", "report", "sweep", "export", "import")}


def _command_groups(tasks) -> str:
    """The commands, grouped, with their one-line help."""
    helps = {a.dest: a.help for a in tasks._choices_actions}
    width = max(map(len, helps)) + 2
    lines = []
    for group, names in COMMAND_GROUPS.items():
        lines.append(f"{group}:")
        lines += [f"  {name.ljust(width)}{helps[name]}" for name in names]
        lines.append("")
    lines.append("`rnnlab COMMAND --help` explains a command; a task's verbs (train, eval, ...) each have their own "
                 "--help.")
    return "\n".join(lines)


def _import(args) -> int:
    from .tasks import charlm

    result = charlm.import_run(args.weights, args.format, args.out, args.text, args.chars, args.rnn_name,
                               args.fc_name, args.backend, args.force, cell=args.cell)
    spec = result["spec"]
    val = result["val_nats_per_char"]
    val_text = f"; validation {val:.4f} nats/char" if val is not None else ""
    print(f"imported a {spec['cell']} model (H={spec['hidden_size']}, {spec['num_layers']} layer(s), "
          f"{result['vocab_size']} characters) into {result['run_dir']}{val_text}")
    print(f"try: rnnlab charlm sample --run {result['run_dir']}")
    return 0


def _export(args) -> int:
    from . import interchange, runs

    runs.check_out_dir(Path(args.out).parent, "--out's directory")
    spec, params, _ = runs.load_model(args.run, "best" if args.best else "checkpoint")
    if args.format == "min-char-rnn":
        arrays = interchange.to_min_char_rnn(spec, params)
    else:
        arrays = interchange.to_torch_state_dict(spec, params, args.rnn_name, args.fc_name)
    path = interchange.save(args.out, arrays, cell=spec.cell)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"wrote {path} ({args.format}): {shapes}")
    return 0


def _resume_hint(task: str, summary: dict) -> int:
    """After Ctrl-C or SIGTERM: how to continue, and the conventional exit code of a program
    stopped by that signal (128 + its number)."""
    print(f"resume with: rnnlab {task} train --resume --out {summary['run_dir']}")
    return 143 if "SIGTERM" in (summary.get("stop_reason") or "") else 130


def _train(config_cls, args, preset: dict | None = None) -> dict | None:
    """The config from the flags, then ``runner.train_run`` here or as one process of a torchrun job
    (``rnnlab.distributed``); returns the summary on the process that reports (None on the others)."""
    import shutil

    from . import distributed, runs
    from .launch import launched_by_torchrun
    from .runner import train_run

    cfg, overrides = _config_from_args(config_cls, args, preset)
    if not launched_by_torchrun():
        return train_run(cfg, args.out, resume=args.resume, force=args.force, overrides=overrides, quiet=args.quiet)
    backend, batch_size, device = cfg.backend, cfg.batch_size, cfg.device
    if args.resume:  # the saved config decides the batch, and the backend and device unless given now
        saved = _saved_config(config_cls, args.out)
        resumed = runs.device_follows_backend(overrides)
        backend, batch_size = resumed.get("backend", saved.backend), saved.batch_size
        device = resumed.get("device", saved.device)
    shard = distributed.setup(backend, batch_size, device)
    out = distributed.working_dir(args.out, args.resume, runs.RUN_FILES)
    try:
        summary = train_run(cfg, out, resume=args.resume, force=args.force,
                            overrides=overrides, quiet=args.quiet or not shard.is_main)
    finally:
        distributed.teardown()
        if not shard.is_main:
            shutil.rmtree(out, ignore_errors=True)
    return summary if shard.is_main else None


def _saved_config(config_cls, out: str):
    from . import checkpoint, runs
    from .config import from_dict

    if not checkpoint.exists(Path(out)):
        raise UserError(f"--resume: no checkpoint in {out!r}; start a new run without --resume")
    _, meta = checkpoint.load(Path(out))
    try:
        return from_dict(config_cls, meta["config"], where=f"{out}/checkpoint.json")
    except KeyError as exc:
        raise runs.damaged(f"{out}/checkpoint.json", exc) from exc


def _charlm_train(args) -> int:
    summary = _train(CharLMConfig, args,
                     PRESETS[args.preset] if args.preset else None)
    if summary is None:
        return 0
    best = summary["best_val_loss"]
    best_text = f"; best validation {best:.4f} nats/char" if best is not None else ""
    print(f"{summary['stop_reason']} at step {summary['step']}{best_text}; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        return _resume_hint("charlm", summary)
    print(f"report: {summary['run_dir']}/report.html")
    return 0


def _charlm_sample(args) -> int:
    import numpy as np

    from .tasks import charlm

    loaded = charlm.load_run(args.run, "best" if args.best else "checkpoint", args.backend)
    trainer, vocab = loaded.trainer, loaded.extras["vocab"]
    text = charlm.sample_text(trainer, vocab, args.length, args.temperature, args.top_k, args.prime,
                              np.random.default_rng(args.seed))
    print(args.prime + text)
    return 0


def _charlm_eval(args) -> int:
    from .tasks import charlm

    result = charlm.evaluate_run(args.run, args.text, "best" if args.best else "checkpoint", args.backend)
    if args.json:
        print(json.dumps(result))
    else:
        skipped = result["unknown_chars_skipped"]
        note = f" ({skipped} characters outside the vocabulary skipped)" if skipped else ""
        print(f"{result['nats_per_char']:.4f} nats/char, {result['bits_per_char']:.4f} bits/char "
              f"on {result['chars']} characters of {result['text']}{note}")
    return 0


def _print_denoise_test(result: dict) -> None:
    from .tasks import denoise

    print(f"test on {result['test_sequences']:,} fresh sequences ({result['model']} model, step {result['step']}): "
          f"model MSE {result['model_mse']:.5f}, Kalman {denoise.ESTIMATOR_NAMES[result['target']]} MSE {result['kalman_mse']:.5f}, "
          f"mse_ratio_to_kalman {result['mse_ratio_to_kalman']:.4f}")
    print(result["comparison_text"])


def _denoise_train(args) -> int:
    summary = _train(DenoiseConfig, args)
    if summary is None:
        return 0
    print(f"{summary['stop_reason']} at step {summary['step']}; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        return _resume_hint("denoise", summary)
    _print_denoise_test(summary["test"])
    print(f"report: {summary['run_dir']}/report.html")
    return 0


def _denoise_search(args) -> int:
    from .lr_search import lr_search, search_table

    cfg, _ = _config_from_args(DenoiseConfig, args)
    result = lr_search(cfg, args.lrs, args.out, force=args.force, quiet=args.quiet)
    print(search_table(result))
    print(f"figure: {args.out}/lr_search.png; table: {args.out}/search.md")
    return 0


def _denoise_eval(args) -> int:
    from .tasks import denoise

    result = denoise.evaluate_run(args.run, "best" if args.best else "checkpoint", args.sequences, args.seed,
                                  args.backend)
    if args.json:
        print(json.dumps(result))
    else:
        _print_denoise_test(result)
    return 0


def _forecast_train(args) -> int:
    summary = _train(ForecastConfig, args)
    if summary is None:
        return 0
    print(f"{summary['stop_reason']} after {summary['epochs']:g} epochs; run saved in {summary['run_dir']}")
    if summary["interrupted"]:
        return _resume_hint("forecast", summary)
    test = summary["test"]
    print(f"test ({test['model']} model, epoch {test['epoch']:g}): RMSE {test['rmse']:,.2f} vs persistence "
          f"{test['persistence_rmse']:,.2f}, skill {test['skill']:+.4f}")
    print(test["comparison_text"])
    if test["target"] == "levels" and test["inputs_outside_training_range"] > 0.05:
        print("hint: prices left the training range; --target returns forecasts changes, which do not")
    print(f"report: {summary['run_dir']}/report.html")
    return 0


def _forecast_predict(args) -> int:
    from .tasks import forecast

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


def _sweep(args) -> int:
    from . import sweep
    from .tasks import TASKS

    task = TASKS[args.verb]
    base, _ = _config_from_args(task.config_cls, args)
    space = sweep.load_space(args.space) if args.space else sweep.DEFAULT_SPACES[args.verb]
    space = sweep.check_space(space, base, where=args.space or "default search space")
    if args.print_space:
        print(sweep.space_to_toml(space), end="")
        return 0
    if not any(getattr(base, f) for f in task.budget_fields):
        raise UserError(f"a sweep needs a budget per trial: set --{task.budget_fields[0].replace('_', '-')}")
    study = args.study or f"{args.verb}-sweep"
    settings = sweep.SweepSettings(task=args.verb, base_config=dataclasses.asdict(base), space=space,
                                   trials=args.trials, study=study, out=args.out or f"runs/{study}",
                                   storage=args.storage or "", pruner=args.pruner,
                                   timeout_minutes=args.timeout_minutes, heartbeat_seconds=args.heartbeat_seconds,
                                   quiet=args.quiet)
    result = sweep.run_sweep(settings, workers=args.workers)
    print(result["table"])
    counts = result["counts"]
    print(f"study {study}: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
          f"(storage {result['storage']})")
    if result["best"] is not None:
        best = result["best"]
        print(f"best: trial {best['number']}, {best['value']:.5g} {result['objective']}, " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()))
        print(f"files: {settings.out}/trials.md, best.toml, " + ", ".join(Path(p).name for p in result["plots"])
              + (", report.html" if result.get("report") else ""))
    return 0


def _report(args) -> int:
    from . import html_report

    path = html_report.write_report(args.run_dirs, args.out, args.title)
    print(f"wrote {path}")
    return 0


def _demo(args) -> int:
    from . import demo

    result = demo.run_demo(args.out, quick=args.quick, quiet=args.quiet)
    if args.quiet:
        print(demo.format_table(result["table"]))
        print(f"report: {result['report']}")
    return 0


COMMANDS = {("charlm", "train"): _charlm_train, ("charlm", "sample"): _charlm_sample,
            ("charlm", "eval"): _charlm_eval, ("denoise", "train"): _denoise_train,
            ("denoise", "search"): _denoise_search, ("denoise", "eval"): _denoise_eval,
            ("forecast", "train"): _forecast_train, ("forecast", "predict"): _forecast_predict,
            ("export", None): _export, ("import", None): _import, ("report", None): _report, ("demo", None): _demo,
            **{("sweep", name): _sweep for name in ("charlm", "denoise", "forecast")}}


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
        return (f"no space left to write{where}: {exc.strerror}; free some space (or lift the limit) and run the "
                "command again. A training run keeps its last complete checkpoint: continue it with --resume")
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
        return 2, (f"internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in rnnlab; please report it "
                   "with the command; RNNLAB_TRACEBACK=1 shows where)")
