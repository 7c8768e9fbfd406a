"""Hyperparameter sweeps on Optuna: every trial a normal run directory, one shared study.

The study lives in any storage Optuna's RDB backend takes (SQLite by default,
PostgreSQL to share it between machines: start the same command on each).
``--trials N`` is the size of the whole study, not of one worker: a worker
starts a trial only while fewer than N are finished or under way, so any
number of workers on any number of machines end with N trials.

A worker that dies mid-trial stops sending heartbeats; after the grace period
the next worker to look marks its trial failed and queues a copy with the
same parameters (Optuna's heartbeat and ``RetryHeartbeatStaleTrialCallback``),
so nothing else is lost.  Failed trials do not count towards N.

Each trial reports its validation loss at every evaluation; the pruner (median
or Hyperband) may stop it there.  At the end: ``trials.md``, ``best.toml`` (the
best trial's full config, ready for ``train --config``), ``history.png``,
``importance.png`` and ``sweep.json`` in the sweep directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint, runner, train
from .config import from_dict, read_toml, to_toml
from .errors import TrainingDiverged, UserError
from .runs import make_dir
from .stopping import StopFlag
from .tasks import TASKS

TRIAL_PREFIX = "trial_"


# --------------------------------------------------------------------------- search space


def space_to_toml(space: dict) -> str:
    """The space as the TOML a ``--space`` file holds (one table per parameter)."""
    import tomli_w

    lines = [
        "# rnnlab sweep search space: one table per config field.",
        "# {low, high[, log][, step]} for numbers (integers when low and high are), {choices} for lists.",
        "",
    ]
    return "\n".join(lines) + tomli_w.dumps(space)


def load_space(path: str | os.PathLike) -> dict:
    """The parameters of a ``--space`` TOML file (it replaces the default space whole)."""
    data = read_toml(path, "search-space file")
    if not data:
        raise UserError(f"search-space file {str(path)!r} names no parameters; add a table such as [lr]")
    return data


def check_space(space: dict, base_cfg, where: str = "search space") -> dict:
    """``space`` checked against the task's config: known fields, well-formed ranges, and every
    bound or choice a valid config.  Returns it normalized (floats where the field is a float)."""
    known = {f.name: f for f in dataclasses.fields(base_cfg)}
    checked = {}
    for name, spec in space.items():
        if name not in known:
            raise UserError(f"{where}: unknown key {name!r}; searchable fields are {', '.join(sorted(known))}")
        if not isinstance(spec, dict):
            raise UserError(f"{where}: [{name}] must be a table with low/high or choices, got {spec!r}")
        default = getattr(base_cfg, name)
        extra = sorted(set(spec) - {"low", "high", "log", "step", "choices"})
        if extra:
            raise UserError(
                f"{where}: [{name}] has unknown key(s) {', '.join(extra)}; use low, high, log, step or choices"
            )
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise UserError(f"{where}: [{name}] choices must be a non-empty list, alone in its table")
            values = [float(c) if isinstance(default, float) and isinstance(c, int) else c for c in choices]
            checked[name] = {"choices": values}
        else:
            if "low" not in spec or "high" not in spec:
                raise UserError(f"{where}: [{name}] needs low and high (or choices)")
            low, high = spec["low"], spec["high"]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
            if not numeric or isinstance(default, (str, bool)) or not low < high:
                raise UserError(
                    f"{where}: [{name}] needs numbers low < high for a numeric field, got low={low!r} high={high!r}"
                )
            is_int = isinstance(default, int) and isinstance(low, int) and isinstance(high, int)
            if isinstance(default, int) and not is_int:
                raise UserError(f"{where}: [{name}] is an integer field; give integer low and high")
            log = spec.get("log", False)
            if not isinstance(log, bool):
                raise UserError(f"{where}: [{name}] log must be true or false, got {log!r}")
            if log and low <= 0:
                raise UserError(f"{where}: [{name}] log = true needs low > 0, got {low!r}")
            norm = {"low": low if is_int else float(low), "high": high if is_int else float(high), "log": log}
            if "step" in spec:
                step = spec["step"]
                if not isinstance(step, (int, float)) or isinstance(step, bool) or not 0 < step <= high - low:
                    raise UserError(
                        f"{where}: [{name}] step must be a number > 0 and at most high - low "
                        f"({high - low:g}), got {step!r}"
                    )
                if is_int and not isinstance(step, int):
                    raise UserError(f"{where}: [{name}] is an integer field; give an integer step")
                if log:
                    raise UserError(f"{where}: [{name}] takes log = true or a step, not both")
                norm["step"] = step
            checked[name] = norm
            values = [norm["low"], norm["high"]]
        for value in values:  # each bound or choice must make a valid run on its own
            try:
                dataclasses.replace(base_cfg, **{name: value}).validate()
            except UserError as exc:
                raise UserError(f"{where}: [{name}] value {value!r} is not valid: {exc}") from exc
            except TypeError as exc:
                raise UserError(f"{where}: [{name}] value {value!r} has the wrong type") from exc
    return checked


def suggest(trial, space: dict) -> dict:
    """One trial's parameters from ``space`` (already checked)."""
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec["low"], int):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"])
    return params


