"""``rnnlab demo | report | sweep | export | import``: the tools beside the tasks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..cells import CELLS
from ..config import BACKEND_NAMES, PRUNERS
from ..errors import UserError
from ..tasks import TASKS
from .common import RUN_HELP, Parser, add_config_flags, config_from_args, non_negative_float, positive_int


def add_commands(tasks) -> None:
    """The tool commands.

    Long on purpose: the tools' commands and their flags, one after another; split, one command's
    flags would be scattered.
    """
    ex = tasks.add_parser(
        "export",
        help="write a run's model as ONNX, min-char-rnn weights or a PyTorch state_dict",
        description="Write any run's model as an ONNX graph (every cell and task; opset 17; "
        "state in and out, batch and time dynamic; a forecast graph takes raw "
        "prices and returns the next price), or its parameters in a classic "
        "format: min-char-rnn (Wxh, Whh, Why, bh, by; a one-layer one-hot rnn) or "
        "the state_dict of nn.RNN/nn.GRU/nn.LSTM + nn.Linear. For the classic "
        "formats the file type follows --out: .npz, .pt/.pth (torch.save) or "
        ".safetensors.",
    )
    ex.add_argument("--run", required=True, metavar="DIR", help=RUN_HELP)
    ex.add_argument("--best", action="store_true", help="export the best-on-validation model")
    ex.add_argument("--format", required=True, choices=("onnx", "min-char-rnn", "torch"), help="format to write")
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write: .onnx, .npz, .pt/.pth or .safetensors")
    ex.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="onnx: the graph's float type (default float32; onnxruntime runs RNN, GRU and LSTM "
        "operators in float32 only)",
    )
    ex.add_argument(
        "--rnn-name",
        default="rnn",
        metavar="NAME",
        help="attribute name of the recurrent module in the state_dict (default rnn)",
    )
    ex.add_argument("--fc-name", default="fc", metavar="NAME", help="attribute name of the nn.Linear (default fc)")
    ex.set_defaults(verb=None)

    sw = tasks.add_parser(
        "sweep",
        help="hyperparameter sweep on Optuna (SQLite or PostgreSQL, many workers)",
        description="Search hyperparameters with Optuna: each trial is a normal run in "
        "--out/trial_NNNN, bad trials are pruned from their validation losses, "
        "and the end writes trials.md, best.toml, history.png and importance.png. "
        "Start the same command on several machines with one --storage URL to "
        "share the study.",
    )
    sweep_tasks = sw.add_subparsers(dest="verb", metavar="TASK", parser_class=Parser)
    sweep_tasks.required = True
    for name, entry in TASKS.items():
        config_cls = entry.config_cls
        st = sweep_tasks.add_parser(
            name,
            usage="%(prog)s [options]",
            help=f"sweep {name} runs",
            description=f"Sweep {name} runs. Training flags fix what is not searched.",
        )
        group = st.add_argument_group("sweep")
        group.add_argument(
            "--trials",
            type=positive_int,
            default=20,
            metavar="N",
            help="trials in the whole study, over all workers and machines (default 20)",
        )
        group.add_argument("--study", metavar="NAME", help=f"study name (default {name}-sweep)")
        group.add_argument(
            "--storage",
            metavar="URL",
            help="any SQLAlchemy URL, e.g. postgresql://user:pw@host/db (default sqlite:///<out>/study.db)",
        )
        group.add_argument(
            "--workers", type=positive_int, default=1, metavar="K", help="worker processes on this machine (default 1)"
        )
        group.add_argument(
            "--timeout-minutes",
            type=non_negative_float,
            default=0.0,
            metavar="X",
            help="start no new trial after X minutes (0 = no limit)",
        )
        group.add_argument(
            "--space", metavar="FILE.toml", help="search space, replacing the default (see --print-space)"
        )
        group.add_argument(
            "--pruner",
            choices=PRUNERS,
            default="median",
            help="stop bad trials early from their validation losses (default median)",
        )
        group.add_argument("--print-space", action="store_true", help="print the search space as TOML and exit")
        group.add_argument(
            "--heartbeat-seconds",
            type=positive_int,
            default=10,
            metavar="S",
            help="a worker silent for 3 S seconds has its trial failed and re-queued (default 10)",
        )
        add_config_flags(st, config_cls)
        if entry.presets:
            st.add_argument_group("preset").add_argument(
                "--preset",
                choices=sorted(entry.presets),
                metavar="NAME",
                help=f"every trial starts from these named settings ({', '.join(entry.presets)}); "
                "flags given beside it win, and the space's parameters are searched",
            )
        run = st.add_argument_group("run")
        run.add_argument("--config", metavar="FILE.toml", help="base config of every trial; flags override it")
        run.add_argument("--out", metavar="DIR", help="sweep directory (default runs/<study>)")
        run.add_argument("--quiet", action="store_true", help="no per-trial lines")
        st.set_defaults(sweep_config=config_cls)

    im = tasks.add_parser(
        "import",
        help="make a charlm run from min-char-rnn weights or a PyTorch state_dict",
        description="Turn classic weights into a charlm run directory, so sample, eval, "
        "export and train --resume (fine-tuning) work on them. The file type "
        "follows --weights: .npz, .pt/.pth or .safetensors.",
    )
    im.add_argument("--weights", required=True, metavar="FILE", help="weights file: .npz, .pt/.pth or .safetensors")
    im.add_argument("--format", required=True, choices=("min-char-rnn", "torch"), help="classic format of --weights")
    im.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    im.add_argument("--text", metavar="FILE", help="the corpus, for eval and fine-tuning (default: built-in)")
    im.add_argument(
        "--chars",
        metavar="STRING",
        help="the vocabulary in the order of the model's one-hot rows (default: the sorted characters of --text)",
    )
    im.add_argument("--backend", choices=BACKEND_NAMES, default="numpy", help="backend of the run (default numpy)")
    im.add_argument(
        "--rnn-name",
        default="rnn",
        metavar="NAME",
        help="attribute name of the recurrent module in the state_dict (default rnn)",
    )
    im.add_argument("--fc-name", default="fc", metavar="NAME", help="attribute name of the nn.Linear (default fc)")
    im.add_argument(
        "--cell",
        choices=CELLS,
        help="the cell of a torch state_dict (default: the cell the file names, "
        "else the one mapped to the module its shapes show)",
    )
    im.add_argument("--force", action="store_true", help="replace a run already in --out")
    im.set_defaults(verb=None)

    rp = tasks.add_parser(
        "report",
        help="write report.html for one run, or several runs side by side",
        description="Rebuild a run's self-contained report.html (config, key metrics next to "
        "their baselines, loss curves, task plots, timing), or compare several "
        "runs on one page: a summary table, the settings that differ and their "
        "validation curves on one plot.",
    )
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by `TASK train`")
    rp.add_argument(
        "--out",
        metavar="FILE",
        help="where to write (default: RUN_DIR/report.html for one run, ./report.html for several)",
    )
    rp.add_argument("--title", metavar="TEXT", help="page title (default: from the run names)")
    rp.set_defaults(verb=None)

    dm = tasks.add_parser(
        "demo",
        help="train every task on built-in data (~2 min) and write one report",
        description="A character model (with samples before and after training), the OU "
        "denoiser next to the Kalman estimate and a forecaster next to "
        "persistence, on built-in data, in about 1.5 minutes on a 2-core "
        "laptop. Ends with a results table and OUT/report.html.",
    )
    dm.add_argument(
        "--out", default="runs/demo", metavar="DIR", help="demo directory (default runs/demo); its runs are replaced"
    )
    dm.add_argument("--quick", action="store_true", help="tiny sizes: seconds instead of minutes")
    dm.add_argument("--quiet", action="store_true", help="no progress bars; only the table and the report path")
    dm.set_defaults(verb=None)


def _import(args) -> int:
    from ..tasks import charlm

    result = charlm.import_run(
        args.weights,
        args.format,
        args.out,
        args.text,
        args.chars,
        args.rnn_name,
        args.fc_name,
        args.backend,
        args.force,
        cell=args.cell,
    )
    spec = result["spec"]
    val = result["val_nats_per_char"]
    val_text = f"; validation {val:.4f} nats/char" if val is not None else ""
    print(
        f"imported a {spec['cell']} model (H={spec['hidden_size']}, {spec['num_layers']} layer(s), "
        f"{result['vocab_size']} characters) into {result['run_dir']}{val_text}"
    )
    print(f"try: rnnlab charlm sample --run {result['run_dir']}")
    return 0


def _export(args) -> int:
    from .. import interchange, runs

    runs.check_out_dir(Path(args.out).parent, "--out's directory")
    if args.format == "onnx":
        from .. import onnx_export

        path = onnx_export.export_run(args.run, args.out, "best" if args.best else "checkpoint", args.dtype)
        print(f"wrote {path} (onnx, opset {onnx_export.OPSET}, {args.dtype})")
        return 0
    spec, params, _ = runs.load_model(args.run, "best" if args.best else "checkpoint")
    if args.format == "min-char-rnn":
        arrays = interchange.to_min_char_rnn(spec, params)
    else:
        arrays = interchange.to_torch_state_dict(spec, params, args.rnn_name, args.fc_name)
    path = interchange.save(args.out, arrays, cell=spec.cell)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"wrote {path} ({args.format}): {shapes}")
    return 0


def _sweep(args) -> int:
    from .. import sweep

    task = TASKS[args.verb]
    preset = task.presets[args.preset].settings if getattr(args, "preset", None) else None
    base, _ = config_from_args(task.config_cls, args, preset)
    space = sweep.load_space(args.space) if args.space else task.sweep_space
    space = sweep.check_space(space, base, where=args.space or "default search space")
    if args.print_space:
        print(sweep.space_to_toml(space), end="")
        return 0
    if not any(getattr(base, f) for f in task.budget_fields):
        raise UserError(f"a sweep needs a budget per trial: set --{task.budget_fields[0].replace('_', '-')}")
    study = args.study or f"{args.verb}-sweep"
    settings = sweep.SweepSettings(
        task=args.verb,
        base_config=dataclasses.asdict(base),
        space=space,
        trials=args.trials,
        study=study,
        out=args.out or f"runs/{study}",
        storage=args.storage or "",
        pruner=args.pruner,
        timeout_minutes=args.timeout_minutes,
        heartbeat_seconds=args.heartbeat_seconds,
        quiet=args.quiet,
    )
    result = sweep.run_sweep(settings, workers=args.workers)
    print(result["table"])
    counts = result["counts"]
    print(
        f"study {study}: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
        f"(storage {result['storage']})"
    )
    if result["best"] is not None:
        best = result["best"]
        print(
            f"best: trial {best['number']}, {best['value']:.5g} {result['objective']}, "
            + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        )
        print(
            f"files: {settings.out}/trials.md, best.toml, "
            + ", ".join(Path(p).name for p in result["plots"])
            + (", report.html" if result.get("report") else "")
        )
    return 0


def _report(args) -> int:
    from .. import html_report

    path = html_report.write_report(args.run_dirs, args.out, args.title)
    print(f"wrote {path}")
    return 0


def _demo(args) -> int:
    from .. import demo

    result = demo.run_demo(args.out, quick=args.quick, quiet=args.quiet)
    if args.quiet:
        print(demo.format_table(result["table"]))
        print(f"report: {result['report']}")
    return 0


COMMANDS = {
    ("export", None): _export,
    ("import", None): _import,
    ("report", None): _report,
    ("demo", None): _demo,
    **{("sweep", name): _sweep for name in TASKS},
}
