"""The one training loop, shared by every task and backend.

A task supplies batches, an evaluation and what to print at each evaluation;
a backend ``Trainer`` supplies the update.  The loop does the rest: learning
rate schedule, smoothed loss, progress bar, ``metrics.jsonl``, checkpoints
(atomic, with everything needed to continue bit-for-bit), the best-on-
validation model, the stopping rules, Ctrl-C and non-finite losses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import averaging, checkpoint, distributed
from .dropout import dropout_masks
from .dropout import rows as mask_rows
from .errors import TrainingDiverged, UserError
from .optim import learning_rate
from .stopping import Budget, StopFlag, after_evaluation_stop, budget_stop

SMOOTHING = 0.99  # weight of the old value in the exponential moving average of the loss
# Append-only logs of a run: a checkpoint records their lengths, and a resumed run cuts them back.
LOGS = ("metrics.jsonl", "samples.jsonl")

_after_evaluation: ContextVar = ContextVar("after_evaluation", default=None)


@contextmanager
def after_evaluation(callback):
    """Call ``callback(step, record)`` after each evaluation of the runs inside this block;
    a string it returns stops the run there, with that as the stop reason.  This is how a
    sweep's pruner watches a run without any task knowing about sweeps."""
    token = _after_evaluation.set(callback)
    try:
        yield
    finally:
        _after_evaluation.reset(token)


class Task(Protocol):
    """What the loop needs of a task's data side (``CharLMTask``, ``DenoiseTask``, ``ForecastTask``).

    Batches are NumPy, batch-first: inputs ``[B, T]`` ids or ``[B, T, F]`` values, targets as
    the backend's ``check_targets`` describes; ``reset`` says the carry starts from zero.
    """

    name: str  # the task's registry name, saved in every checkpoint
    item_name: str  # what throughput counts: "chars", "sequences", "windows"
    batch_size: int  # rows of every batch (the carry's batch size)
    items_per_step: int  # items in the last batch, for throughput

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs, targets, reset) of the next training step."""

    def evaluate(self, trainer) -> dict:
        """Metrics of the current model; ``val_loss`` (lower is better) picks the best model."""

    def describe_eval(self, trainer, state: LoopState, record: dict, final: bool) -> str:
        """The evaluation's line for the console; may draw from ``state.sample_rng`` and append
        to the run's logs (it runs before the checkpoint that records them)."""

    def data_state(self) -> dict:
        """The data cursor and random state, saved in checkpoints, so a resumed run continues exactly."""

    def checkpoint_meta(self) -> dict:
        """What loading the model needs besides its parameters (vocabulary, scaler, text hash)."""