# --------------------------------------------------------------------------- settings and storage


@dataclass
class SweepSettings:
    task: str
    base_config: dict
    space: dict
    trials: int
    study: str
    out: str
    storage: str = ""  # "" = sqlite:///<out>/study.db
    pruner: str = "median"
    timeout_minutes: float = 0.0  # no new trial starts after this (0 = none)
    heartbeat_seconds: int = 10
    sampler: str = "tpe"  # "grid": every combination of the choices, once
    trial_dir: str = TRIAL_PREFIX + "{number:04d}"  # formatted with the trial number and parameters
    quiet: bool = False
    worker: int = 0
    workers: int = 1

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out) / 'study.db'}"


def _masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported as given
        return url


def _optuna():
    try:
        import optuna
    except ImportError as exc:
        raise UserError("sweeps need Optuna: pip install 'rnnlab[sweep]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _storage(settings: SweepSettings):
    optuna = _optuna()
    url = settings.storage_url
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}

    def connect():
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat_seconds,
            grace_period=3 * settings.heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        )

    try:
        for attempt in range(2):
            try:
                return connect()
            except ImportError:
                raise
            except Exception:  # workers starting together may race to create the tables: try once more
                if attempt:
                    raise
                time.sleep(1.0 + settings.worker * 0.5)
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        raise UserError(
            f"storage {_masked(url)!r} needs a database driver that is not installed "
            "(PostgreSQL: pip install 'rnnlab[postgres]'); " + str(exc).splitlines()[0]
        ) from exc
    except Exception as exc:  # SQLAlchemy's many connection and URL errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open sweep storage {_masked(url)!r}: {reason}") from exc


