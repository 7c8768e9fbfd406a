"""The Python API that reads like the command line: ``rnnlab.fit`` and ``rnnlab.Run``.

    import rnnlab

    run = rnnlab.fit("charlm", text="input.txt", cell="lstm", max_minutes=2, out="runs/x")
    run.metrics            # a pandas DataFrame, one row per evaluation
    run.sample(200)        # charlm; forecast: run.predict()
    run.model              # rnnlab.Model: reset / step / __call__
    run.report()           # report.html

Keyword names are the flags' (``--hidden-size`` is ``hidden_size``), checked by the same rules,
so a bad value raises the same one-line ``UserError`` the flag gives.  ``data=`` passes data in
memory, where the task takes it (its definition's ``api_data``: a Python string for the language
model, a pandas Series of prices with a DatetimeIndex or a DataFrame of candles for the
forecaster); it is saved in the run directory (``data.txt`` / ``data.csv``), so resume and
evaluation work as with files.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import os
from pathlib import Path

from .errors import UserError


def fit(
    task: str,
    out: str | os.PathLike | None = None,
    data=None,
    preset: str | None = None,
    resume: bool = False,
    force: bool = False,
    quiet: bool = True,
    **settings,
) -> Run:
    """Train (or ``resume``) a ``task`` run in ``out`` (default ``runs/<task>``) with the given
    settings (the flags' names, dashes as underscores) and return it as a ``Run``."""
    from . import tasks
    from .config import settings_of
    from .runner import train_run

    entry = tasks.entry(task)
    config_cls = entry.config_cls
    known = settings_of(config_cls)
    for name in settings:
        if name in getattr(config_cls, "REFUSED", {}):
            raise UserError(f"{name}: {config_cls.REFUSED[name]}")
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {task} takes {', '.join(known)}"
            raise UserError(f"fit({task!r}): unknown setting {name!r}{hint}")
    if preset is not None:
        if preset not in entry.presets:
            having = {name: list(t.presets) for name, t in tasks.TASKS.items() if t.presets}
            known = "; ".join(f"{name}: {', '.join(names)}" for name, names in having.items())
            raise UserError(f"preset {preset!r} is not one of {task}'s presets ({known or 'no task has presets'})")
        settings = {**entry.presets[preset].settings, **settings}
    # A list where the setting is a comma-separated text (columns, targets): the same thing, as a list.
    settings = {
        name: ",".join(map(str, value))
        if isinstance(value, (list, tuple)) and isinstance(known[name][1], str)
        else value
        for name, value in settings.items()
    }
    out = Path(out or f"runs/{task}")
    written = None
    if data is not None:
        if entry.api_data is None:
            takers = "; ".join(f"{name} takes {t.api_data.accepts}" for name, t in tasks.TASKS.items() if t.api_data)
            raise UserError(f"{task} draws its own data, so data= does not apply ({takers})")
        field = entry.api_data.setting
        if settings.get(field):
            raise UserError(f"give the data once: data= or {field}=, not both")
        settings[field] = str((out / entry.api_data.file_name).absolute())
    cfg = dataclasses.replace(config_cls(), **settings)
    if not resume:
        cfg.validate()  # every setting checked before anything is written
    if data is not None:
        written = _save_data(entry.api_data, data, out, resume)
    try:
        train_run(cfg, out, resume=resume, force=force, overrides=settings if resume else None, quiet=quiet)
    except BaseException:
        _forget(written, out)
        raise
    return Run(out)


def _save_data(api_data, data, out: Path, resume: bool) -> Path | None:
    """Write in-memory data as the run's data file (``TaskDefinition.api_data``), or check it
    against the saved one on resume."""
    from .runs import make_dir

    path = out / api_data.file_name
    content = api_data.to_bytes(data)
    if resume:
        if not path.exists() or path.read_bytes() != content:
            raise UserError(f"resume needs the same data the run in {out} was started with ({path} differs)")
        return None
    from .checkpoint import atomic_write_bytes

    created = make_dir(out)
    existed = path.exists()
    atomic_write_bytes(path, content)
    return None if existed and not created else path


def _forget(written: Path | None, out: Path) -> None:
    """After a failed start, remove the data file this call wrote if no run came of it."""
    from .lock import LOCK_NAME
    from .runs import RUN_FILES

    if written is None or any((out / f).exists() for f in RUN_FILES):
        return
    written.unlink(missing_ok=True)
    try:
        if [p.name for p in out.iterdir()] in ([], [LOCK_NAME]):  # the lock of the run that never started
            (out / LOCK_NAME).unlink(missing_ok=True)
            out.rmdir()
    except OSError:
        pass


class Run:
    """A run directory: its settings, metrics, model and report.  ``rnnlab.Run("runs/x")`` opens
    one that is already there; ``rnnlab.fit`` returns one."""

    def __init__(self, run_dir: str | os.PathLike):
        from .config import read_toml
        from .facts import read_json

        self.run_dir = Path(run_dir)
        meta = read_json(self.run_dir / "checkpoint.json") if self.run_dir.is_dir() else None
        if meta is None:
            raise UserError(f"{str(self.run_dir)!r} holds no run (no checkpoint.json)")
        self.task = meta.get("task")
        self.config = read_toml(self.run_dir / "config.toml")

    @property
    def metrics(self):
        """One row per evaluation (``metrics.jsonl``), as a pandas DataFrame."""
        import pandas as pd

        from .report import read_metrics

        return pd.DataFrame(read_metrics(self.run_dir))

    @property
    def model(self):
        """The best model (``rnnlab.Model``), on the run's backend."""
        from .model import load

        return load(self.run_dir, "best")

    def evaluate(self, **options) -> dict:
        """The best model judged again, as its task does (``TaskDefinition.evaluate``): charlm,
        nats/char on the validation split (or ``text_path=``); denoise, against Kalman on fresh
        sequences (``sequences=``); forecast, the test part against persistence."""
        from .tasks import entry

        return entry(self.task).evaluate(self.run_dir, options)

    def sample(
        self, length: int = 200, prime: str = "", temperature: float = 1.0, top_k: int = 0, seed: int = 0
    ) -> str:
        return self.model.sample(length, prime, temperature, top_k, seed)

    def predict(self, csv: str | None = None, start: str | None = None, end: str | None = None) -> dict:
        return self.model.predict(csv, start, end)

    def report(self) -> Path:
        """Write (again) and return ``report.html``."""
        from .html_report import write_run_report

        return write_run_report(self.run_dir)

    def __repr__(self) -> str:
        return f"rnnlab.Run({self.task}, {str(self.run_dir)!r})"

    def _repr_html_(self) -> str:
        """The key metric beside its baseline, and the loss plot, for Jupyter."""
        import base64

        from .html_report import load_view

        view = load_view(self.run_dir)
        key = view.key_metric
        parts = [
            f"<div><b>{html.escape(repr(self))}</b><br>{html.escape(key.metric)}: model "
            f"<b>{html.escape(key.model)}</b>, baseline {html.escape(key.baseline)} "
            f"({html.escape(key.verdict)})</div>"
        ]
        plot = self.run_dir / "loss.png"
        if plot.exists():
            encoded = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{encoded}" alt="loss" style="max-width:640px">')
        return "".join(parts)
