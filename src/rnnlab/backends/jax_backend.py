"""JAX backend: the same cells and parameter dict, time loop by ``jax.lax.scan``.

Public arrays are NumPy and batch-first, as on every backend; inside, inputs
are time-major so ``lax.scan`` walks the leading axis.  A cell is a pure
function ``step(p, carry, a) -> (carry, h)`` of the layer's parameters, the
carry and the precomputed input projection ``a = x W + b`` of one time step.
float64 works when the parameters are float64 (x64 is switched on at import;
float32 parameters stay float32).

Work in progress toward the denoise issue: forward, loss and gradients
(proven equal to the NumPy backend by tests); the jitted optax training step
is still to come.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..cells import ModelSpec

jax.config.update("jax_enable_x64", True)

name = "jax"


def _sigmoid(x):
    return 0.5 * (1.0 + jnp.tanh(0.5 * x))  # the NumPy backend's form, so float64 results agree


def _rnn(p, h, a):
    h = jnp.tanh(a + h @ p["U"])
    return h, h


def _gru(p, h, a):
    H = h.shape[-1]
    U = p["U"]
    rz = _sigmoid(a[:, :2 * H] + h @ U[:, :2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = jnp.tanh(a[:, 2 * H:] + (r * h) @ U[:, 2 * H:])
    h = n + z * (h - n)
    return h, h


def _gru_reset_after(p, h, a):
    H = h.shape[-1]
    hu = h @ p["U"] + p["b_U"]
    rz = _sigmoid(a[:, :2 * H] + hu[:, :2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = jnp.tanh(a[:, 2 * H:] + r * hu[:, 2 * H:])
    h = n + z * (h - n)
    return h, h


def _lstm(p, carry, a):
    h, c = carry
    H = h.shape[-1]
    g = a + h @ p["U"]
    i, f = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H])
    cand, o = jnp.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
    c = f * c + i * cand
    h = o * jnp.tanh(c)
    return (h, c), h


CELLS = {"rnn": _rnn, "gru": _gru, "gru_reset_after": _gru_reset_after, "lstm": _lstm}


def _layer(params, k):
    prefix = f"layers.{k}."
    return {key[len(prefix):]: v for key, v in params.items() if key.startswith(prefix)}


def _forward_tm(params, spec: ModelSpec, carry, x):
    """x: [T, B] ids or [T, B, F]; returns outputs [T, B, O] and the new carry."""
    if spec.input_kind == "dense_relu":
        x = jax.nn.relu(x @ params["input.W"] + params["input.b"])
    cell = CELLS[spec.cell]
    new_carry = []
    for k in range(spec.num_layers):
        p = _layer(params, k)
        A = (p["W"][x] if k == 0 and spec.input_kind == "onehot" else x @ p["W"]) + p["b"]
        c_k, x = jax.lax.scan(partial(cell, p), carry[k], A)
        new_carry.append(c_k)
    return x @ params["readout.W"] + params["readout.b"], new_carry


def _loss(params, spec, carry, x, targets, loss):
    Y, new_carry = _forward_tm(params, spec, carry, x)
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(Y, axis=-1)
        value = -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))
    else:
        if targets.shape != Y.shape:
            raise ValueError(f"targets shape {targets.shape} must equal outputs shape {Y.shape} "
                             "(a [B,T] vs [B,T,1] mismatch would broadcast silently)")
        value = jnp.mean((Y - targets) ** 2)
    return value, new_carry


@partial(jax.jit, static_argnums=(1, 5))
def _value_and_grad(params, spec, carry, x, targets, loss):
    return jax.value_and_grad(_loss, has_aux=True)(params, spec, carry, x, targets, loss)


@partial(jax.jit, static_argnums=(1,))
def _forward_jit(params, spec, carry, x):
    return _forward_tm(params, spec, carry, x)


def _time_major(spec, inputs):
    inputs = np.asarray(inputs)
    return inputs.T if spec.input_kind == "onehot" else inputs.transpose(1, 0, 2)


def _carry_in(carry):
    return [tuple(jnp.asarray(a) for a in c) if isinstance(c, tuple) else jnp.asarray(c) for c in carry]


def _carry_out(carry):
    return [tuple(np.asarray(a) for a in c) if isinstance(c, tuple) else np.asarray(c) for c in carry]


def init_carry(spec: ModelSpec, batch_size: int, dtype=np.float32) -> list:
    from .numpy_backend import init_carry as np_init_carry

    return np_init_carry(spec, batch_size, dtype)


def forward(params: dict, spec: ModelSpec, carry: list, inputs: np.ndarray):
    """Outputs ``[B, T, O]`` (NumPy) and the carry after the last step."""
    Y, new_carry = _forward_jit({k: jnp.asarray(v) for k, v in params.items()}, spec, _carry_in(carry),
                                jnp.asarray(_time_major(spec, inputs)))
    return np.asarray(Y).transpose(1, 0, 2), _carry_out(new_carry)


def loss_and_grads(params: dict, spec: ModelSpec, carry: list, inputs: np.ndarray, targets: np.ndarray,
                   loss: str = "cross_entropy", reduction: str = "mean"):
    """Same contract as ``numpy_backend.loss_and_grads`` (loss is the per-element mean)."""
    targets = np.asarray(targets)
    targets_tm = targets.T if loss == "cross_entropy" else targets.transpose(1, 0, 2)
    (value, new_carry), grads = _value_and_grad({k: jnp.asarray(v) for k, v in params.items()}, spec,
                                                _carry_in(carry), jnp.asarray(_time_major(spec, inputs)),
                                                jnp.asarray(targets_tm), loss)
    grads = {k: np.asarray(v) for k, v in grads.items()}
    if reduction == "sum":
        count = targets.size
        grads = {k: v * count for k, v in grads.items()}
    return float(value), grads, _carry_out(new_carry)