class TaskBase:
    """The run skeleton's optional hooks as no-ops, for a task class to override where it has
    something to do (``rnnlab.runner.train_run`` calls them; ``rnnlab.tasks`` lists them all)."""

    reduction = "mean"

    def initial_params(self, params: dict) -> None:
        """Change the seeded initial parameters of a fresh run in place."""

    def console_lines(self) -> list[str]:
        """Lines shown before training (what the run trains on)."""
        return []

    def before_training(self, trainer, run, fresh: bool) -> None:
        """Anything to write before the first step into ``run`` (``rnnlab.runs.RunDir``; ``fresh``:
        not a resumed run)."""

    def after_training(self, trainer, summary: dict, run) -> dict:
        """After the loop (``summary``: its stop reason, steps, ``interrupted``): plots and the test,
        written into ``run`` (``rnnlab.runs.RunDir``), whose ``best`` holds the best model in
        memory; returns what to add to the summary."""
        return {}

    def restore(self, meta: dict, where: str) -> None:
        """Continue from a checkpoint's data cursor (``meta["data"]``); a damaged one is one line."""
        try:
            self.load_data_state(meta["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise checkpoint.damaged(where, exc) from exc

    def load_data_state(self, state: dict) -> None:
        raise NotImplementedError


class ShuffledEpochs:
    """Batches of item indices, a fresh shuffle each epoch, from the run's own generator: the data
    cursor of a task that trains on a fixed set of windows (forecast, series).  Its state is saved
    in checkpoints, so a resumed run draws the same batches."""

    def __init__(self, items: int, batch_size: int, seed: int, what: str = "training windows"):
        self.items, self.batch_size, self.what = items, batch_size, what
        self.rng = np.random.default_rng([seed, 0])
        self.order = np.empty(0, dtype=np.int64)
        self.cursor = 0
        self.batches = 0
        self.steps_per_epoch = math.ceil(items / batch_size)

    def next(self) -> np.ndarray:
        """The next batch's item indices (the last of an epoch may be shorter)."""
        if self.cursor >= len(self.order):  # a new epoch: a new shuffle
            self.order = self.rng.permutation(self.items)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += len(idx)
        self.batches += 1
        return idx

    @property
    def epoch(self) -> float:
        return self.batches / self.steps_per_epoch

    def state(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "cursor": self.cursor,
            "batches": self.batches,
        }

    def load_state(self, state: dict) -> None:
        """Continue from a saved shuffle and cursor; one that does not fit these items is a ``ValueError``."""
        order, cursor, batches = np.asarray(state["order"], dtype=np.int64), state["cursor"], state["batches"]
        if len(order) and not np.array_equal(np.sort(order), np.arange(self.items)):
            raise ValueError(f"the saved shuffle is not an order of this run's {self.items} {self.what}")
        for name, value, high in (("cursor", cursor, len(order)), ("batches", batches, None)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 0
                or (high is not None and value > high)
            ):
                raise ValueError(f"the data {name} is {value!r}, outside 0..{'' if high is None else high}")
        self.rng.bit_generator.state = state["rng"]
        self.order, self.cursor, self.batches = order, cursor, batches


class FitBudget:
    """The step rate of a --fit-budget run, measured over its first ``probe`` steps after the
    first few (which pay for compilation and cold caches)."""

    def __init__(self, probe: int, first_step: int):
        self.skip = min(5, probe // 4)
        self.start, self.probe = first_step + self.skip, probe - self.skip
        # with no steps skipped, the probe starts at this invocation's start (0 s of training)
        self.seconds_at_start: float | None = 0.0 if self.skip == 0 else None

    def measure(self, step: int, invocation_seconds: float) -> float | None:
        """Seconds a step, once ``step`` ends the probe; None before (call after every step)."""
        if step == self.start:
            self.seconds_at_start = invocation_seconds
        if self.seconds_at_start is None or step < self.start + self.probe:
            return None
        return (invocation_seconds - self.seconds_at_start) / self.probe


@dataclass
class LoopState:
    """What changes during training, besides parameters and optimizer state."""

    step: int = 0
    smoothed_loss: float | None = None
    loss_ema: float = 0.0
    best_val_loss: float | None = None
    train_seconds: float = 0.0
    carry: list | None = None
    sample_rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    # Draws the dropout masks of every step (rnnlab.dropout): saved, so a resumed run draws the same.
    dropout_rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(3))
    # Sum and count of the step losses since the last evaluation (its train_loss_mean): saved, so
    # a run stopped between evaluations reports the same mean when it continues.
    loss_sum_since_eval: float = 0.0
    steps_since_eval: int = 0
    # The weights' moving average under --ema-decay (rnnlab.averaging), None when off; saved as
    # tensors (average/<name>) beside the parameters, not in the JSON.
    average: dict | None = None
    # --fit-budget: the step count fitted to the clock after the first steps (0 = not yet fitted).
    # Saved, so a resumed run keeps the horizon, and its schedule, of the run it continues.
    fitted_steps: int = 0

    def meta(self) -> dict:
        return {
            "step": self.step,
            "smoothed_loss": self.smoothed_loss,
            "loss_ema": self.loss_ema,
            "best_val_loss": self.best_val_loss,
            "train_seconds": self.train_seconds,
            "sample_rng": self.sample_rng.bit_generator.state,
            "dropout_rng": self.dropout_rng.bit_generator.state,
            "loss_sum_since_eval": self.loss_sum_since_eval,
            "steps_since_eval": self.steps_since_eval,
            "fitted_steps": self.fitted_steps,
        }

    @classmethod
    def restore(cls, meta: dict, carry: list, average: dict | None = None) -> LoopState:
        rng, dropout_rng = np.random.default_rng(), np.random.default_rng(3)
        rng.bit_generator.state = meta["sample_rng"]
        if "dropout_rng" in meta:  # checkpoints from before dropout have none (and used none)
            dropout_rng.bit_generator.state = meta["dropout_rng"]
        return cls(
            step=int(meta["step"]),
            smoothed_loss=meta["smoothed_loss"],
            loss_ema=meta["loss_ema"],
            best_val_loss=meta["best_val_loss"],
            train_seconds=float(meta["train_seconds"]),
            carry=carry,
            sample_rng=rng,
            dropout_rng=dropout_rng,
            loss_sum_since_eval=float(meta.get("loss_sum_since_eval", 0.0)),
            steps_since_eval=int(meta.get("steps_since_eval", 0)),
            average=average or None,
            fitted_steps=int(meta.get("fitted_steps", 0)),
        )


def _model_meta(trainer, task, config: dict) -> dict:
    """What sample/eval need to rebuild the model, shared by full and params-only checkpoints,
    and where it was trained (so a report can say what its timings were measured on)."""
    return {
        "task": task.name,
        "backend": trainer.name,
        "spec": trainer.spec.to_dict(),
        "config": config,
        "machine": machine_facts(trainer),
        **task.checkpoint_meta(),
    }


def machine_facts(trainer) -> dict:
    device = getattr(trainer, "device", None)  # torch: the chosen one; JAX: its default; NumPy: none (the CPU)
    return {**_host_facts(), "device": str(device) if device is not None else "cpu"}


@functools.cache
def _host_facts() -> dict:
    """Facts of this machine, read once per process (every checkpoint carries them)."""
    import platform

    from .threads import available_cpus

    return {
        "platform": platform.platform(terse=True),
        "arch": platform.machine(),
        "cpus": available_cpus(),
        "python": platform.python_version(),
    }


def save_checkpoint(run, trainer, task, state: LoopState, config: dict):
    """The whole state into ``run`` (a ``rnnlab.runs.RunDir``): parameters, optimizer, carry, average, cursors."""
    tensors = trainer.state_tensors()  # first: it brings the optimizer's counters up to date
    tensors.update(checkpoint.carry_to_tensors(state.carry, trainer.spec.cell_info.carry))
    if state.average is not None:
        tensors.update({f"average/{k}": v for k, v in state.average.items()})
    meta = {
        **_model_meta(trainer, task, config),
        "optimizer": trainer.optimizer.meta(),
        "loop": state.meta(),
        "data": task.data_state(),
        "logs": run.log_sizes(LOGS),
    }
    run.save_checkpoint(tensors, meta)


def save_best(run, trainer, task, state: LoopState, config: dict, metrics: dict):
    """The parameters as the best model (``best``), which sample/eval load like the full checkpoint."""
    run.save_best(trainer.params, {**_model_meta(trainer, task, config), "step": state.step, "metrics": metrics})


def run(
    task: Task,
    trainer,
    state: LoopState,
    budget: Budget,
    schedule: dict,
    run,
    config: dict,
    quiet: bool = False,
    log_evals: bool = True,
    ema_decay: float = 0.0,
) -> dict:
    """Train until a stopping rule fires; returns a summary dict.

    ``schedule``: keyword arguments of ``optim.learning_rate`` except ``step``.
    ``run``: the run directory (``rnnlab.runs.RunDir``), which saves checkpoints, the best model
    and the metrics log.
    ``ema_decay``: keep the weights' moving average in ``state.average`` (rnnlab.averaging) and
    evaluate, sample and save ``best`` with it; 0 = off.
    ``quiet``: no bar and no lines; ``log_evals=False``: the bar only (e.g. inside a search).
    Raises ``TrainingDiverged`` (after keeping the last good checkpoint) on a
    non-finite loss or gradient.
    """
    return _Loop(task, trainer, state, budget, schedule, run, config, quiet, log_evals, ema_decay).train()


class _Loop:
    """One invocation of the loop: the steps, the evaluation schedule, and what is saved when.

    Order matters for a crash at any point: everything an evaluation draws (a sample's random
    numbers) and appends (metrics.jsonl, samples.jsonl) comes before the checkpoint, which
    records the logs' lengths; resuming from the previous checkpoint cuts them back.
    """

    def __init__(self, task, trainer, state, budget, schedule, run, config, quiet, log_evals, ema_decay):
        from tqdm import tqdm

        from .memory import keep_freed_blocks

        keep_freed_blocks()  # steps allocate the same large temporaries again and again
        self.task, self.trainer, self.state, self.budget = task, trainer, state, budget
        self.schedule, self.run, self.config, self.ema_decay = schedule, run, config, ema_decay
        # A config dict without the setting keeps dropout's original sites (the first layer's input too).
        self.input_dropout = config.get("input_dropout", True)
        # Under torchrun (see rnnlab.distributed) this process trains on its rows of each batch;
        # only rank 0 talks, and only rank 0 writes in the run directory (the others get scratch ones).
        self.shard = distributed.current()
        quiet = quiet or not self.shard.is_main
        show_bar = not quiet and sys.stderr.isatty()
        self.say = (lambda msg: None) if quiet or not log_evals else (tqdm.write if show_bar else print)
        self.bar = tqdm(
            total=budget.max_steps or None,
            initial=state.step,
            disable=not show_bar,
            unit="step",
            dynamic_ncols=True,
            smoothing=0.1,
        )
        if state.carry is None:
            state.carry = trainer.init_carry(task.batch_size)
        if not ema_decay:
            state.average = None
        elif state.average is None:  # a new run, or --ema-decay turned on at --resume: start from here
            state.average = averaging.start(trainer.params)
        state.carry = self.shard.own_rows(state.carry)  # checkpoints hold every row of the global batch
        self.last_saved_step = state.step
        self.invocation_seconds = 0.0
        self.items_since, self.seconds_since = 0, 0.0
        self.fit = FitBudget(budget.fit_probe_steps, state.step) if budget.fit_probe_steps else None
        if state.fitted_steps:  # a resumed run of --fit-budget: the horizon it fitted
            self._set_horizon(state.fitted_steps)

    def _set_horizon(self, steps: int) -> None:
        self.state.fitted_steps = self.budget.max_steps = steps
        self.budget.max_steps_flag = "--fit-budget's horizon"
        self.schedule = dict(self.schedule, total_steps=steps)
        self.bar.total = steps
        self.bar.refresh()

    def learning_rate(self, step: int) -> float:
        """The schedule's rate at ``step``; before --fit-budget has fitted the horizon, the
        warm-up or the base rate (a cosine decay barely moves in the few steps it measures)."""
        if self.fit is not None and not self.state.fitted_steps:
            return learning_rate(step=step, **dict(self.schedule, schedule="constant"))
        return learning_rate(step=step, **self.schedule)

    # ----- saving and evaluating

    def save(self) -> None:
        full = dataclasses.replace(self.state, carry=self.shard.gather_rows(self.state.carry))
        save_checkpoint(self.run, self.trainer, self.task, full, self.config)
        self.last_saved_step = self.state.step

    def evaluate_and_save(self, final: bool) -> dict:
        """Evaluate (with the weights' average, when kept), log, keep the best, then checkpoint."""
        with averaging.holding(self.trainer, self.state.average):
            record, line = self._evaluate_and_keep_best(final)
        self.save()
        self.say(line)
        return record

    def _evaluate_and_keep_best(self, final: bool) -> tuple[dict, str]:
        state, task = self.state, self.task
        metrics = task.evaluate(self.trainer)
        val = metrics.get("val_loss")
        throughput = self.items_since / self.seconds_since if self.seconds_since > 0 else None
        # The plain mean of the step losses since the previous evaluation: per epoch, this is the
        # "training loss" of the classic epoch loop (the smoothed value weights recent steps more).
        mean_since = state.loss_sum_since_eval / state.steps_since_eval if state.steps_since_eval else None
        record = {
            "step": state.step,
            "train_loss": state.smoothed_loss,
            "train_loss_mean": mean_since,
            **metrics,
            "lr": self.learning_rate(max(0, state.step - 1)),
            "train_seconds": round(state.train_seconds, 3),
            f"{task.item_name}_per_s": throughput and round(throughput, 1),
        }
        line = task.describe_eval(self.trainer, state, record, final)
        self.run.log_metrics(record)
        self.items_since, self.seconds_since = 0, 0.0
        state.loss_sum_since_eval, state.steps_since_eval = 0.0, 0
        if val is not None and (state.best_val_loss is None or val < state.best_val_loss):
            state.best_val_loss = val
            save_best(self.run, self.trainer, task, state, self.config, metrics)
        return record, line

    def _stop_after_evaluation(self, record: dict, at_start: bool = False) -> str | None:
        """Why to stop after this evaluation: the validation target (not for the untrained model's),
        then whatever watches the run."""
        reason = None if at_start else after_evaluation_stop(self.budget, record)
        if reason is None:
            hook = _after_evaluation.get()  # a sweep's pruner, for one
            reason = hook(self.state.step, record) if hook is not None else None
        return reason

    # ----- one step

    def step(self) -> None:
        """Draw a batch (and its dropout masks), update, and fold the loss into the running numbers."""
        state, trainer, shard = self.state, self.trainer, self.shard
        t0 = time.perf_counter()
        inputs, targets, reset = self.task.next_batch()
        rows = len(inputs)
        # Drawn for the whole batch on every process (the same generator everywhere), then split.
        masks = dropout_masks(
            trainer.spec, trainer.dropout, state.dropout_rng, rows, inputs.shape[1], trainer.dtype, self.input_dropout
        )
        if shard.active:
            masks = mask_rows(masks, shard.rows)
            if rows < shard.world:
                raise UserError(
                    f"a batch of {rows} rows cannot be split over {shard.world} processes; "
                    "choose a --batch-size whose last batch keeps at least one row per process"
                )
            inputs, targets = shard.rows(inputs), shard.rows(targets)
            trainer.loss_weight = shard.world if trainer.reduction == "sum" else shard.loss_weight(rows)
        if reset:
            state.carry = trainer.init_carry(inputs.shape[0])
        lr = self.learning_rate(state.step)
        loss, grad_norm, state.carry = trainer.train_step(state.carry, inputs, targets, lr, masks)
        if shard.active:  # the mean over the whole batch, as one process would report it
            loss = shard.sum(loss * len(inputs) / rows)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.bar.close()
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            raise TrainingDiverged(
                f"{what} became {loss if what == 'loss' else grad_norm} at step {state.step + 1}; "
                f"stopped and kept the last good checkpoint (step {self.last_saved_step}) in {self.run.path}; "
                "lower --lr or use gradient clipping, then --resume"
            )
        state.step += 1
        if state.average is not None:
            averaging.update_(state.average, trainer.params, self.ema_decay, state.step)
        # Debiased moving average (as Adam's moments): early values are not dragged
        # towards an arbitrary start, so --target-loss means the same at step 10 and 10,000.
        state.loss_ema = SMOOTHING * state.loss_ema + (1 - SMOOTHING) * loss
        state.smoothed_loss = state.loss_ema / (1 - SMOOTHING**state.step)
        dt = time.perf_counter() - t0
        state.train_seconds += dt
        self.invocation_seconds += dt
        self.items_since += self.task.items_per_step
        self.seconds_since += dt
        state.loss_sum_since_eval += loss
        state.steps_since_eval += 1
        if self.fit is not None and not state.fitted_steps:
            self._fit_horizon()
        self.bar.update(1)
        if state.step % 10 == 0 or state.step == 1:
            self.bar.set_postfix(
                loss=f"{state.smoothed_loss:.3f}",
                **{f"{self.task.item_name}/s": f"{self.items_since / max(self.seconds_since, 1e-9):.0f}"},
            )

    def _fit_horizon(self) -> None:
        """--fit-budget: once the probe steps are done, the horizon from their rate."""
        seconds_per_step = self.fit.measure(self.state.step, self.invocation_seconds)
        if seconds_per_step is None:
            return
        if self.shard.active:  # every process fits the same horizon: the mean of their rates
            seconds_per_step = self.shard.sum(seconds_per_step) / self.shard.world
        left = self.budget.max_minutes * 60 - self.invocation_seconds
        steps = self.state.step + max(1, int(left / seconds_per_step))
        self._set_horizon(steps)
        self.say(
            f"--fit-budget: {seconds_per_step * 1e3:.1f} ms a step over steps {self.fit.start + 1}-{self.state.step}: "
            f"{steps:,} steps fit in --max-minutes {self.budget.max_minutes:g}; the schedule ends there"
        )

    # ----- the whole invocation

    def train(self) -> dict:
        state, budget, shard = self.state, self.budget, self.shard
        if state.step == 0 and shard.any(not self.run.has_checkpoint()):
            self.save()  # a good state to fall back to
        started = time.perf_counter()
        stop_reason = None
        if budget.eval_at_start and state.step == 0 and state.best_val_loss is None:
            stop_reason = self._stop_after_evaluation(self.evaluate_and_save(final=False), at_start=True)
        with StopFlag() as stop:
            while stop_reason is None:
                stop_reason = budget_stop(budget, state.step, self.invocation_seconds, state.smoothed_loss)
                if stop_reason is None and stop.requested:
                    stop_reason = stop.reason
                if shard.active and shard.any(stop_reason is not None):  # all processes stop together
                    stop_reason = stop_reason or "another process stopped"
                if stop_reason:
                    break
                self.step()
                if state.step % budget.eval_every == 0:
                    stop_reason = self._stop_after_evaluation(self.evaluate_and_save(final=False))
        self.bar.close()
        interrupted = shard.any(stop.requested) if shard.active else stop.requested
        if interrupted:
            # Stopped by a signal: keep the state without an evaluation, so the run continues on
            # --resume exactly as if it had never stopped (same metrics rows, same samples).
            if self.last_saved_step != state.step:
                self.save()
        elif state.steps_since_eval > 0 or (state.step == 0 and not budget.eval_at_start):
            self.evaluate_and_save(final=True)
        return {
            "stop_reason": stop_reason,
            "step": state.step,
            "smoothed_loss": state.smoothed_loss,
            "best_val_loss": state.best_val_loss,
            "train_seconds": state.train_seconds,
            "wall_seconds": time.perf_counter() - started,
            "interrupted": interrupted,
            "fitted_steps": state.fitted_steps or None,
        }
