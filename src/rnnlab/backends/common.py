"""What every backend shares, and no backend owns: target checks, the zero carry, the tensors
a checkpoint holds.  Backends are peers: each imports this module, none imports another.

NumPy only; importing it changes no global state.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..cells import ModelSpec, has_norm, has_residual


class Trainer(Protocol):
    """What every backend's ``Trainer`` is to the rest of rnnlab (the loop, the runs, the tasks,
    ``rnnlab.Model``).  Built as ``Trainer(spec, params, optimizer, loss, reduction, clip,
    clip_value, dropout)`` (torch adds ``device``); parameters cross in and out as the named
    NumPy dict of ``rnnlab.cells``, carries as lists over layers (``rnnlab.carry``), batch-first.
    ``tests/test_plugins.py`` checks that each backend's class has all of it."""

    name: str  # the backend's name
    spec: ModelSpec
    loss: str  # cross_entropy, mse or gaussian_nll
    reduction: str  # mean or sum over the batch
    dropout: float  # the rate the loop draws masks at (rnnlab.dropout)
    dtype: np.dtype

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights as the named NumPy dict (a copy or a view; copy before keeping it)."""

    def init_carry(self, batch_size: int) -> list:
        """The zero carry of ``batch_size`` rows, in the backend's own array type."""

    def train_step(self, carry, inputs, targets, lr: float, masks: dict | None = None) -> tuple:
        """One step: (loss, grad_norm, new carry); the weights stay as they were when either is not finite."""

    def forward(self, carry, inputs) -> tuple:
        """``inputs`` ``[B, T, ...]`` -> (outputs ``[B, T, O]``, carry after them)."""

    def step(self, carry, x) -> tuple:
        """One time step: ``x`` ``[B, ...]`` -> (new carry, outputs ``[B, O]``)."""

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace the weights' values (same names and shapes); the optimizer state stays."""

    def state_tensors(self) -> dict[str, np.ndarray]:
        """Weights and optimizer state as the checkpoint's named tensors."""


def init_carry(spec: ModelSpec, batch_size: int, dtype=np.float32) -> list:
    """Zero initial state: a list over layers of ``[B, H]`` arrays (``(h, c)`` for LSTM)."""
    shape, parts = (batch_size, spec.hidden_size), len(spec.cell_info.carry)
    if parts > 1:
        return [tuple(np.zeros(shape, dtype) for _ in range(parts)) for _ in range(spec.num_layers)]
    return [np.zeros(shape, dtype) for _ in range(spec.num_layers)]


LOSSES = ("cross_entropy", "mse", "mae", "gaussian_nll")
HALF_LOG_2PI = 0.5 * float(np.log(2 * np.pi))  # the Gaussian NLL's constant, so it is a true NLL in nats


def check_targets(spec: ModelSpec, loss: str, inputs, targets) -> np.ndarray:
    """``targets`` as an array, after checking it against ``inputs`` [B, T, ...]: ``[B, T]`` ids for
    cross_entropy; ``[B, T', O]`` values for mse, aligned with the *last* T' <= T outputs
    (T' = 1: only the output after the whole window is scored, as a forecaster trained on
    its final step).  gaussian_nll: ``[B, T', 1]`` values against outputs of two columns, the
    mean and the log-variance.  Every backend calls this before its loss.

    The exact mse shape matters: ``[B, T]`` targets against ``[B, T, 1]`` outputs
    would broadcast to ``[B, T, T]`` and quietly train the model towards the mean.
    """
    B, T = np.shape(inputs)[:2]
    if spec.decodes:  # a segment decoder's outputs are its M decoder rows, not one per input step
        T = spec.decode_steps
    targets = np.asarray(targets)
    if loss == "cross_entropy":
        if targets.shape != (B, T):
            raise ValueError(f"targets must be [B, T] = {(B, T)} ids, got {targets.shape}")
    elif loss in ("mse", "mae"):
        ok = (
            targets.ndim == 3
            and targets.shape[0] == B
            and 1 <= targets.shape[1] <= T
            and targets.shape[2] == spec.output_size
        )
        if not ok:
            raise ValueError(
                f"targets must be [B, T', O] with B = {B}, 1 <= T' <= T = {T}, O = {spec.output_size}, "
                f"got {targets.shape} (a [B,T] vs [B,T,1] mismatch would broadcast silently)"
            )
    elif loss == "gaussian_nll":
        ok = targets.ndim == 3 and targets.shape[0] == B and 1 <= targets.shape[1] <= T and targets.shape[2] == 1
        if not ok or spec.output_size != 2:
            raise ValueError(
                f"gaussian_nll needs outputs of 2 columns (mean, log-variance), got {spec.output_size}, "
                f"and targets [B, T', 1] with B = {B}, 1 <= T' <= T = {T}, got {targets.shape}"
            )
    else:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    return targets


def state_tensors(params: dict, optimizer) -> dict[str, np.ndarray]:
    """What a checkpoint holds of a trainer: ``params/<name>`` and ``opt/<name>`` arrays (the
    optimizer in the backend-free form of ``rnnlab.optim``, brought up to date by the caller)."""
    out = {f"params/{k}": np.asarray(v) for k, v in params.items()}
    out.update({f"opt/{k}": v for k, v in optimizer.state_tensors().items()})
    return out


def folds_embedding(spec: ModelSpec, masks: dict) -> bool:
    """Whether layer 0 reads the embedding as it is (no dropout mask, norm or residual on it): then
    its input projection embed.W[ids] @ W is a row gather from the [V, G*H] table embed.W @ W,
    which replaces the step's [B*T, E] x [E, G*H] product and its two gradient products with
    products over V rows (the NumPy and JAX backends do so; torch's fused modules cannot)."""
    return (
        spec.input_kind == "embedding"
        and "layers.0" not in masks
        and not has_norm(spec, 0)
        and not has_residual(spec, 0)
    )
