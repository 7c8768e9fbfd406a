"""An exponential moving average of the weights (Polyak averaging; ``--ema-decay``).

The training loop updates the average after every step from the trainer's weights in their
backend-free form, so it is the same on every backend, and saves it with the checkpoint
(``average/<name>``), so a resumed run continues it exactly.  Evaluation, samples and the saved
models read the average; training itself continues on the raw weights, which holding the average
for a while leaves bit for bit as they were.

Why it helps: late in a run the raw weights still jitter around a minimum with the step size; the
average sits nearer its middle (at the end of a cosine schedule less so, but measurably: see the
README's frontier section).
"""

from __future__ import annotations

import contextlib

import numpy as np


def start(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A new average: a copy of ``params`` (the weights before the first step it follows)."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def update_(average: dict[str, np.ndarray], params: dict[str, np.ndarray], decay: float) -> None:
    """average <- decay * average + (1 - decay) * params, in place."""
    for k, a in average.items():
        a *= decay
        a += (1.0 - decay) * np.asarray(params[k])


@contextlib.contextmanager
def holding(trainer, average: dict[str, np.ndarray] | None):
    """Inside the block the trainer computes with ``average`` (nothing changes when it is None);
    after it, with its own weights again, restored from an exact copy."""
    if average is None:
        yield
        return
    own = start(trainer.params)
    trainer.load_params(average)
    try:
        yield
    finally:
        trainer.load_params(own)
