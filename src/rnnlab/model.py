"""A trained model you can step, from any run directory: ``rnnlab.load``.

    import rnnlab

    m = rnnlab.load("runs/charlm", which="best", backend="torch")
    state = m.reset(batch_size=1)
    state, logits = m.step(state, m.encode("T"))        # one step: [B] ids -> [B, V] logits
    state, logits = m(m.encode("he")[None], state)      # a sequence: [B, T] ids -> [B, T, V]
    print(m.sample(200, prime="ROMEO:"))

The state is the model's carry (a list over layers of ``[B, H]`` arrays, ``(h, c)`` pairs for
LSTM) in the backend's own array type; it is never mutated, so a state can be kept and reused.
Stepping one input at a time gives what the whole-sequence forward gives (float64 < 1e-9,
``tests/test_model.py``).  Inputs and outputs are in the model's units: character ids and
logits for charlm, the scaled values for denoise and forecast (``Model.predict`` turns a
forecaster's output into prices).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError

WHICH = ("best", "checkpoint")


class Model:
    """A saved model on one backend: ``reset``, ``step`` and ``__call__`` for any task, and what
    its task adds (``sample`` for a language model, ``predict`` for a forecaster: the task
    definition's ``model_methods``).  Made by ``rnnlab.load``."""

    def __init__(self, task: str, loaded, run_dir: Path, which: str):
        self.task, self.run_dir, self.which = task, Path(run_dir), which
        self.loaded = loaded  # rnnlab.runs.LoadedRun: what the task's own methods read
        self.trainer, self.cfg, self.spec = loaded.trainer, loaded.cfg, loaded.spec

    @property
    def backend(self) -> str:
        return self.cfg.backend

    @property
    def vocab(self):
        """The character vocabulary (language models only)."""
        return self._method("vocab")(self)

    def reset(self, batch_size: int = 1):
        """The zero state of ``batch_size`` rows."""
        if int(batch_size) < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        return self.trainer.init_carry(int(batch_size))

    def step(self, state, x):
        """One step: ``x`` ``[B]`` ids (charlm) or ``[B, F]`` values -> (new state, ``[B, O]`` outputs)."""
        if self.spec.decodes:
            raise UserError(
                f"a {self.task} model forecasts a whole window at once: call it on [B, N, F] segment rows, "
                "or use predict()"
            )
        x = self._inputs(x, sequence=False)
        return self.trainer.step(state, x)

    def __call__(self, x_seq, state=None):
        """A whole sequence: ``x_seq`` ``[B, T]`` ids or ``[B, T, F]`` values -> (state after it,
        ``[B, T, O]`` outputs); ``state`` None starts from zeros."""
        x_seq = self._inputs(x_seq, sequence=True)
        if state is None:
            state = self.reset(x_seq.shape[0])
        y, state = self.trainer.forward(state, x_seq)
        return state, y

    def encode(self, text: str) -> np.ndarray:
        """Character ids of ``text`` (language models)."""
        return self.vocab.encode(text, "text")

    def decode(self, ids) -> str:
        """The text of character ids (language models)."""
        return self.vocab.decode([int(i) for i in np.ravel(ids)])

    def sample(
        self, length: int = 200, prime: str = "", temperature: float = 1.0, top_k: int = 0, seed: int = 0
    ) -> str:
        """``length`` characters after ``prime`` (language models; ``temperature`` 0 = always the likeliest)."""
        return self._method("sample")(self, length, prime, temperature, top_k, seed)

    def predict(self, csv: str | None = None, start: str | None = None, end: str | None = None) -> dict:
        """The forecast after the last window of ``csv`` (default: the run's own data) before ``end``:
        for forecast, the next price with persistence, the shrink weight and intervals where the run
        has them; for series, the next ``horizon`` rows of each target with repeat-last and seasonal
        naive beside them, in the data's units."""
        return self._method("predict")(self, csv, start, end)

    def _method(self, name: str):
        """This task's ``name`` (``TaskDefinition.model_methods``), or a ``UserError`` naming the
        tasks that have it."""
        from . import tasks

        method = tasks.TASKS[self.task].model_methods.get(name)
        if method is None:
            having = " or ".join(tasks.with_method(name)) or "no"
            raise UserError(f"{str(self.run_dir)!r} holds a {self.task!r} model: {name} needs a {having} run")
        return method

    def expect_task(self, task: str, what: str) -> None:
        """A ``UserError`` unless this is a ``task`` model (``what`` needs one)."""
        if self.task != task:
            raise UserError(f"{str(self.run_dir)!r} holds a {self.task!r} model, not {task}: {what} needs a {task} run")

    def _inputs(self, x, sequence: bool) -> np.ndarray:
        x = np.asarray(x)
        ids = self.spec.input_kind in ("onehot", "embedding")
        want = (2 if sequence else 1) + (0 if ids else 1)
        shape = ("[B, T]" if sequence else "[B]") if ids else ("[B, T, F]" if sequence else "[B, F]")
        if x.ndim != want:
            raise UserError(f"{self.task} model: expected inputs {shape}, got an array of shape {x.shape}")
        if ids:
            if not np.issubdtype(x.dtype, np.integer):
                raise UserError(f"{self.task} model: expected integer character ids, got {x.dtype}")
            if x.size and (x.min() < 0 or x.max() >= self.spec.input_size):
                raise UserError(f"character ids must be in [0, {self.spec.input_size}), got {x.min()} to {x.max()}")
            return x.astype(np.int64)
        if x.shape[-1] != self.spec.input_size:
            raise UserError(f"{self.task} model reads {self.spec.input_size} value(s) per step, got {x.shape[-1]}")
        return x.astype(np.dtype(self.cfg.dtype))

    def _repr_html_(self) -> str:
        """What the model is and how its run scored against the baseline, for Jupyter."""
        import html

        from .html_report import load_view

        key = load_view(self.run_dir).key_metric
        return (
            f"<div><b>{html.escape(repr(self))}</b><br>{html.escape(key.metric)}: model "
            f"<b>{html.escape(key.model)}</b>, baseline {html.escape(key.baseline)} ({html.escape(key.verdict)})"
            "</div>"
        )

    def __repr__(self) -> str:
        spec = self.spec
        layers = f" x{spec.num_layers}" if spec.num_layers > 1 else ""
        return (
            f"rnnlab.Model({self.task}: {spec.cell} H={spec.hidden_size}{layers}, {self.backend} backend, "
            f"{self.which} of {str(self.run_dir)!r})"
        )


def load(
    run_dir: str | os.PathLike, which: str = "best", backend: str | None = None, device: str | None = None
) -> Model:
    """The model saved in ``run_dir`` (``which``: ``best`` or ``checkpoint``) on ``backend``
    (default: the run's own) and, for torch, ``device`` (default: auto)."""
    import dataclasses

    from . import runs, tasks
    from .backends import backend_info, with_devices

    run_dir = Path(run_dir)
    if which not in WHICH:
        raise UserError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if not (run_dir / f"{which}.json").is_file():
        raise UserError(
            f"{str(run_dir)!r} holds no {which} model ({which}.json); give a run directory that "
            "`rnnlab TASK train --out` wrote" + ("" if which == "checkpoint" else ", or which='checkpoint'")
        )
    task = runs.saved_meta(run_dir, which).get("task")  # the task alone: load_run reads the weights
    if task not in tasks.TASKS:
        raise UserError(
            f"{run_dir / f'{which}.json'} names no rnnlab task (task: {task!r}); the run directory "
            "is damaged or was not written by rnnlab"
        )
    loaded = tasks.TASKS[task].load_run(run_dir, which, backend)
    if device is not None:
        if not backend_info(loaded.cfg.backend).takes_device:
            takers = " or ".join(with_devices())
            raise UserError(f"device={device!r} is for the {takers} backend; this model runs on {loaded.cfg.backend}")
        cfg = dataclasses.replace(loaded.cfg, device=device)
        trainer = loaded.trainer
        loaded = dataclasses.replace(
            loaded,
            cfg=cfg,
            trainer=runs.make_trainer(
                cfg, loaded.spec, trainer.params, trainer.optimizer, trainer.loss, trainer.reduction
            ),
        )
    return Model(task, loaded, run_dir, which)
