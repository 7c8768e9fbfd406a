"""JAX backend: the same cells and parameter dict, time loop by ``jax.lax.scan``.

Public arrays are NumPy and batch-first, as on every backend; inside, inputs
are time-major so ``lax.scan`` walks the leading axis.  A cell is a pure
function ``step(p, carry, a) -> (carry, h)`` of the layer's parameters, the
carry and the precomputed input projection ``a = x W + b`` of one time step.
float64 works when the parameters are float64 (JAX's process-wide 64-bit mode is
switched on the first time float64 parameters arrive, see ``_allow_dtype``; float32
parameters stay float32).

``Trainer`` does a whole update (forward, ``value_and_grad``, optax clipping
and update) in one jitted function and keeps optimizer state convertible to
the backend-free form of ``rnnlab.optim``, so checkpoints move between backends.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ..carry import cell_state, hidden, map_arrays, with_hidden
from ..cells import ID_INPUTS, RMS_EPS, ModelSpec, cell_info, has_norm, has_residual, params_dtype, readout_weight
from . import common
from .common import check_targets


def _allow_dtype(dtype) -> None:
    """JAX computes in float32 unless its 64-bit mode is on, and that mode is process-wide: it is
    switched on the first time a float64 model is asked for (not on import), and float32 models
    stay float32 either way."""
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


name = "jax"


# Cells with one recurrent matmul (rnn, gru_reset_after, lstm) are split at it.  Each
# step computes ``z = h @ U`` and folds it into the step's input projection ``a`` as
# ``s = a + z`` (the gate pre-activations; gru_reset_after keeps the candidate's
# ``a_n`` in ``s`` and its ``h U_n + b_U_n`` apart as ``e``), then a pointwise ``step``
# maps ``(s, e, carry)`` to the next carry.  The pointwise parts' vjps are written by
# hand (checked against the NumPy backend's BPTT in the tests), so ``_scan_layer``
# can give the scan its own backward pass.  Cho's GRU has a second matmul behind its
# reset gate, so it is written whole and left to autodiff of the scan.


def _sigmoid(x):
    return 0.5 * (1.0 + jnp.tanh(0.5 * x))  # the NumPy backend's form, so float64 results agree


_h, _with_h = hidden, with_hidden  # one layer's carry: its h; the same carry with another h


class _RNN:
    """Each split cell: ``fold`` adds the recurrent product; ``step`` gives the new carry and what
    the backward pass keeps of the step (activated gates, so ``vjp`` evaluates no tanh again);
    ``vjp`` -> (ds, de, d_carry) with d_carry the gradient reaching the previous carry other than
    through the recurrent product."""

    @staticmethod
    def fold(q, a, z):
        return a + z, None

    @staticmethod
    def step(s, e, h):
        h_new = jnp.tanh(s)
        return h_new, h_new

    @staticmethod
    def vjp(h_new, e, h, dh):
        return dh * (1.0 - h_new * h_new), None, jnp.zeros_like(h)


class _GRUResetAfter:
    @staticmethod
    def fold(q, a, z):
        H = z.shape[-1] // 3
        hu = z + q["b_U"]
        return jnp.concatenate([a[:, : 2 * H] + hu[:, : 2 * H], a[:, 2 * H :]], axis=1), hu[:, 2 * H :]

    @staticmethod
    def step(s, e, h):
        H = e.shape[-1]
        r, zg = _sigmoid(s[:, :H]), _sigmoid(s[:, H : 2 * H])
        n = jnp.tanh(s[:, 2 * H :] + r * e)
        return n + zg * (h - n), (r, zg, n)

    @staticmethod
    def vjp(gates, e, h, dh):
        r, zg, n = gates
        d_pre_n = dh * (1.0 - zg) * (1.0 - n * n)
        ds = jnp.concatenate([d_pre_n * e * r * (1.0 - r), dh * (h - n) * zg * (1.0 - zg), d_pre_n], axis=1)
        return ds, d_pre_n * r, dh * zg


class _LSTM:
    @staticmethod
    def fold(q, a, z):
        return a + z, None

    @staticmethod
    def step(s, e, carry):
        H = s.shape[-1] // 4
        i, f, n, o = (
            _sigmoid(s[:, :H]),
            _sigmoid(s[:, H : 2 * H]),
            jnp.tanh(s[:, 2 * H : 3 * H]),
            _sigmoid(s[:, 3 * H :]),
        )
        c = f * carry[1] + i * n
        tc = jnp.tanh(c)
        return (o * tc, c), (i, f, n, o, tc)

    @staticmethod
    def vjp(gates, e, carry, d_new):
        (h, c), (dh, dc) = carry, d_new
        i, f, n, o, tc = gates
        dc = dc + dh * o * (1.0 - tc * tc)
        ds = jnp.concatenate(
            [dc * n * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - n * n), dh * tc * o * (1.0 - o)], axis=1
        )
        return ds, None, (jnp.zeros_like(h), dc * f)


SPLIT_CELLS = {"rnn": _RNN, "gru_reset_after": _GRUResetAfter, "lstm": _LSTM}


def _gru(p, h, a):
    H = h.shape[-1]
    U = p["U"]
    rz = _sigmoid(a[:, : 2 * H] + h @ U[:, : 2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = jnp.tanh(a[:, 2 * H :] + (r * h) @ U[:, 2 * H :])
    h = n + z * (h - n)
    return h, h


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan_layer(cell: str, U, q, carry0, A):
    """One layer over time: ``A`` [T, B, G*H] (= x W + b) -> (carry_T, outputs [T, B, H]).

    Why a hand-made backward pass: autodiff of ``lax.scan`` accumulates the gradient
    of the loop-invariant ``U`` inside the reverse loop, one (H, B) @ (B, G*H) product
    plus a full [H, G*H] add per step, and differentiates the gate slices into
    pad-and-add chains.  Here the reverse loop carries only ``dh`` (and ``dc``) and
    emits each step's ``ds`` (the gradient of ``A``) with one concatenation; the
    gradient of ``U`` is then one (H, T*B) @ (T*B, G*H) product, as in the NumPy
    backend.
    """
    kind = SPLIT_CELLS[cell]

    def body(carry, a):  # without gradients nothing is stored for the backward pass
        new, _ = kind.step(*kind.fold(q, a, _h(carry) @ U), carry)
        return new, _h(new)

    return jax.lax.scan(body, carry0, A)


def _scan_layer_fwd(cell, U, q, carry0, A):
    kind = SPLIT_CELLS[cell]

    def body(carry, a):
        s, e = kind.fold(q, a, _h(carry) @ U)
        new, kept = kind.step(s, e, carry)
        c_prev = cell_state(carry)
        return new, (kept, e, c_prev, _h(new))

    carry_T, (Kept, E, C_prev, Hout) = jax.lax.scan(body, carry0, A)
    return (carry_T, Hout), (U, _h(carry0), Kept, E, C_prev, Hout)


def _scan_layer_bwd(cell, residuals, cotangents):
    U, h0, Kept, E, C_prev, Hout = residuals
    d_carry_T, dHout = cotangents
    kind = SPLIT_CELLS[cell]
    H_prev = jnp.concatenate([h0[None], Hout[:-1]], axis=0)
    UT = U.T

    def body(d_carry, step):
        kept, e, h, c, dh_out = step
        carry = h if c is None else (h, c)
        ds, de, d_prev = kind.vjp(kept, e, carry, _with_h(d_carry, _h(d_carry) + dh_out))
        dz = ds if de is None else jnp.concatenate([ds[:, : ds.shape[1] - de.shape[1]], de], axis=1)
        return _with_h(d_prev, _h(d_prev) + dz @ UT), (ds, de)

    d_carry0, (dA, dE) = jax.lax.scan(body, d_carry_T, (Kept, E, H_prev, C_prev, dHout), reverse=True)
    dq = {}
    if dE is None:
        dU = jnp.einsum("tbh,tbg->hg", H_prev, dA)
    else:  # z = [the rz part of s, e] less b_U
        d_rz = dA[..., : dA.shape[-1] - dE.shape[-1]]
        dU = jnp.concatenate([jnp.einsum("tbh,tbg->hg", H_prev, d_rz), jnp.einsum("tbh,tbg->hg", H_prev, dE)], axis=1)
        dq["b_U"] = jnp.concatenate([d_rz.sum(axis=(0, 1)), dE.sum(axis=(0, 1))])
    return dU, dq, d_carry0, dA


_scan_layer.defvjp(_scan_layer_fwd, _scan_layer_bwd)


# Cells whose step does not split into one recurrent matmul and a pointwise part (Cho's GRU has a
# second matmul behind its reset gate): scanned as a plain step function, gradients by autodiff.
AUTODIFF_CELLS = {"gru": _gru}


def _candidate(x, linear: bool):
    """The paper's g (x + 0.5 for x >= 0, sigmoid(x) below), or x itself for the ``_linear`` cells."""
    return x if linear else jnp.where(x >= 0, x + 0.5, _sigmoid(x))