def _sampler(settings: SweepSettings):
    optuna = _optuna()
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler({k: v["choices"] for k, v in settings.space.items()}, seed=0)
    # One worker alone is reproducible; several draw independently.
    seed = settings.base_config.get("seed", 0) if settings.workers == 1 else None
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(settings.trials))


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the results: Optuna's 10 would leave a study of 12 almost
    a random search, so a third of the study, between 2 and 10."""
    return max(2, min(10, trials // 3))


def _pruner(name: str):
    optuna = _optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(max_resource="auto")
    return optuna.pruners.NopPruner()


def open_study(settings: SweepSettings, create: bool = False):
    """The study in ``settings.storage``; a study of the same name made for another task or
    space is refused, so two machines never mix their trials by mistake."""
    optuna = _optuna()
    if create and not settings.storage:
        make_dir(Path(settings.out))
    storage = _storage(settings)
    identity = {"task": settings.task, "space": settings.space, "objective": TASKS[settings.task].objective}
    if create:
        study = optuna.create_study(
            study_name=settings.study,
            storage=storage,
            direction="minimize",
            sampler=_sampler(settings),
            pruner=_pruner(settings.pruner),
            load_if_exists=True,
        )
        saved = study.user_attrs.get("rnnlab")
        if saved is None:
            study.set_user_attr("rnnlab", identity)
        elif saved != json.loads(json.dumps(identity)):
            raise UserError(
                f"study {settings.study!r} in {_masked(settings.storage_url)!r} was made for a "
                f"{saved.get('task')} sweep with another search space; use another --study name"
            )
        return study
    return optuna.load_study(
        study_name=settings.study, storage=storage, sampler=_sampler(settings), pruner=_pruner(settings.pruner)
    )


# --------------------------------------------------------------------------- one worker


class _Surplus(Exception):
    """The study already had its trials when this one was started (two workers raced)."""


class _Interrupted(Exception):
    """Ctrl-C during a trial."""


def _counts(study) -> tuple[int, int, int]:
    """(finished, under way, waiting) trials; failed ones do not count."""
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    return finished, sum(s == TrialState.RUNNING for s in states), sum(s == TrialState.WAITING for s in states)


def _say(settings: SweepSettings, message: str) -> None:
    if not settings.quiet:
        prefix = f"[worker {settings.worker}] " if settings.workers > 1 else ""
        print(prefix + message, flush=True)


def _objective(settings: SweepSettings, task):
    """Long on purpose: Optuna's objective is a closure over the sweep's settings; its steps
    (surplus check, config, the run with its pruning hook, the result) share them."""
    from optuna import TrialPruned
    from optuna.trial import TrialState

    def objective(trial):
        earlier = [
            t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and t.state != TrialState.FAIL
        ]
        if len(earlier) >= settings.trials:
            trial.set_user_attr("status", "surplus")
            raise _Surplus()
        params = suggest(trial, settings.space)
        cfg = dataclasses.replace(from_dict(task.config_cls, settings.base_config), **params)
        run_dir = Path(settings.out) / settings.trial_dir.format(number=trial.number, **params)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        _say(settings, f"trial {trial.number}: {shown}")
        pruned_at = []

        def report(step: int, record: dict):
            val = record.get("val_loss")
            if step == 0 or val is None or not math.isfinite(val):  # step 0: the untrained model
                return None
            trial.report(val, step)
            if trial.should_prune():
                pruned_at.append(step)
                return f"pruned by the {settings.pruner} pruner at step {step}"
            return None

        started = time.perf_counter()
        try:
            with train.after_evaluation(report):
                summary = runner.train_run(cfg, run_dir, force=True, quiet=True)
        except TrainingDiverged as exc:
            trial.set_user_attr("status", "diverged")
            _say(settings, f"trial {trial.number}: diverged ({str(exc).split(';')[0]})")
            raise TrialPruned(str(exc)) from exc
        except UserError as exc:
            # The same error again, with no trial ever finished, is no combination's fault: the
            # input every trial shares is bad, so the sweep stops with the reason.
            others = [t for t in trial.study.get_trials(deepcopy=False) if t.number != trial.number]
            if not any(t.state == TrialState.COMPLETE for t in others) and any(
                t.user_attrs.get("error") == str(exc) for t in others
            ):
                trial.set_user_attr("status", "invalid")
                trial.set_user_attr("error", str(exc))
                objective.stop_error = f"every trial fails the same way: {exc}"
                raise TrialPruned(str(exc)) from exc
            # A combination the data cannot take (say a window longer than the series allows).
            # It counts as finished and bad, so the sampler learns to avoid it and the sweep ends.
            trial.set_user_attr("status", "invalid")
            trial.set_user_attr("error", str(exc))
            _say(settings, f"trial {trial.number}: invalid for this data: {exc}")
            raise TrialPruned(str(exc)) from exc
        seconds = time.perf_counter() - started
        trial.set_user_attr("results", _scalars(summary))
        trial.set_user_attr("steps", summary["step"])
        trial.set_user_attr("train_seconds", round(summary["train_seconds"], 2))
        if summary["interrupted"]:
            trial.set_user_attr("status", "interrupted")
            objective.interrupted = True
            raise _Interrupted()
        best = summary["best_val_loss"]
        if pruned_at:
            trial.set_user_attr("status", "pruned")
            _say(settings, f"trial {trial.number}: pruned at step {pruned_at[0]} ({seconds:.0f} s)")
            raise TrialPruned()
        if best is None:
            raise UserError(f"trial {trial.number} produced no validation loss; a sweep needs validation data")
        trial.set_user_attr("status", "complete")
        _say(settings, f"trial {trial.number}: {best:.5g} {task.objective} ({seconds:.0f} s)")
        return best

    objective.stop_error = None  # set when the sweep must stop: raised by ``work``, outside Optuna
    objective.interrupted = False  # a signal stopped the trial: Optuna's warnings about it are dropped
    return objective


def _scalars(summary: dict) -> dict:
    """The numbers and strings of a run's summary (and of its ``test`` block), for the study."""

    def keep(d):
        return {
            k: (float(v) if isinstance(v, float) else v)
            for k, v in d.items()
            if v is None or isinstance(v, (bool, int, float, str))
        }

    out = keep(summary)
    if isinstance(summary.get("test"), dict):
        out["test"] = keep(summary["test"])
    return out


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def work(settings: SweepSettings) -> None:
    """One worker: run trials until the study has ``settings.trials`` finished ones, the timeout
    passes, or Ctrl-C.  Safe to run in many processes and machines at once."""
    optuna = _optuna()
    task = TASKS[settings.task]
    study = open_study(settings)
    objective = _objective(settings, task)
    deadline = time.monotonic() + settings.timeout_minutes * 60 if settings.timeout_minutes else None

    # Optuna logs a trial that a signal stopped as a failure, with a traceback; the worker's own line
    # ("interrupted; ...") says what happened.
    def quiet_interrupts(record) -> bool:
        return not objective.interrupted

    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_log.addFilter(quiet_interrupts)
    try:
        with StopFlag() as stop:  # a signal between trials, or in a trial's set-up, stops the next run at once
            _work_until(settings, optuna, study, objective, deadline, stop)
    finally:
        optuna_log.removeFilter(quiet_interrupts)


