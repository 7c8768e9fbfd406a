"""When a run stops: the budget's rules, checked between steps, and the signals that ask it to.

Nothing here trains; the loop (``rnnlab.train``) asks ``budget_stop`` before each step and
``after_evaluation_stop`` after each evaluation, and holds a ``StopFlag`` while it runs.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass
class Budget:
    """How long a run trains and how often it evaluates (a task's ``budget()`` makes one)."""

    max_steps: int = 0  # total steps of the run; 0 = none
    max_minutes: float = 0.0  # training time of this invocation; 0 = none
    target_loss: float = 0.0  # smoothed train loss to stop under; 0 = off
    target_val_loss: float = 0.0  # validation loss to stop at (checked at each eval); 0 = off
    eval_every: int = 100
    eval_at_start: bool = False  # evaluate the untrained model too (step 0), so it can be the best
    max_steps_flag: str = ""  # how the user asked for max_steps, when not --max-steps ("--epochs 5")
    # --fit-budget: max_steps is unknown at the start; after this many steps the loop measures the
    # step rate and sets it (and the schedule's horizon) to the steps that fit in max_minutes.
    fit_probe_steps: int = 0


def budget_stop(budget: Budget, step: int, invocation_seconds: float, smoothed_loss: float | None) -> str | None:
    """The reason to stop before the next step, or None: a step count, a time limit, a loss target."""
    if budget.max_steps and step >= budget.max_steps:
        if budget.max_steps_flag:
            return f"reached {budget.max_steps_flag}"
        return f"reached --max-steps {budget.max_steps}"
    if budget.max_minutes and invocation_seconds >= budget.max_minutes * 60:
        return f"reached --max-minutes {budget.max_minutes:g}"
    if budget.target_loss and smoothed_loss is not None and smoothed_loss < budget.target_loss:
        return f"smoothed loss {smoothed_loss:.4f} under --target-loss {budget.target_loss:g}"
    return None


def after_evaluation_stop(budget: Budget, record: dict) -> str | None:
    """The reason to stop after an evaluation (its ``record``), or None: the validation target."""
    val = record.get("val_loss")
    if budget.target_val_loss and val is not None and val <= budget.target_val_loss:
        return f"validation loss {val:.4f} reached --target-val-loss {budget.target_val_loss:g}"
    return None


RECEIVED: list[int] = []  # the stopping signals this process received, in order


class InterruptOnSignals:
    """``with InterruptOnSignals() as caught:`` SIGINT and SIGTERM raise ``KeyboardInterrupt``
    (a run inside, holding its own ``StopFlag``, stops at a step instead); ``caught.signals`` are
    the ones received meanwhile, so a command stopped by SIGTERM can say so and exit 143."""

    def __init__(self):
        self._previous, self._start = {}, 0

    @property
    def signals(self) -> list[int]:
        return RECEIVED[self._start :]

    def __enter__(self):
        def handler(signum, frame):
            RECEIVED.append(signum)
            raise KeyboardInterrupt

        self._start = len(RECEIVED)
        for signum in StopFlag.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


class StopFlag:
    """Ctrl-C (SIGINT) and SIGTERM, which schedulers send before they preempt a job, set a flag
    checked between steps, so a step is never cut in half and the run stops with a checkpoint.

    Flags nest and share one request: a run's flag inside a sweep worker's starts out requested
    when the worker's was (a signal between trials, or in a run's set-up before its loop, stops the
    next run at once, with its checkpoint), and a signal during the run sets the worker's too."""

    SIGNALS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}
    _active: list[StopFlag] = []  # the flags now entered, outermost first
    _pending = ""  # a ``request_all`` made while no flag was entered: the next one starts requested

    def __init__(self):
        self.requested = False
        self.reason = ""
        self._previous = {}

    def __enter__(self):
        def handler(signum, frame):
            RECEIVED.append(signum)
            if self.requested:  # a second signal means: stop now
                raise KeyboardInterrupt
            StopFlag.request_all(self.SIGNALS.get(signum, "interrupted"))

        outer = next((flag.reason for flag in StopFlag._active if flag.requested), StopFlag._pending)
        if outer:
            self.requested, self.reason = True, outer
        StopFlag._active.append(self)  # before the handlers: a signal at once reaches this flag too
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: no handler, signals behave as usual
                pass
        return self

    @classmethod
    def request_all(cls, reason: str) -> None:
        """Ask every entered flag (or, with none entered, the next) to stop as a first signal does,
        never as a second: for a signal that one cause may send more than once (Linux sends a
        parent-death signal each time a dying parent's thread hands its children on)."""
        if not cls._active:
            cls._pending = cls._pending or reason
        for flag in cls._active:
            if not flag.requested:
                flag.requested, flag.reason = True, reason

    def __exit__(self, *exc):
        StopFlag._active.remove(self)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