def _scan_coefficients(cell: str, A):
    """(a, b) of the parallel cell's recurrence h_t = a_t * h_{t-1} + b_t, for every step at once."""
    row = cell_info(cell)
    linear = row.linear_candidate
    if row.scan == "update":  # minGRU
        H = A.shape[-1] // 2
        z = _sigmoid(A[..., :H])
        return 1.0 - z, z * _candidate(A[..., H:], linear)
    H = A.shape[-1] // 3
    f, i = _sigmoid(A[..., :H]), _sigmoid(A[..., H : 2 * H])
    total = f + i
    return f / total, i / total * _candidate(A[..., 2 * H :], linear)


def _parallel_layer(cell: str, carry0, A):
    """A parallel cell over time: its gates for all steps at once, then the linear recurrence.

    ``lax.scan`` rather than ``lax.associative_scan``: on a CPU the log-depth scan's extra
    arithmetic costs more than the sequential steps it saves (benchmarks/scan.py: 2.9 ms
    against 10.7 ms for forward and backward at B=32, T=64, H=512 on 2 cores)."""
    a, b = _scan_coefficients(cell, A)

    def body(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(body, carry0, (a, b))


def _run_layer(cell: str, p, carry0, A):
    """(carry_T, outputs [T, B, H]) of one layer of any cell."""
    if cell_info(cell).parallel:
        return _parallel_layer(cell, carry0, A)
    if cell in AUTODIFF_CELLS:
        return jax.lax.scan(partial(AUTODIFF_CELLS[cell], p), carry0, A)
    return _scan_layer(cell, p["U"], {k: v for k, v in p.items() if k == "b_U"}, carry0, A)


def _layer(params, k):
    prefix = f"layers.{k}."
    return {key[len(prefix) :]: v for key, v in params.items() if key.startswith(prefix)}


def _stack(params, spec: ModelSpec, carry, x, masks):
    """The recurrent layers over time-major ``x`` (what layer 0 reads): (top stream, new carry)."""
    new_carry = []
    for k in range(spec.num_layers):
        p = _layer(params, k)
        read = _rms_norm(x, p["norm"]) if has_norm(spec, k) else x
        if f"layers.{k}" in masks:
            read = read * masks[f"layers.{k}"]
        if k == 0 and jnp.issubdtype(read.dtype, jnp.integer):  # ids: rows of W, or of a folded embed.W @ W
            table = p["W"] if spec.input_kind == "onehot" else params["embed.W"] @ p["W"]
            A = table[read] + p["b"]
        else:
            A = read @ p["W"] + p["b"]
        c_k, out = _run_layer(spec.cell, p, carry[k], A)
        new_carry.append(c_k)
        x = out + x if has_residual(spec, k) else out
    return x, new_carry


def _decode(params, spec: ModelSpec, carry):
    """A segment decoder's step from the encoder's final ``carry`` (rows B): top stream [M, B, H].
    Decoder row m * B + r starts from row r and reads position m joined to channel r % C."""
    M, C = spec.decode_steps, spec.decode_channels
    rows = _h(carry[0]).shape[0]
    position, channel = params["decoder.position"], params["decoder.channel"]
    inputs = jnp.concatenate([jnp.repeat(position, rows, axis=0), jnp.tile(channel, (M * rows // C, 1))], axis=1)
    start = map_arrays(lambda a: jnp.tile(a, (M, 1)), carry)
    top, _ = _stack(params, spec, start, inputs[None], {})
    return top.reshape(M, rows, -1)


def _forward_tm(params, spec: ModelSpec, carry, x, masks=None):
    """x: [T, B] ids or [T, B, F]; masks: time-major dropout masks (``rnnlab.dropout``) or None;
    returns outputs [T, B, O] ([M, B, O] for a segment decoder) and the new carry."""
    masks = masks or {}
    if spec.input_kind == "dense_relu":
        x = jax.nn.relu(x @ params["input.W"] + params["input.b"])
    elif spec.input_kind == "embedding" and not common.folds_embedding(spec, masks):
        x = params["embed.W"][x]  # else layer 0 gathers rows of embed.W @ W (_stack)
    x, new_carry = _stack(params, spec, carry, x, masks)
    if spec.decodes:
        x = _decode(params, spec, new_carry)
    if spec.norm != "none":
        x = _rms_norm(x, params["readout.norm"])
    if "readout" in masks:
        x = x * masks["readout"]
    return x @ readout_weight(params, spec) + params["readout.b"], new_carry


def _rms_norm(x, gain):
    return x / jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * gain


def _swap_bt(a):
    """[B, T, ...] <-> [T, B, ...], inside the compiled function (no host-side copy)."""
    return jnp.swapaxes(a, 0, 1)


def _loss(params, spec, carry, x, targets, loss, masks=None):
    """Mean loss of batch-first ``x`` against batch-first ``targets`` (checked by ``check_targets``);
    ``masks``: batch-first dropout masks or None."""
    masks = None if masks is None else {k: _swap_bt(m) for k, m in masks.items()}
    Y, new_carry = _forward_tm(params, spec, carry, _swap_bt(x), masks)
    targets = _swap_bt(targets)
    if loss == "cross_entropy":
        logp = jax.nn.log_softmax(Y, axis=-1)
        value = -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))
    elif loss == "gaussian_nll":  # outputs (mean, log-variance) of the last T' steps
        tail = Y[Y.shape[0] - targets.shape[0] :]
        residual, log_var = targets[..., 0] - tail[..., 0], tail[..., 1]
        value = jnp.mean(0.5 * (log_var + residual**2 * jnp.exp(-log_var))) + common.HALF_LOG_2PI
    elif loss == "mae":
        value = jnp.mean(jnp.abs(Y[Y.shape[0] - targets.shape[0] :] - targets))
    else:  # targets cover the last T' outputs (see check_targets)
        value = jnp.mean((Y[Y.shape[0] - targets.shape[0] :] - targets) ** 2)
    return value, new_carry


@partial(jax.jit, static_argnums=(1, 5))
def _value_and_grad(params, spec, carry, x, targets, loss, masks):
    return jax.value_and_grad(_loss, has_aux=True)(params, spec, carry, x, targets, loss, masks)


@partial(jax.jit, static_argnums=(1,))
def _forward_jit(params, spec, carry, x):
    Y, new_carry = _forward_tm(params, spec, carry, _swap_bt(x))
    return _swap_bt(Y), new_carry


def _inputs(spec: ModelSpec, inputs, dtype) -> np.ndarray:
    """Batch-first inputs as NumPy: ids stay integers, features take the parameters' dtype.
    NumPy arrays go straight into the jitted functions, whose dispatch converts them
    faster than separate ``jnp.asarray`` calls would."""
    return np.asarray(inputs) if spec.input_kind in ID_INPUTS else np.asarray(inputs, dtype)


def _targets(spec: ModelSpec, loss: str, inputs, targets, dtype) -> np.ndarray:
    targets = check_targets(spec, loss, inputs, targets)
    return targets if loss == "cross_entropy" else np.asarray(targets, dtype)


def _carry_out(carry):
    return map_arrays(np.asarray, carry)


def init_carry(spec: ModelSpec, batch_size: int, dtype=np.float32) -> list:
    return common.init_carry(spec, batch_size, dtype)


def _dtype(params: dict):
    return params_dtype(params)


def forward(params: dict, spec: ModelSpec, carry: list, inputs: np.ndarray):
    """Outputs ``[B, T, O]`` (NumPy) and the carry after the last step."""
    _allow_dtype(_dtype(params))
    Y, new_carry = _forward_jit(params, spec, carry, _inputs(spec, inputs, _dtype(params)))
    return np.asarray(Y), _carry_out(new_carry)


def loss_and_grads(
    params: dict,
    spec: ModelSpec,
    carry: list,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss: str = "cross_entropy",
    reduction: str = "mean",
    masks: dict | None = None,
):
    """Same contract as ``numpy_backend.loss_and_grads`` (loss is the per-element mean)."""
    dtype = _dtype(params)
    _allow_dtype(dtype)
    (value, new_carry), grads = _value_and_grad(
        params, spec, carry, _inputs(spec, inputs, dtype), _targets(spec, loss, inputs, targets, dtype), loss, masks
    )
    grads = {k: np.asarray(v) for k, v in grads.items()}
    if reduction == "sum":
        count = np.asarray(targets).size
        grads = {k: v * count for k, v in grads.items()}
    return float(value), grads, _carry_out(new_carry)


# --------------------------------------------------------------------------- training step


def _optax_transform(optimizer_name: str, clip: str, clip_value: float, beta1: float, beta2: float, eps: float):
    """clip -> direction; the learning rate is applied outside so it can change every step
    without recompiling.  Same formulas as ``rnnlab.optim`` (eps inside the sqrt for
    Adagrad, outside for Adam)."""
    import optax

    clip_tx = {
        "norm": lambda: optax.clip_by_global_norm(clip_value),
        "value": lambda: optax.clip(clip_value),
        "none": optax.identity,
    }[clip]()
    direction = {
        "sgd": optax.identity,
        "adagrad": lambda: optax.scale_by_rss(initial_accumulator_value=0.0, eps=eps),
        "adam": lambda: optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps),
    }[optimizer_name]()
    return optax.chain(clip_tx, direction)


@lru_cache(maxsize=64)
def _compiled_step(
    spec: ModelSpec,
    loss: str,
    reduction: str,
    optimizer_name: str,
    clip: str,
    clip_value: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float = 0.0,
):
    """(optax transform, jitted update) for one configuration, built once per process.

    The learning rate is an argument, so runs that differ only in it (a
    learning-rate search) share one compilation.  Parameters and optimizer
    state are donated: XLA updates them in place instead of allocating new
    buffers every step.
    """
    import optax

    tx = _optax_transform(optimizer_name, clip, clip_value, beta1, beta2, eps)

    def train_step(params, opt_state, carry, x, targets, lr, masks):
        (value, new_carry), grads = jax.value_and_grad(_loss, has_aux=True)(
            params, spec, carry, x, targets, loss, masks
        )
        if reduction == "sum":
            grads = jax.tree.map(lambda g: g * targets.size, grads)
        norm = optax.tree.norm(grads)
        direction, new_state = tx.update(grads, opt_state, params)
        # Decoupled weight decay on the weight matrices (rnnlab.optim): p * (1 - lr wd) - lr d.
        new_params = jax.tree.map(
            lambda p, d: (p * (1.0 - lr * weight_decay) if weight_decay and p.ndim == 2 else p) - lr * d,
            params,
            direction,
        )
        ok = jnp.isfinite(value) & jnp.isfinite(norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        # One array for the two scalars the host needs: a single transfer per step.
        scalars = jnp.stack([value.astype(norm.dtype), norm])
        return keep(new_params, params), keep(new_state, opt_state), keep(new_carry, carry), scalars

    return tx, jax.jit(train_step, donate_argnums=(0, 1))


class Trainer:
    """The JAX counterpart of ``numpy_backend.Trainer``: one jitted function does forward,
    ``value_and_grad``, clipping and the optax update; a non-finite loss or gradient
    leaves parameters and optimizer state unchanged."""

    name = name

    @property
    def device(self):
        """Where JAX computes: its default device."""
        return jax.devices()[0]

    def __init__(
        self,
        spec: ModelSpec,
        params: dict,
        optimizer,
        loss: str,
        reduction: str,
        clip: str,
        clip_value: float,
        dropout: float = 0.0,
    ):
        self.spec, self.optimizer, self.loss, self.reduction = spec, optimizer, loss, reduction
        self.dropout = dropout  # the loop draws each step's masks at this rate (rnnlab.dropout)
        self.dtype = params_dtype(params)
        _allow_dtype(self.dtype)
        # Copies: the donated buffers must never alias the caller's arrays.
        self._params = {k: jnp.array(v) for k, v in params.items()}
        self._tx, self._train_step = _compiled_step(
            spec,
            loss,
            reduction,
            optimizer.name,
            clip,
            float(clip_value),
            optimizer.beta1,
            optimizer.beta2,
            optimizer.eps,
            float(optimizer.weight_decay),
        )
        self._opt_state = self._state_from(optimizer)

    # Optimizer state <-> the backend-free form of rnnlab.optim.Optimizer.
    def _state_from(self, optimizer):
        state = self._tx.init(self._params)
        slots = {"adam": ("m", "v"), "adagrad": ("sum_sq",), "sgd": ()}[optimizer.name]
        if not slots:
            return state
        inner = state[1]

        def filled(slot, current):
            return {k: jnp.asarray(optimizer.state.get(f"{slot}/{k}", np.zeros_like(v))) for k, v in current.items()}

        if optimizer.name == "adam":
            inner = inner._replace(
                count=jnp.asarray(optimizer.step, inner.count.dtype), mu=filled("m", inner.mu), nu=filled("v", inner.nu)
            )
        else:
            inner = inner._replace(sum_of_squares=filled("sum_sq", inner.sum_of_squares))
        return (state[0], inner)

    def _sync_optimizer(self):
        inner = self._opt_state[1]
        if self.optimizer.name == "adam":
            self.optimizer.state = {
                **{f"m/{k}": np.asarray(v) for k, v in inner.mu.items()},
                **{f"v/{k}": np.asarray(v) for k, v in inner.nu.items()},
            }
        elif self.optimizer.name == "adagrad":
            self.optimizer.state = {f"sum_sq/{k}": np.asarray(v) for k, v in inner.sum_of_squares.items()}

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self._params.items()}

    def init_carry(self, batch_size: int) -> list:
        return init_carry(self.spec, batch_size, self.dtype)

    def train_step(self, carry, inputs, targets, lr: float, masks: dict | None = None):
        """(loss, grad_norm, new_carry), as the NumPy Trainer."""
        self._params, self._opt_state, new_carry, scalars = self._train_step(
            self._params,
            self._opt_state,
            carry,
            _inputs(self.spec, inputs, self.dtype),
            _targets(self.spec, self.loss, inputs, targets, self.dtype),
            np.asarray(lr, self.dtype),
            masks,
        )
        value, norm = (float(v) for v in np.asarray(scalars))
        if np.isfinite(value) and np.isfinite(norm):
            self.optimizer.step += 1
            return value, norm, _carry_out(new_carry)
        return value, norm, carry

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace the weights' values (same names and shapes); the optimizer state stays."""
        self._params = {k: jnp.array(v, dtype=self._params[k].dtype) for k, v in params.items()}

    def forward(self, carry, inputs):
        return forward(self._params, self.spec, carry, inputs)

    def step(self, carry, x):
        Y, new_carry = forward(self._params, self.spec, carry, np.asarray(x)[:, None])
        return new_carry, Y[:, 0]

    def state_tensors(self) -> dict[str, np.ndarray]:
        self._sync_optimizer()
        return common.state_tensors(self.params, self.optimizer)