def _work_until(settings: SweepSettings, optuna, study, objective, deadline: float | None, stop: StopFlag) -> None:
    while deadline is None or time.monotonic() < deadline:
        if stop.requested:
            _say(settings, f"{stop.reason}; no further trial starts")
            return
        optuna.storages.fail_stale_trials(study)
        finished, running, waiting = _counts(study)
        if finished >= settings.trials:
            return
        if finished + running >= settings.trials and not waiting:
            time.sleep(min(5.0, settings.heartbeat_seconds))  # the rest are under way elsewhere
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(_Surplus,))
        except _Interrupted:
            _say(settings, "interrupted; the trial under way is marked failed")
            return
        if objective.stop_error:
            raise UserError(objective.stop_error)


def _work_in_child(settings: SweepSettings) -> None:
    """A local worker process.  Its own process group: a terminal's Ctrl-C reaches the sweep's
    main process alone, which passes each signal on once (a worker that got the terminal's and the
    parent's copy would read the second as "stop now"; Ctrl-Z is passed on too).  On Linux it is
    also sent SIGHUP when the main process dies, even by SIGKILL, and stops as after a first Ctrl-C,
    so that no worker is left training for nobody."""
    os.setpgrp()
    _stop_with_parent()
    try:
        work(settings)
    except UserError as exc:
        print(f"rnnlab: error: [worker {settings.worker}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _stop_with_parent() -> None:
    """Ask Linux to send this process SIGHUP when its parent exits (prctl PR_SET_PDEATHSIG), which
    stops the trial under way at its next step; exit at once if the parent is already gone.
    Elsewhere: nothing."""
    import ctypes
    import multiprocessing

    if not sys.platform.startswith("linux"):
        return
    signal.signal(signal.SIGHUP, lambda signum, frame: StopFlag.request_all("the sweep's main process died"))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGHUP), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the request took hold
        sys.exit(143)


