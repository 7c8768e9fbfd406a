"""An exponential moving average of the weights (Polyak averaging; ``--ema-decay``).

The average of the weights w_1 .. w_t after steps 1 .. t is debiased, as Adam's moments are:

    average_t = sum_s (1 - d) d^(t-s) w_s / (1 - d^t),

so the initial weights never enter it and a short run is averaged over what it trained, not
dragged towards its random start.  The same thing as a running update, which is what is kept:
average_t = average_(t-1) + (1 - d) / (1 - d^t) (w_t - average_(t-1)); the first step's weight is 1.

The training loop updates the average after every step from the trainer's weights in their
backend-free form, so it is the same on every backend, and saves it with the checkpoint
(``average/<name>``), so a resumed run continues it exactly.  Evaluation, samples and the saved
models read the average; training itself continues on the raw weights, which holding the average
for a while leaves bit for bit as they were.

Why it helps: late in a run the raw weights still jitter around a minimum with the step size; the
average sits nearer its middle (at the end of a cosine schedule less so, but measurably: see the
frontier page, docs/frontier.md).
"""

from __future__ import annotations

import contextlib

import numpy as np


def start(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A new average: a copy of ``params`` (which the first update replaces when it is step 1's)."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def update_(average: dict[str, np.ndarray], params: dict[str, np.ndarray], decay: float, step: int) -> None:
    """Fold in ``params``, the weights after 1-based ``step``, in place (see the module's formula)."""
    weight = (1.0 - decay) / (1.0 - decay**step)
    for k, a in average.items():
        change = np.subtract(params[k], a)  # one temporary per tensor: this runs every step
        change *= weight
        a += change


@contextlib.contextmanager
def holding(trainer, average: dict[str, np.ndarray] | None):
    """Inside the block the trainer computes with ``average`` (or any saved weights, such as the
    run's best; nothing changes when it is None); after it, with its own weights again, restored
    from an exact copy."""
    if average is None:
        yield
        return
    own = start(trainer.params)
    trainer.load_params(average)
    try:
        yield
    finally:
        trainer.load_params(own)
