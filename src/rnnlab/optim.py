"""Optimizers, gradient clipping and learning-rate schedules on dicts of NumPy arrays.

Updates are in place (no new parameter arrays per step).  Optimizer state is a
flat dict of named arrays (``"m/layers.0.W"`` ...) plus an integer step
counter, so it goes into a checkpoint as tensors and comes back exactly.

Formulas (same meaning as torch.optim / optax, so backends agree):

* ``sgd``:      p -= lr * g
* ``adagrad``:  s += g^2;  p -= lr * g / sqrt(s + eps)   (min-char-rnn form, eps=1e-8)
* ``adam``:     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
                p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)

Decoupled weight decay (``weight_decay`` = wd, as AdamW, with any update rule): before the
update every weight matrix (2-D parameter; not the biases) is scaled, p *= 1 - lr * wd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backends import compiled
from .errors import UserError

OPTIMIZERS = ("sgd", "adagrad", "adam")
SCHEDULES = ("constant", "cosine")
CLIP_KINDS = ("norm", "value", "none")


def clip_gradients_(grads: dict[str, np.ndarray], kind: str, limit: float) -> float:
    """Clip in place; returns the global L2 norm before clipping.

    ``norm``: scale all gradients so their global L2 norm is at most ``limit``.
    ``value``: clamp every element to [-limit, limit] (min-char-rnn).
    """
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if kind == "norm":
        if norm > limit:
            scale = limit / (norm + 1e-12)
            for g in grads.values():
                g *= scale
    elif kind == "value":
        for g in grads.values():
            np.clip(g, -limit, limit, out=g)
    elif kind != "none":
        raise UserError(f"unknown clip kind {kind!r}; choose one of {', '.join(CLIP_KINDS)}")
    return norm


def learning_rate(
    base_lr: float, schedule: str, step: int, total_steps: int | None, warmup_steps: int = 0, min_ratio: float = 0.1
) -> float:
    """LR for 0-based ``step``: optional linear warm-up, then constant or cosine decay to
    ``min_ratio * base_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        if not total_steps:
            raise UserError("the cosine schedule needs a step budget: pass --max-steps")
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    raise UserError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


@dataclass
class Optimizer:
    """A NumPy optimizer; ``update_(params, grads, lr)`` changes ``params`` in place."""

    name: str
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step: int = 0
    state: dict[str, np.ndarray] = field(default_factory=dict)
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")

    def _slot(self, slot: str, key: str, like: np.ndarray) -> np.ndarray:
        full = f"{slot}/{key}"
        buf = self.state.get(full)
        if buf is None:
            buf = self.state[full] = np.zeros_like(like)
        return buf

    def update_(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.step += 1
        b1, b2 = self.beta1, self.beta2
        bias1 = 1.0 - b1**self.step
        bias2_sqrt = math.sqrt(1.0 - b2**self.step)
        fused = self._compiled_adam(params, grads)
        if fused is not None:
            self._adam_update_compiled(fused, params, grads, lr, bias1, bias2_sqrt)
            return
        if self.weight_decay:
            shrink = 1.0 - lr * self.weight_decay
            for p in params.values():
                if p.ndim == 2:
                    p *= shrink
        if self.name == "sgd":
            for k, p in params.items():
                p -= lr * grads[k]
        elif self.name == "adagrad":
            for k, p in params.items():
                g = grads[k]
                s = self._slot("sum_sq", k, p)
                s += g * g
                p -= lr * g / np.sqrt(s + self.eps)
        else:
            for k, p in params.items():
                g = grads[k]
                m = self._slot("m", k, p)
                v = self._slot("v", k, p)
                m *= b1
                m += (1.0 - b1) * g
                v *= b2
                v += (1.0 - b2) * (g * g)
                denom = np.sqrt(v)
                denom /= bias2_sqrt
                denom += self.eps
                p -= (lr / bias1) * (m / denom)

    def _compiled_adam(self, params: dict, grads: dict):
        """numba's kernels (``backends.numpy_kernels``) where this Adam step can run as one pass a
        tensor: Adam, and every tensor, gradient and slot C-contiguous, of one shape and float dtype."""
        if self.name != "adam" or not params:
            return None
        dtype = next(iter(params.values())).dtype
        fused = compiled.kernels(dtype)
        if fused is None:
            return None
        for k, p in params.items():
            arrays = (p, grads[k], self._slot("m", k, p), self._slot("v", k, p))
            if any(a.dtype != dtype or a.shape != p.shape or not a.flags.c_contiguous for a in arrays):
                return None
        return fused

    def _adam_update_compiled(self, fused, params: dict, grads: dict, lr: float, bias1: float, bias2_sqrt: float):
        """``update_``'s Adam branch (and weight decay) with one kernel call a tensor: the same
        float operations in the same order, so the same bits as the NumPy code."""
        b1, b2 = self.beta1, self.beta2
        shrink = 1.0 - lr * self.weight_decay if self.weight_decay else 1.0
        for k, p in params.items():
            t = p.dtype.type  # NumPy casts a Python float to the array's dtype before it computes
            m, v = self._slot("m", k, p), self._slot("v", k, p)
            decay = t(shrink if p.ndim == 2 else 1.0)
            fused.adam_update(
                p,
                grads[k],
                m,
                v,
                decay,
                t(b1),
                t(1.0 - b1),
                t(b2),
                t(1.0 - b2),
                t(bias2_sqrt),
                t(self.eps),
                t(lr / bias1),
            )

    # Backend-free form for checkpoints.
    def state_tensors(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    def meta(self) -> dict:
        return {
            "name": self.name,
            "step": self.step,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    @classmethod
    def restore(cls, meta: dict, tensors: dict[str, np.ndarray]) -> Optimizer:
        opt = cls(
            meta["name"],
            beta1=meta["beta1"],
            beta2=meta["beta2"],
            eps=meta["eps"],
            step=int(meta["step"]),
            weight_decay=float(meta.get("weight_decay", 0.0)),
        )
        opt.state = {k: np.array(v) for k, v in tensors.items()}
        return opt