def _join_passing_signals(procs: list) -> None:
    """Wait for the worker processes; each SIGINT or SIGTERM this process gets meanwhile is sent on
    to every worker still running (the first stops a worker's trial at its next step with a
    checkpoint, a second stops it at once), and the wait goes on until all have exited.  A
    terminal's Ctrl-Z pauses the workers with this process, and `fg` or `bg` resumes them."""
    from .stopping import InterruptOnSignals

    def send(signum: int) -> None:
        for p in procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:  # it exited just now
                    pass

    def pause(signum, frame):
        send(signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # as Ctrl-Z's default action would; SIGCONT returns here
        send(signal.SIGCONT)

    previous = signal.signal(signal.SIGTSTP, pause) if hasattr(signal, "SIGTSTP") else None
    try:
        with InterruptOnSignals() as caught:
            while any(p.is_alive() for p in procs):
                try:
                    for p in procs:
                        p.join()
                except KeyboardInterrupt:
                    send(caught.signals[-1] if caught.signals else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTSTP, previous)


def _share_threads(workers: int) -> dict:
    """Thread-count variables for K local workers, unless the user set them: each worker
    its share of the CPUs, so K workers do not oversubscribe them."""
    from .threads import available_cpus

    share = str(max(1, available_cpus() // workers))
    return {
        name: share for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if name not in os.environ
    }


# --------------------------------------------------------------------------- the whole sweep


def check_shared_inputs(settings: SweepSettings) -> None:
    """Read the files every trial reads, once, so a bad one stops the sweep at once with its reason
    instead of failing every trial (``TaskDefinition.check_inputs``)."""
    task = TASKS[settings.task]
    task.check_inputs(from_dict(task.config_cls, settings.base_config))


def run_sweep(settings: SweepSettings, workers: int = 1) -> dict:
    """Create (or join) the study, run ``workers`` local worker processes, then summarize."""
    import multiprocessing

    if settings.trials < 1:
        raise UserError(f"--trials must be >= 1, got {settings.trials}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    check_shared_inputs(settings)
    open_study(settings, create=True)  # tables and study exist before any worker starts
    settings = dataclasses.replace(settings, workers=workers)
    if workers == 1:
        work(settings)
    else:
        context = multiprocessing.get_context("spawn")  # no inherited torch/JAX thread pools
        saved_env = dict(os.environ)
        os.environ.update(_share_threads(workers))
        try:
            procs = [
                context.Process(
                    target=_work_in_child, args=(dataclasses.replace(settings, worker=i),), name=f"rnnlab-sweep-{i}"
                )
                for i in range(workers)
            ]
            for p in procs:
                p.start()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
        _join_passing_signals(procs)
        codes = [p.exitcode for p in procs]
        if any(code == 2 for code in codes):
            raise UserError("a sweep worker stopped on an error (see above)")
    return summarize(settings)


def trial_rows(study) -> list[dict]:
    """One dict per trial: number, state, value, params and what the run recorded."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("status") == "surplus":
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "status": t.user_attrs.get("status"),
                "value": t.value,
                "params": t.params,
                "steps": t.user_attrs.get("steps"),
                "train_seconds": t.user_attrs.get("train_seconds"),
                "run_dir": t.user_attrs.get("run_dir"),
                "host": t.user_attrs.get("host"),
                "results": t.user_attrs.get("results", {}),
                "retry_of": t.system_attrs.get("failed_trial"),
            }
        )
    return rows


def trials_table(rows: list[dict], objective: str) -> str:
    names = sorted({k for r in rows for k in r["params"]})
    lines = [
        f"| trial | state | {objective} | " + " | ".join(names) + " | steps | train s | run |",
        "|---" * (6 + len(names)) + "|",
    ]
    for r in rows:
        value = f"{r['value']:.5g}" if r["value"] is not None else "-"
        state = r["status"] or r["state"]
        params = " | ".join(_fmt(r["params"][n]) if n in r["params"] else "-" for n in names)
        lines.append(
            f"| {r['number']} | {state} | {value} | {params} | {r['steps'] if r['steps'] is not None else '-'}"
            f" | {r['train_seconds'] if r['train_seconds'] is not None else '-'} | {Path(r['run_dir']).name if r['run_dir'] else '-'} |"
        )
    return "\n".join(lines)


def summarize(settings: SweepSettings) -> dict:
    """Write trials.md, best.toml, history.png, importance.png, report.html and sweep.json; return
    the summary."""
    task = TASKS[settings.task]
    study = open_study(settings)
    rows = trial_rows(study)
    complete = [r for r in rows if r["state"] == "complete"]
    out = Path(settings.out)
    make_dir(out)
    best = min(complete, key=lambda r: r["value"]) if complete else None
    result = {
        "task": settings.task,
        "study": settings.study,
        "storage": _masked(settings.storage_url),
        "objective": task.objective,
        "trials_wanted": settings.trials,
        "space": settings.space,
        "base_config": settings.base_config,
        "trials": rows,
        "best": best,
        "counts": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running")},
    }
    if best is not None:
        cfg = dataclasses.replace(from_dict(task.config_cls, settings.base_config), **best["params"])
        checkpoint.atomic_write_text(
            out / "best.toml",
            to_toml(
                cfg,
                header=f"best trial {best['number']} of study {settings.study}: {best['value']:.6g} {task.objective}\n"
                f"rerun: rnnlab {settings.task} train --config best.toml --out DIR",
            ),
        )
        result["best_config"] = dataclasses.asdict(cfg)
    table = trials_table(rows, task.objective)
    checkpoint.atomic_write_text(out / "trials.md", table + "\n")
    result["plots"] = [
        str(p)
        for p in (
            plot_history(out / "history.png", rows, task.objective),
            plot_importance(out / "importance.png", study),
        )
        if p
    ]
    result["report"] = _best_trials_report(out, settings.study, complete)
    checkpoint.atomic_write_text(out / "sweep.json", json.dumps(result, indent=1, default=str) + "\n")
    result["table"] = table
    return result


REPORT_TRIALS = 8


def _best_trials_report(out: Path, study: str, complete: list[dict]) -> str | None:
    """report.html comparing the best finished trials whose run directories are on this machine
    (workers elsewhere keep theirs)."""
    from . import html_report

    ranked = sorted(complete, key=lambda r: r["value"])
    here = [r["run_dir"] for r in ranked if r["run_dir"] and (Path(r["run_dir"]) / "checkpoint.json").exists()]
    if not here:
        return None
    shown = here[:REPORT_TRIALS]
    return str(
        html_report.write_report(shown, out / "report.html", title=f"study {study}: the best {len(shown)} trials")
    )


def plot_history(path: Path, rows: list[dict], objective: str) -> Path | None:
    """Each finished trial's value by trial number, pruned ones marked, and the best so far."""
    finished = [r for r in rows if r["value"] is not None or r["state"] == "pruned"]
    if not finished:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    done = [r for r in rows if r["state"] == "complete"]
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], label="complete", zorder=3)
    best, xs, ys = math.inf, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        best = min(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    pruned = [r["number"] for r in rows if r["state"] == "pruned"]
    if pruned and done:
        top = max(r["value"] for r in done)
        ax.scatter(pruned, [top] * len(pruned), marker="x", color="grey", label="pruned (drawn at the top)")
    values = [r["value"] for r in done if r["value"] > 0]
    if values and len(values) == len(done) and max(values) / min(values) > 20:
        ax.set_yscale("log")  # good and bad trials often differ by orders of magnitude
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("Sweep: optimization history")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_importance(path: Path, study) -> Path | None:
    """Optuna's PED-ANOVA parameter importances as bars (numpy only, where fANOVA would need
    scikit-learn); None while too few trials finished to say."""
    optuna = _optuna()
    try:
        with warnings.catch_warnings():  # "too few trials" warnings: the plot is then skipped or flat
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials, or nothing varied
        return None
    if not importances:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (PED-ANOVA, Optuna)")
    ax.set_title("Sweep: parameter importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
