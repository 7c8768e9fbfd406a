"""NumPy backend: hand-written batched forward pass and backpropagation through time.

Public arrays are batch-first (inputs ``[B, T]`` token ids or ``[B, T, F]``
features, outputs ``[B, T, O]``).  Inside, everything is time-major
(``[T, B, ...]``) so that the slice for one time step is contiguous.

Why the loop over time lives inside each cell's ``forward``/``backward``
rather than around a single-step function: the input projection ``x @ W`` of
every time step is one large GEMM done before the loop, every buffer is
preallocated, and the elementwise derivative factors of the backward pass are
computed for all time steps at once after the forward pass.  What remains in
the loop is one (or two) ``[B, H] @ [H, G*H]`` GEMMs and a few in-place
elementwise updates per step.  ``step`` runs the same code with T = 1.

Carry: one entry per layer, ``h`` of shape ``[B, H]``; for LSTM ``(h, c)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import blas
from ..carry import hidden, join, map_arrays
from ..cells import ID_INPUTS, RMS_EPS, ModelSpec, count_params, has_norm, has_residual, params_dtype, readout_weight
from ..threads import batch_split_threads
from .common import (  # noqa: F401  (LOSSES: API)
    HALF_LOG_2PI,
    LOSSES,
    check_targets,
    folds_embedding,
    init_carry,
    state_tensors,
)
from .compiled import kernels as _kernels

name = "numpy"


# --------------------------------------------------------------------------- helpers


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """In-place logistic function; the tanh form never overflows."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def _layer_params(params: dict, k: int) -> dict:
    prefix = f"layers.{k}."
    return {key[len(prefix) :]: v for key, v in params.items() if key.startswith(prefix)}


# --------------------------------------------------------------------------- cells
# Each cell: forward(p, A, carry) -> (H_out [T,B,H], carry_T, cache) where A = x @ W + b
# for all steps, and backward(p, cache, dH_out, d_final) -> (dA [T,B,G*H], grads of U (and b_U),
# d carry_0), where d_final (None: zero) is the gradient reaching carry_T from outside the layer
# (a segment decoder's rows start from it).


class RNNCell:
    """h' = tanh(x W + h U + b)."""

    @staticmethod
    def forward(p, A, h0):
        T, B, H = A.shape
        Hs = np.empty((T + 1, B, H), A.dtype)
        Hs[0] = h0
        U = p["U"]
        for t in range(T):
            np.matmul(Hs[t], U, out=Hs[t + 1])
            Hs[t + 1] += A[t]
            np.tanh(Hs[t + 1], out=Hs[t + 1])
        return Hs[1:], Hs[T].copy(), Hs

    @staticmethod
    def backward(p, Hs, dHout, d_final=None):
        T, B, H = dHout.shape
        dA = np.square(Hs[1:])
        np.subtract(1.0, dA, out=dA)  # tanh' for all steps at once
        UT = np.ascontiguousarray(p["U"].T)
        dh = _start(d_final, (B, H), dHout.dtype)
        for t in range(T - 1, -1, -1):
            dh += dHout[t]
            dA[t] *= dh
            np.matmul(dA[t], UT, out=dh)
        dU = Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, H)
        return dA, {"U": dU}, dh


def _start(d_final, shape, dtype) -> np.ndarray:
    """The running gradient of a backward loop at its first (last in time) step: a copy of the
    gradient reaching the final carry from outside, or zeros."""
    return np.zeros(shape, dtype) if d_final is None else np.array(d_final, dtype)


def _gru_blend(h, n, z, out):
    """h' = z*h + (1-z)*n, computed as n + z*(h-n) in ``out`` without temporaries."""
    np.subtract(h, n, out=out)
    out *= z
    out += n


def _gru_factors(Hprev, Z, N):
    """Derivative factors shared by both GRU forms, all steps at once:
    dh'/d a_n = (1-z)(1-n^2) and dh'/d a_z = (h-n) z(1-z)."""
    return (1.0 - Z) * (1.0 - np.square(N)), (Hprev - N) * Z * (1.0 - Z)


class GRUCell:
    """Cho et al. (2014), reset applied before the recurrent matmul of the candidate.

    r, z = sigmoid(x W_rz + h U_rz + b_rz);  n = tanh(x W_n + (r*h) U_n + b_n);
    h' = z*h + (1-z)*n
    """

    @staticmethod
    def forward(p, A, h0):
        T, B, H3 = A.shape
        H = H3 // 3
        U = p["U"]
        Urz, Un = np.ascontiguousarray(U[:, : 2 * H]), np.ascontiguousarray(U[:, 2 * H :])
        Hs = np.empty((T + 1, B, H), A.dtype)
        RZ = np.empty((T, B, 2 * H), A.dtype)
        N = np.empty((T, B, H), A.dtype)
        RH = np.empty((T, B, H), A.dtype)
        Hs[0] = h0
        for t in range(T):
            h, rz, n = Hs[t], RZ[t], N[t]
            np.matmul(h, Urz, out=rz)
            rz += A[t, :, : 2 * H]
            _sigmoid_(rz)
            np.multiply(rz[:, :H], h, out=RH[t])
            np.matmul(RH[t], Un, out=n)
            n += A[t, :, 2 * H :]
            np.tanh(n, out=n)
            _gru_blend(h, n, rz[:, H:], out=Hs[t + 1])
        return Hs[1:], Hs[T].copy(), (Hs, RZ, N, RH)

    @staticmethod
    def backward(p, cache, dHout, d_final=None):
        Hs, RZ, N, RH = cache
        T, B, H = dHout.shape
        U = p["U"]
        UrzT = np.ascontiguousarray(U[:, : 2 * H].T)
        UnT = np.ascontiguousarray(U[:, 2 * H :].T)
        R, Z, Hprev = RZ[..., :H], RZ[..., H:], Hs[:-1]
        # Derivative factors for all steps at once (one pass each, outside the loop).
        Kn, Kz = _gru_factors(Hprev, Z, N)
        Kr = Hprev * R * (1.0 - R)  # d a_r / d(r*h), times h
        dRZ = np.empty((T, B, 2 * H), dHout.dtype)
        dAn = np.empty((T, B, H), dHout.dtype)
        dh = _start(d_final, (B, H), dHout.dtype)
        drh = np.empty((B, H), dHout.dtype)
        tmp = np.empty((B, H), dHout.dtype)
        for t in range(T - 1, -1, -1):
            dh += dHout[t]
            np.multiply(dh, Kn[t], out=dAn[t])
            np.matmul(dAn[t], UnT, out=drh)
            np.multiply(drh, Kr[t], out=dRZ[t, :, :H])
            np.multiply(dh, Kz[t], out=dRZ[t, :, H:])
            dh *= Z[t]
            drh *= R[t]
            dh += drh
            np.matmul(dRZ[t], UrzT, out=tmp)
            dh += tmp
        dU_rz = Hprev.reshape(T * B, H).T @ dRZ.reshape(T * B, 2 * H)
        dU_n = RH.reshape(T * B, H).T @ dAn.reshape(T * B, H)
        dA = np.concatenate([dRZ, dAn], axis=2)
        return dA, {"U": np.concatenate([dU_rz, dU_n], axis=1)}, dh


class GRUResetAfterCell:
    """The cuDNN / PyTorch nn.GRU form: the reset gate scales h U_n + b_U_n.

    r, z = sigmoid(x W_rz + b_rz + h U_rz + bU_rz);  n = tanh(x W_n + b_n + r*(h U_n + bU_n));
    h' = z*h + (1-z)*n
    """

    @staticmethod
    def input_scale(H: int, dtype) -> np.ndarray:
        """Column scale folded into ``W``, ``b``, ``U`` and ``b_U``: -1 on r and z, so that their
        sigmoid is 1 / (1 + exp(-a)): numpy's float32 exp, +1 and divide take 28 us on a [32, 512]
        row on this machine's AVX2 CPU, its tanh and the affine map after it 48 us (exact: -1)."""
        scale = np.full(3 * H, -1.0, dtype)
        scale[2 * H :] = 1.0
        return scale

    @classmethod
    def forward(cls, p, A, h0):
        """``A`` arrives scaled by ``input_scale`` (see ``_project``); ``HU``'s r and z columns are
        kept negated (backward reads only its n columns)."""
        T, B, H3 = A.shape
        H = H3 // 3
        scale = cls.input_scale(H, A.dtype)
        U, bU = p["U"] * scale, p["b_U"] * scale
        Hs = np.empty((T + 1, B, H), A.dtype)
        HU = np.empty((T, B, 3 * H), A.dtype)
        RZ = np.empty((T, B, 2 * H), A.dtype)
        N = np.empty((T, B, H), A.dtype)
        Hs[0] = h0
        fused = _kernels(A.dtype)
        if fused is not None:
            one = A.dtype.type(1.0)
            for t in range(T):
                np.matmul(Hs[t], U, out=HU[t])
                fused.gru_forward_step(HU[t], bU, A[t], Hs[t], RZ[t], N[t], Hs[t + 1], one)
            return Hs[1:], Hs[T].copy(), (Hs, HU, RZ, N)
        with np.errstate(over="ignore"):  # exp(-a) is inf for a < -88 (float32): the gate is then 0
            for t in range(T):
                h, hu, rz, n = Hs[t], HU[t], RZ[t], N[t]
                np.matmul(h, U, out=hu)
                hu += bU
                np.add(hu[:, : 2 * H], A[t, :, : 2 * H], out=rz)
                np.exp(rz, out=rz)
                rz += 1.0
                np.divide(1.0, rz, out=rz)
                np.multiply(rz[:, :H], hu[:, 2 * H :], out=n)
                n += A[t, :, 2 * H :]
                np.tanh(n, out=n)
                _gru_blend(h, n, rz[:, H:], out=Hs[t + 1])
        return Hs[1:], Hs[T].copy(), (Hs, HU, RZ, N)

    @staticmethod
    def backward(p, cache, dHout, d_final=None):
        Hs, HU, RZ, N = cache
        T, B, H = dHout.shape
        UT = np.ascontiguousarray(p["U"].T)
        fused = _kernels(dHout.dtype)
        if fused is not None:
            return GRUResetAfterCell._fused_backward(fused, UT, cache, np.ascontiguousarray(dHout), d_final)
        R, Z, Hprev = RZ[..., :H], RZ[..., H:], Hs[:-1]
        # The factors that do not depend on dh, for all steps at once (a few large passes instead
        # of twelve small calls a step): d a_n = dh (1-z)(1-n^2); d a_z = dh (h-n) z(1-z);
        # d a_r = d a_n r(1-r) hu_n.
        Kn = np.square(N)
        np.subtract(1.0, Kn, out=Kn)
        Zc = np.subtract(1.0, Z)
        Kn *= Zc
        Kz = np.subtract(Hprev, N)
        Kz *= Z
        Kz *= Zc
        Kr = np.subtract(1.0, R, out=Zc)
        Kr *= R
        Kr *= HU[..., 2 * H :]
        # DHU[t] = d(h U + b_U) = [d a_r, d a_z, d a_n * r]: the dh product's operand and, for all
        # steps at once, dU's and db_U's.
        DHU = np.empty((T, B, 3 * H), dHout.dtype)
        dA_n = np.empty((T, B, H), dHout.dtype)
        dh = _start(d_final, (B, H), dHout.dtype)
        tmp = np.empty((B, H), dHout.dtype)
        for t in range(T - 1, -1, -1):
            dhu, dan = DHU[t], dA_n[t]
            dh += dHout[t]
            np.multiply(dh, Kn[t], out=dan)
            np.multiply(dan, R[t], out=dhu[:, 2 * H :])
            np.multiply(dh, Kz[t], out=dhu[:, H : 2 * H])
            np.multiply(dan, Kr[t], out=dhu[:, :H])
            dh *= Z[t]
            np.matmul(dhu, UT, out=tmp)
            dh += tmp
        return GRUResetAfterCell._gradients(Hprev, DHU, dA_n, dh)

    @staticmethod
    def _fused_backward(fused, UT, cache, dHout, d_final):
        """``backward`` with numba's step kernel: one kernel call and one GEMM a step."""
        Hs, HU, RZ, N = cache
        T, B, H = dHout.shape
        DHU = np.empty((T, B, 3 * H), dHout.dtype)
        dA_n = np.empty((T, B, H), dHout.dtype)
        dh = _start(d_final, (B, H), dHout.dtype)
        dh_matmul = np.zeros((B, H), dHout.dtype)
        one = dHout.dtype.type(1.0)
        for t in range(T - 1, -1, -1):
            fused.gru_backward_step(RZ[t], N[t], Hs[t], HU[t], dHout[t], dh, dh_matmul, DHU[t], dA_n[t], one)
            np.matmul(DHU[t], UT, out=dh_matmul)
        dh += dh_matmul
        return GRUResetAfterCell._gradients(Hs[:-1], DHU, dA_n, dh)

    @staticmethod
    def _gradients(Hprev, DHU, dA_n, dh):
        """(dA, {U, b_U} gradients, d h_0) from every step's d(h U + b_U) and d a_n."""
        T, B, H3 = DHU.shape
        DHUf = DHU.reshape(T * B, H3)
        dU = Hprev.reshape(T * B, H3 // 3).T @ DHUf
        db_U = DHUf.sum(axis=0)
        DHU[..., 2 * H3 // 3 :] = dA_n  # d(x W + b) = [d a_r, d a_z, d a_n]
        return DHU, {"U": dU, "b_U": db_U}, dh


class LSTMCell:
    """i, f, o = sigmoid(.), g = tanh(.), of x W + h U + b;  c' = f*c + i*g;  h' = o*tanh(c').

    Gate columns are [i, f, n (= g), o].  Element-wise work is done on whole [B, 4H] rows where it
    can be: on a column block of such a row (a strided view) numpy takes twice as long per element
    at H = 128, and the step's small element-wise operations cost more than its GEMM there.
    """

    @staticmethod
    def input_scale(H: int, dtype) -> np.ndarray:
        """Column scale folded into ``W``, ``b`` and ``U``: -1 on the sigmoid gates and -2 on n,
        so that one exp serves all four gates of a step: sigmoid(a) = 1 / (1 + exp(-a)) and
        tanh(a) = 2 sigmoid(2a) - 1.  numpy's float32 exp takes 60% of its tanh's time on this
        machine's AVX2 CPU (26 against 43 us for a [32, 512] row).  Powers of two: exact."""
        scale = np.full(4 * H, -1.0, dtype)
        scale[2 * H : 3 * H] = -2.0
        return scale

    @classmethod
    def forward(cls, p, A, carry0):
        """``A`` arrives scaled by ``input_scale`` (see ``_project``)."""
        h0, c0 = carry0
        T, B, H4 = A.shape
        H = H4 // 4
        U = p["U"] * cls.input_scale(H, A.dtype)
        Hs = np.empty((T + 1, B, H), A.dtype)
        Cs = np.empty((T + 1, B, H), A.dtype)
        Gs = np.empty((T, B, 4 * H), A.dtype)
        TC = np.empty((T, B, H), A.dtype)
        Hs[0], Cs[0] = h0, c0
        fused = _kernels(A.dtype)
        if fused is not None:
            one = A.dtype.type(1.0)
            for t in range(T):
                np.matmul(Hs[t], U, out=Gs[t])
                fused.lstm_forward_step(Gs[t], A[t], Cs[t], Cs[t + 1], TC[t], Hs[t + 1], one)
            return Hs[1:], (Hs[T].copy(), Cs[T].copy()), (Hs, Cs, Gs, TC)
        with np.errstate(over="ignore"):  # exp(-a) is inf for a < -88 (float32): the gate is then 0
            for t in range(T):
                g = Gs[t]
                np.matmul(Hs[t], U, out=g)
                g += A[t]
                np.exp(g, out=g)
                g += 1.0
                np.divide(1.0, g, out=g)
                n = g[:, 2 * H : 3 * H]
                n *= 2.0
                n -= 1.0
                c = Cs[t + 1]
                np.multiply(g[:, H : 2 * H], Cs[t], out=c)
                np.multiply(g[:, :H], n, out=TC[t])
                c += TC[t]
                np.tanh(c, out=TC[t])
                np.multiply(g[:, 3 * H :], TC[t], out=Hs[t + 1])
        return Hs[1:], (Hs[T].copy(), Cs[T].copy()), (Hs, Cs, Gs, TC)

    # Steps per block of the backward pass's gate factors: few enough that a block's gates are
    # still in cache, many enough that the time loop is left with seven calls a step, not
    # seventeen (with the batch split's two threads, 7-10% faster at H = 128: fewer interpreter-lock
    # hand-offs; level at H = 512).
    FACTOR_BLOCK = 16

    @staticmethod
    def _factors(Gs, Cs, TC, dA, Ko, t0: int, t1: int) -> None:
        """For steps t0..t1-1: ``dA`` = [n, c_prev, i, tanh(c)] times each gate's activation
        derivative (what dc, dc, dc and dh multiply), ``Ko`` = o (1 - tanh(c)^2)."""
        H = TC.shape[-1]
        g, d = Gs[t0:t1], dA[t0:t1]
        np.multiply(g, g, out=d)  # s - s^2 = s (1 - s) on the whole row,
        np.subtract(g, d, out=d)
        d_n = d[..., 2 * H : 3 * H]  # then 1 - n^2 in n's columns
        np.square(g[..., 2 * H : 3 * H], out=d_n)
        np.subtract(1.0, d_n, out=d_n)
        d[..., :H] *= g[..., 2 * H : 3 * H]
        d[..., H : 2 * H] *= Cs[t0:t1]
        d[..., 2 * H : 3 * H] *= g[..., :H]
        d[..., 3 * H :] *= TC[t0:t1]
        k = Ko[t0:t1]
        np.square(TC[t0:t1], out=k)
        np.subtract(1.0, k, out=k)
        k *= g[..., 3 * H :]

    @classmethod
    def backward(cls, p, cache, dHout, d_final=None):
        Hs, Cs, Gs, TC = cache
        T, B, H = dHout.shape
        UT = np.ascontiguousarray(p["U"].T)
        dA = np.empty((T, B, 4 * H), dHout.dtype)
        dh = _start(None if d_final is None else d_final[0], (B, H), dHout.dtype)
        dc = _start(None if d_final is None else d_final[1], (B, H), dHout.dtype)
        fused = _kernels(dHout.dtype)
        if fused is not None:
            one = dHout.dtype.type(1.0)
            dHout = np.ascontiguousarray(dHout)
            for t in range(T - 1, -1, -1):
                fused.lstm_backward_step(Gs[t], Cs[t], TC[t], dHout[t], dh, dc, dA[t], one)
                np.matmul(dA[t], UT, out=dh)
            dU = Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, 4 * H)
            return dA, {"U": dU}, (dh, dc)
        Ko, k = np.empty((T, B, H), dHout.dtype), np.empty((B, H), dHout.dtype)
        for t1 in range(T, 0, -cls.FACTOR_BLOCK):
            t0 = max(0, t1 - cls.FACTOR_BLOCK)
            cls._factors(Gs, Cs, TC, dA, Ko, t0, t1)
            for t in range(t1 - 1, t0 - 1, -1):
                d = dA[t]
                dh += dHout[t]
                np.multiply(dh, Ko[t], out=k)  # dc += dh o (1 - tanh(c)^2)
                dc += k
                d_icf = d[:, : 3 * H].reshape(B, 3, H)  # d a = [dc, dc, dc, dh] * factors
                np.multiply(d_icf, dc[:, None, :], out=d_icf)
                np.multiply(d[:, 3 * H :], dh, out=d[:, 3 * H :])
                dc *= Gs[t, :, H : 2 * H]
                np.matmul(d, UT, out=dh)
        dU = Hs[:-1].reshape(T * B, H).T @ dA.reshape(T * B, 4 * H)
        return dA, {"U": dU}, (dh, dc)


# --------------------------------------------------------------------------- parallel-scan cells
# Gates from x_t alone, so the whole sequence's gates come from the one GEMM in ``_project``;
# what is left is the linear recurrence h_t = a_t * h_{t-1} + b_t, elementwise.


def candidate(x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(h~, dh~/dx) from the candidate's pre-activation ``x``: the paper's g (x + 0.5 for x >= 0,
    sigmoid(x) below: positive, continuous) or, for ``linear``, x itself.

    g(x) = max(x, 0) + sigmoid(min(x, 0)) with derivative sigmoid'(min(x, 0)) + 3/4 [x >= 0]
    (sigmoid' is 1/4 at 0): plain arithmetic, ten times faster here than masked selects."""
    if kind == "linear":
        return x, np.ones_like(x)
    zero = x.dtype.type(0)
    s = _sigmoid_(np.minimum(x, zero))
    deriv = 1.0 - s
    deriv *= s
    deriv += (x >= zero) * x.dtype.type(0.75)
    g = np.maximum(x, zero)
    g += s
    return g, deriv


def linear_scan(a: np.ndarray, b: np.ndarray, h0: np.ndarray) -> np.ndarray:
    """h_t = a_t * h_{t-1} + b_t for t = 1..T from h_0: ``a``, ``b`` [T, B, H] -> [T+1, B, H] (h_0 first)."""
    T = a.shape[0]
    Hs = np.empty((T + 1,) + a.shape[1:], a.dtype)
    Hs[0] = h0
    for t in range(T):
        np.multiply(a[t], Hs[t], out=Hs[t + 1])
        Hs[t + 1] += b[t]
    return Hs


def linear_scan_backward(a: np.ndarray, dHout: np.ndarray, d_final=None) -> np.ndarray:
    """Gradient reaching each h_t of ``linear_scan``: the reverse recurrence dh_t = g_t + a_{t+1} dh_{t+1}
    (g_t arriving from above, ``dHout``, and ``d_final`` from outside at h_T).  It is also the
    gradient of b_t; a_t's is dh_t * h_{t-1}, h_0's a_1 dh_1."""
    T = a.shape[0]
    dh = np.empty_like(dHout)
    dh[T - 1] = dHout[T - 1]
    if d_final is not None:
        dh[T - 1] += d_final
    for t in range(T - 2, -1, -1):
        np.multiply(a[t + 1], dh[t + 1], out=dh[t])
        dh[t] += dHout[t]
    return dh


class MinGRUCell:
    """minGRU (Feng et al. 2024): z = sigmoid(x W_z + b_z), h~ = g(x W_h + b_h); h' = (1 - z) h + z h~."""

    def __init__(self, candidate: str):
        self.candidate = candidate

    def forward(self, p, A, h0):
        H = A.shape[2] // 2
        z = _sigmoid_(A[..., :H].copy())
        cand, dcand = candidate(A[..., H:], self.candidate)
        Hs = linear_scan(1.0 - z, z * cand, h0)
        return Hs[1:], Hs[-1].copy(), (Hs, z, cand, dcand)

    def backward(self, p, cache, dHout, d_final=None):
        Hs, z, cand, dcand = cache
        dh = linear_scan_backward(1.0 - z, dHout, d_final)
        dz = dh * (cand - Hs[:-1])  # d/dz of (1 - z) h + z h~
        dz *= z * (1.0 - z)
        return np.concatenate([dz, dh * z * dcand], axis=2), {}, (1.0 - z[0]) * dh[0]


class MinLSTMCell:
    """minLSTM (Feng et al. 2024): f, i = sigmoid(x W + b), h~ = g(x W_h + b_h); with f' = f / (f + i)
    and i' = i / (f + i), h' = f' h + i' h~."""

    def __init__(self, candidate: str):
        self.candidate = candidate

    def forward(self, p, A, h0):
        H = A.shape[2] // 3
        fi = _sigmoid_(A[..., : 2 * H].copy())
        f, i = fi[..., :H], fi[..., H:]
        cand, dcand = candidate(A[..., 2 * H :], self.candidate)
        total = f + i
        Hs = linear_scan(f / total, i / total * cand, h0)
        return Hs[1:], Hs[-1].copy(), (Hs, f, i, total, cand, dcand)

    def backward(self, p, cache, dHout, d_final=None):
        Hs, f, i, total, cand, dcand = cache
        f_norm = f / total
        dh = linear_scan_backward(f_norm, dHout, d_final)
        # h' = f' h + (1 - f') h~ with f' = f / (f + i): d/df' = h - h~, df'/df = i/(f+i)^2, df'/di = -f/(f+i)^2
        d_fnorm = dh * (Hs[:-1] - cand)
        d_fnorm /= np.square(total)
        d_f = d_fnorm * i * f * (1.0 - f)
        d_i = -d_fnorm * f * i * (1.0 - i)
        return np.concatenate([d_f, d_i, dh * (1.0 - f_norm) * dcand], axis=2), {}, f_norm[0] * dh[0]


CELLS = {"rnn": RNNCell, "gru": GRUCell, "gru_reset_after": GRUResetAfterCell, "lstm": LSTMCell}
SCANS = {"update": MinGRUCell, "forget-input": MinLSTMCell}  # by the table's ``scan``; built per candidate


def _cell(spec: ModelSpec):
    """The cell object of ``spec``: a class of static methods, or a parallel cell built for its candidate."""
    row = spec.cell_info
    if row.parallel:
        return SCANS[row.scan]("linear" if row.linear_candidate else "g")
    return CELLS[spec.cell]


# --------------------------------------------------------------------------- model


def _time_major_inputs(spec: ModelSpec, inputs: np.ndarray, dtype) -> np.ndarray:
    inputs = np.asarray(inputs)
    if spec.input_kind in ID_INPUTS:
        if inputs.ndim != 2 or not np.issubdtype(inputs.dtype, np.integer):
            raise ValueError(f"one-hot input must be integer ids [B, T], got {inputs.dtype} {inputs.shape}")
        return np.ascontiguousarray(inputs.T)
    if inputs.ndim != 3 or inputs.shape[2] != spec.input_size:
        raise ValueError(f"dense input must be [B, T, {spec.input_size}], got {inputs.shape}")
    return np.ascontiguousarray(inputs.transpose(1, 0, 2), dtype=dtype)


def _project(spec: ModelSpec, k: int, p: dict, x: np.ndarray, embed: np.ndarray | None = None) -> np.ndarray:
    """x @ W + b for every step at once: [T, B, G*H], times the cell's ``input_scale``
    where it has one (folded into the small W and b, not the large result).  Integer ``x`` [T, B]
    are ids: rows of W (a one-hot input) or of ``embed`` @ W (a folded embedding)."""
    W, b = p["W"], p["b"]
    scale_fn = getattr(_cell(spec), "input_scale", None)
    if scale_fn is not None:
        scale = scale_fn(spec.hidden_size, W.dtype)
        W, b = W * scale, b * scale
    if x.dtype.kind in "iu":
        table = W if spec.input_kind == "onehot" else embed @ W
        return (table + b)[x]  # row gather == one-hot @ table; b added to the few rows, not to every step's
    T, B, F = x.shape
    A = x.reshape(T * B, F) @ W
    A += b
    return A.reshape(T, B, -1)


def _time_major_masks(masks: dict | None) -> dict:
    """Batch-first dropout masks [B, T, F] (``rnnlab.dropout``) as time-major arrays."""
    return {} if masks is None else {k: np.ascontiguousarray(np.swapaxes(m, 0, 1)) for k, m in masks.items()}


def _rms_norm(x: np.ndarray, gain: np.ndarray):
    """x / rms(x) * gain over the last axis; returns it and 1 / rms(x) [..., 1] (for backward)."""
    inv = 1.0 / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + RMS_EPS)
    return x * inv * gain, inv


def _rms_norm_backward(dy, x, inv, gain):
    """(dx, d gain) of ``_rms_norm``: with u = dy * gain, dx = inv * u - x * inv^3 * mean(u * x)."""
    d_gain = (dy * x * inv).reshape(-1, x.shape[-1]).sum(axis=0)
    u = dy * gain
    dx = inv * u - x * inv**3 * np.mean(u * x, axis=-1, keepdims=True)
    return dx, d_gain


def _stack_forward(params, spec, carry, x, masks):
    """The recurrent layers over time-major ``x`` [T, B, F] (what layer 0 reads, after the input
    stage); returns (top stream [T, B, H], new carry, what ``_stack_backward`` needs)."""
    cell = _cell(spec)
    # streams[k]: what enters layer k (the residual stream); reads[k]: what its W multiplies
    # (normalised, then dropout applied), which its W's gradient needs.
    streams, reads, inv_rms, caches, new_carry = [], [], [], [], []
    for k in range(spec.num_layers):
        p = _layer_params(params, k)
        streams.append(x)
        read, inv = _rms_norm(x, p["norm"]) if has_norm(spec, k) else (x, None)
        inv_rms.append(inv)
        if f"layers.{k}" in masks:
            read = read * masks[f"layers.{k}"]
        reads.append(read)
        # (_project uses the embedding only where layer 0 reads ids: where _forward left it folded)
        Hout, carry_k, cache = cell.forward(p, _project(spec, k, p, read, params.get("embed.W")), carry[k])
        caches.append(cache)
        new_carry.append(carry_k)
        x = Hout + x if has_residual(spec, k) else Hout
    return x, new_carry, (streams, reads, inv_rms, caches)


def _decoder_inputs(params, spec, rows: int) -> np.ndarray:
    """A segment decoder's layer-0 input [1, M * rows, P + Q]: decoder row m * rows + r reads
    ``decoder.position[m]`` joined to ``decoder.channel[r % C]`` (rows are window-major)."""
    position, channel = params["decoder.position"], params["decoder.channel"]
    M, C = spec.decode_steps, spec.decode_channels
    X = np.empty((1, M * rows, position.shape[1] + channel.shape[1]), position.dtype)
    X[0, :, : position.shape[1]] = np.repeat(position, rows, axis=0)
    X[0, :, position.shape[1] :] = np.tile(channel, (M * rows // C, 1))
    return X


def _decode_forward(params, spec, carry):
    """The decoder step from the encoder's final ``carry`` (rows B): the top stream [M, B, H]."""
    M, rows = spec.decode_steps, hidden(carry[0]).shape[0]
    if rows % spec.decode_channels:
        raise ValueError(f"a segment decoder's rows come {spec.decode_channels} per window, got {rows}")
    start = map_arrays(lambda a: np.tile(a, (M, 1)), carry)  # row m * B + r starts from row r
    top, _, cache = _stack_forward(params, spec, start, _decoder_inputs(params, spec, rows), {})
    return top.reshape(M, rows, -1), cache


def _readout_forward(params, spec, x, masks):
    """The readout of the top stream [T, B, H]: (Y [T, B, O], what its backward needs)."""
    top, inv = _rms_norm(x, params["readout.norm"]) if spec.norm != "none" else (x, None)
    if "readout" in masks:
        top = top * masks["readout"]
    T, B, H = top.shape
    Y = top.reshape(T * B, H) @ readout_weight(params, spec)
    Y += params["readout.b"]
    return Y.reshape(T, B, -1), (x, top, inv)


def _forward(params, spec, carry, inputs, masks=None):
    """Time-major forward pass; returns (Y [T, B, O] ([M, B, O] for a segment decoder), new
    carry, what backward needs)."""
    dtype = params_dtype(params)
    masks = _time_major_masks(masks)
    raw = _time_major_inputs(spec, inputs, dtype)
    x = raw
    if spec.input_kind == "dense_relu":  # Dense(H) -> ReLU in front of the first recurrent layer
        T, B, F = x.shape
        x = (x.reshape(T * B, F) @ params["input.W"]).reshape(T, B, -1)
        x += params["input.b"]
        np.maximum(x, 0.0, out=x)
    elif spec.input_kind == "embedding" and not folds_embedding(spec, masks):
        x = params["embed.W"][x]
    top, new_carry, stack = _stack_forward(params, spec, carry, x, masks)
    decoder = None
    if spec.decodes:
        top, decoder = _decode_forward(params, spec, new_carry)
    Y, readout = _readout_forward(params, spec, top, masks)
    return Y, new_carry, (raw, stack, decoder, readout, masks)


def forward(params: dict, spec: ModelSpec, carry: list, inputs: np.ndarray):
    """Outputs ``[B, T, O]`` (logits or values) and the carry after the last step (no dropout:
    evaluation and sampling)."""
    Y, new_carry, _ = _forward(params, spec, carry, inputs)
    return Y.transpose(1, 0, 2), new_carry


def step(params: dict, spec: ModelSpec, carry: list, x: np.ndarray):
    """One time step: ``x`` is ``[B]`` ids or ``[B, F]`` features; returns ``(carry, y [B, O])``."""
    x = np.asarray(x)
    Y, new_carry, _ = _forward(params, spec, carry, x[:, None])
    return new_carry, Y[0]


def _cross_entropy_(Y: np.ndarray, targets: np.ndarray, scale: float) -> float:
    """Mean softmax cross-entropy in nats; overwrites ``Y`` [N, V] with d(loss*scale*N)/dY."""
    N = Y.shape[0]
    rows = np.arange(N)
    Y -= Y.max(axis=1, keepdims=True)  # stable: largest logit is 0
    picked = Y[rows, targets].astype(np.float64)
    np.exp(Y, out=Y)
    total = Y.sum(axis=1, keepdims=True)
    loss = float(np.sum(np.log(total[:, 0], dtype=np.float64) - picked) / N)
    Y /= total
    Y[rows, targets] -= 1.0
    Y *= scale
    return loss


def _mse_(Y: np.ndarray, targets: np.ndarray, scale: float) -> float:
    """Mean squared error; overwrites ``Y`` [N, O] with d(loss*scale*N)/dY."""
    if targets.shape != Y.shape:
        raise ValueError(
            f"targets shape {targets.shape} must equal outputs shape {Y.shape} "
            "(a [B,T] vs [B,T,1] mismatch would broadcast silently)"
        )
    Y -= targets
    loss = float(np.mean(np.square(Y, dtype=np.float64)))
    Y *= 2.0 * scale
    return loss


def _mae_(Y: np.ndarray, targets: np.ndarray, scale: float) -> float:
    """Mean absolute error; overwrites ``Y`` [N, O] with d(loss*scale*N)/dY (sign(0) = 0, as autodiff's)."""
    Y -= targets
    loss = float(np.mean(np.abs(Y, dtype=np.float64)))
    np.sign(Y, out=Y)
    Y *= scale
    return loss


def _gaussian_nll_(Y: np.ndarray, targets: np.ndarray, scale: float) -> float:
    """Mean Gaussian negative log-likelihood in nats of ``targets`` [N, 1] under N(mean, exp(log_var))
    with ``Y`` [N, 2] = (mean, log_var); overwrites ``Y`` with d(loss*scale*N)/dY."""
    mean, log_var = Y[:, 0].astype(np.float64), Y[:, 1].astype(np.float64)
    residual = targets[:, 0] - mean
    weighted = residual * np.exp(-log_var)  # (y - mean) / variance
    loss = float(np.mean(0.5 * (log_var + residual * weighted)) + HALF_LOG_2PI)
    Y[:, 0] = -weighted * scale
    Y[:, 1] = 0.5 * (1.0 - residual * weighted) * scale
    return loss


def _scatter_rows(ids: np.ndarray, rows: np.ndarray, vocab_size: int) -> np.ndarray:
    """sum of ``rows`` [N, G] grouped by ``ids`` [N] -> [V, G] (the gradient of a row gather).

    For a character vocabulary the one-hot GEMM is ~5x faster than ``np.add.at``;
    for large vocabularies a sort + ``reduceat`` avoids the V x N matrix.  With numba, one compiled
    pass over ``rows`` (``numpy_kernels.scatter_rows``) does either's work.
    """
    fused = _kernels(rows.dtype)
    if fused is not None and ids.size:
        if ids.min() < 0 or ids.max() >= vocab_size:  # the kernel writes where the ids say: check them first
            raise IndexError(f"token ids must lie in [0, {vocab_size}); got {ids.min()}..{ids.max()}")
        out = np.zeros((vocab_size, rows.shape[1]), rows.dtype)
        fused.scatter_rows(np.ascontiguousarray(ids), np.ascontiguousarray(rows), out)
        return out
    if vocab_size <= 2048:
        onehot_T = np.zeros((vocab_size, ids.size), rows.dtype)
        onehot_T[ids, np.arange(ids.size)] = 1.0
        return onehot_T @ rows
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((vocab_size, rows.shape[1]), rows.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def _loss_gradient(Y, targets, loss, reduction, share=1.0) -> float:
    """The loss of ``Y`` [T, B, O] (time-major outputs) against batch-first ``targets``; overwrites
    ``Y`` with the gradient of the loss (of its mean or, for ``reduction`` sum, its sum) times ``share``."""
    T, B, O = Y.shape  # noqa: E741  (O: the output width, as in the docstrings' shapes)
    N = T * B
    Yf = Y.reshape(N, O)
    if loss == "cross_entropy":
        count = N
        value = _cross_entropy_(Yf, np.ascontiguousarray(targets.T).reshape(N), 1.0)
    else:
        scored = targets.shape[1]
        tail = Y[T - scored :].reshape(scored * B, O)  # a view: the gradient is written into Y
        wanted = np.ascontiguousarray(targets.transpose(1, 0, 2)).reshape(scored * B, targets.shape[2])
        if loss == "gaussian_nll":
            count = scored * B
            value = _gaussian_nll_(tail, wanted, 1.0)
        else:
            count = scored * B * O
            value = (_mae_ if loss == "mae" else _mse_)(tail, wanted, 1.0)
        Y[: T - scored] = 0.0  # unscored outputs contribute no gradient
    if reduction == "mean":
        Yf *= share / count
    elif reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}; choose mean or sum")
    elif share != 1.0:
        Yf *= share
    return value


def _readout_backward(params, spec, cache, dY, masks, grads) -> np.ndarray:
    """Gradients of the readout (into ``grads``) from ``dY`` [T, B, O]; returns d top stream [T, B, H]."""
    x, top, inv = cache
    T, B, O = dY.shape  # noqa: E741
    dYf = dY.reshape(T * B, O)
    H = top.shape[2]
    d_readout = top.reshape(T * B, H).T @ dYf
    grads["readout.b"] = dYf.sum(axis=0)
    if spec.tie_weights:  # the readout is embed.W.T; the embedding's own gradient is added to this
        grads["embed.W"] = d_readout.T
    else:
        grads["readout.W"] = d_readout
    dH = (dYf @ readout_weight(params, spec).T).reshape(T, B, H)
    if "readout" in masks:
        dH *= masks["readout"]
    if spec.norm != "none":
        dH, grads["readout.norm"] = _rms_norm_backward(dH, x, inv, params["readout.norm"])
    return dH


def _stack_backward(params, spec, cache, dH, masks, grads, d_final=None, input_grad=True):
    """Backpropagation through time of ``_stack_forward``: ``dH`` [T, B, H] reaches the top stream,
    ``d_final`` (a carry, or None) the final carry.  Adds the layers' gradients to ``grads``;
    returns (d what layer 0 read, or None unless ``input_grad`` or a norm needs it; d carry_0)."""
    streams, reads, inv_rms, caches = cache
    cell = _cell(spec)
    d_start = [None] * spec.num_layers
    d_read = None
    # dH: the gradient reaching the stream above layer k (its output, plus its input if residual).
    for k in range(spec.num_layers - 1, -1, -1):
        p = _layer_params(params, k)
        dA, g, d_start[k] = cell.backward(p, caches[k], dH, None if d_final is None else d_final[k])
        T, B, G = dA.shape
        dAf = dA.reshape(T * B, G)
        read = reads[k]
        ids = read.dtype.kind in "iu"  # layer 0 gathered rows of W (one-hot) or of embed.W @ W (folded)
        folded = ids and spec.input_kind == "embedding"
        if ids:
            d_table = _scatter_rows(read.reshape(T * B), dAf, spec.input_size)  # [V, G*H]
            g["b"] = d_table.sum(axis=0)
            if folded:
                embed = params["embed.W"]
                g["W"] = embed.T @ d_table
                d_embed = d_table @ p["W"].T
                grads["embed.W"] = grads["embed.W"] + d_embed if "embed.W" in grads else d_embed
            else:
                g["W"] = d_table
        else:
            g["W"] = read.reshape(T * B, -1).T @ dAf
            g["b"] = dAf.sum(axis=0)
        for key, v in g.items():
            name = f"layers.{k}.{key}"
            grads[name] = grads[name] + v if name in grads else v
        d_read = None
        if not folded and (k > 0 or input_grad or has_norm(spec, k)):
            d_read = (dAf @ p["W"].T).reshape(T, B, -1)
            if f"layers.{k}" in masks:
                d_read *= masks[f"layers.{k}"]
            if has_norm(spec, k):
                d_read, d_norm = _rms_norm_backward(d_read, streams[k], inv_rms[k], p["norm"])
                name = f"layers.{k}.norm"
                grads[name] = grads[name] + d_norm if name in grads else d_norm
            dH = d_read + dH if has_residual(spec, k) else d_read
    return (dH if d_read is not None else None), d_start


def _decode_backward(params, spec, cache, dTop, grads) -> list:
    """Gradients of the decoder step (into ``grads``) from ``dTop`` [M, B, H]; returns the gradient
    reaching the encoder's final carry (summed over the M rows that started from it)."""
    M, B, H = dTop.shape
    d_inputs, d_start = _stack_backward(params, spec, cache, dTop.reshape(1, M * B, H), {}, grads)
    P = params["decoder.position"].shape[1]
    d_inputs = d_inputs[0]
    grads["decoder.position"] = d_inputs[:, :P].reshape(M, B, P).sum(axis=1)
    C = spec.decode_channels
    grads["decoder.channel"] = d_inputs[:, P:].reshape(M * B // C, C, -1).sum(axis=0)
    return map_arrays(lambda a: a.reshape(M, B, -1).sum(axis=0), d_start)


def loss_and_grads(
    params: dict,
    spec: ModelSpec,
    carry: list,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss: str = "cross_entropy",
    reduction: str = "mean",
    masks: dict | None = None,
    share: float = 1.0,
):
    """Loss, gradients and final carry for one batch.

    inputs: ``[B, T]`` ids or ``[B, T, F]``; targets: ``[B, T]`` ids (cross_entropy) or
    ``[B, T', O]`` values for the last T' outputs (mse; a segment decoder's outputs are its M
    rows).  The returned loss is always the mean per scored element (nats/char for
    cross_entropy); ``reduction`` says whether the gradients are of that mean or of the sum over
    every scored element (the min-char-rnn objective).  ``masks``: this step's dropout masks
    (``rnnlab.dropout``).  ``share``: a factor on every gradient (a row block's share of its batch,
    so that the blocks' gradients add up to the batch's).
    """
    targets = check_targets(spec, loss, inputs, targets)
    Y, new_carry, (raw, stack, decoder, readout, masks) = _forward(params, spec, carry, inputs, masks)
    value = _loss_gradient(Y, targets, loss, reduction, share)
    grads: dict = {}
    dH = _readout_backward(params, spec, readout, Y, masks, grads)
    d_final = None
    if spec.decodes:
        d_final = _decode_backward(params, spec, decoder, dH, grads)
        dH = np.zeros(raw.shape[:2] + (spec.hidden_size,), Y.dtype)  # encoder steps have no readout
    dH, _ = _stack_backward(
        params, spec, stack, dH, masks, grads, d_final, input_grad=spec.input_kind in ("dense_relu", "embedding")
    )
    T, B = raw.shape[:2]
    N = T * B
    if spec.input_kind == "embedding" and dH is not None:  # (None: the stack's backward folded it)
        d_embed = _scatter_rows(raw.reshape(N), dH.reshape(N, -1), spec.input_size)
        grads["embed.W"] = d_embed + grads["embed.W"] if spec.tie_weights else d_embed
    if spec.input_kind == "dense_relu":
        # ReLU passes gradient where it was active
        dZ = dH.reshape(N, -1) * (stack[0][0].reshape(N, -1) > 0)
        grads["input.W"] = raw.reshape(N, -1).T @ dZ
        grads["input.b"] = dZ.sum(axis=0)
    return value, grads, new_carry


# --------------------------------------------------------------------------- training step

# A batch is split into blocks of no fewer rows than this: below it, the fixed cost of each of a
# time step's small NumPy calls outweighs a second core.
MIN_SPLIT_ROWS = 16


def split_rows(batch: int, threads: int, unit: int = 1) -> list[slice]:
    """Contiguous row blocks of a batch, one per thread, as even as blocks of whole ``unit``s
    (a segment decoder's rows come ``decode_channels`` per window) and ``MIN_SPLIT_ROWS`` allow;
    one block (the whole batch) where no split is worth it."""
    groups = batch // unit
    blocks = min(threads, groups, batch // MIN_SPLIT_ROWS)
    if blocks < 2 or batch % unit:
        return [slice(0, batch)]
    bounds = [round(i * groups / blocks) * unit for i in range(blocks + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


class Trainer:
    """Owns parameters and optimizer state; one call = one update on one batch.

    The loop in ``rnnlab.train`` talks only to this interface, so every
    backend supplies its own ``Trainer`` with the same methods.
    """

    name = name

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
        from ..optim import clip_gradients_

        self._clip = clip_gradients_
        self.spec, self.params, self.optimizer = spec, params, optimizer
        self.loss, self.reduction, self.clip, self.clip_value = loss, reduction, clip, clip_value
        self.dropout = dropout  # the loop draws each step's masks at this rate (rnnlab.dropout)
        self.dtype = params_dtype(params)
        # The batch's row blocks run in threads of their own, each with single-threaded matrix
        # products: OpenBLAS's own two threads spend a third of a best-300s step waiting on each
        # other between the small products of a time step (benchmarks/step_profile.py).
        self.split_threads = batch_split_threads(count_params(spec)) if blas.can_pin_threads() else 1
        self._pool = None

    def init_carry(self, batch_size: int) -> list:
        return init_carry(self.spec, batch_size, self.dtype)

    def _loss_and_grads(self, carry, inputs, targets, masks):
        """``loss_and_grads`` of the batch, its row blocks computed in parallel and summed: the
        loss and (for a mean) each gradient weighted by the block's share of the rows."""
        blocks = split_rows(len(inputs), self.split_threads, self.spec.decode_channels or 1)
        if len(blocks) == 1:
            return loss_and_grads(self.params, self.spec, carry, inputs, targets, self.loss, self.reduction, masks)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(blocks), thread_name_prefix="rnnlab-split")

        def block(rows):
            share = (rows.stop - rows.start) / len(inputs)
            blas.one_blas_thread_here()
            with np.errstate(over="ignore", invalid="ignore"):  # a new thread starts from the default state
                return loss_and_grads(
                    self.params,
                    self.spec,
                    map_arrays(lambda a: a[rows], carry),
                    inputs[rows],
                    targets[rows],
                    self.loss,
                    self.reduction,
                    None if masks is None else {k: m[rows] for k, m in masks.items()},
                    share if self.reduction == "mean" else 1.0,
                )

        parts = list(self._pool.map(block, blocks))
        value = sum((rows.stop - rows.start) / len(inputs) * part[0] for rows, part in zip(blocks, parts))
        grads = parts[0][1]
        for _, more, _ in parts[1:]:
            for name, g in more.items():
                grads[name] += g
        return value, grads, join(lambda *pieces: np.concatenate(pieces), [part[2] for part in parts])

    def train_step(self, carry, inputs, targets, lr: float, masks: dict | None = None):
        """(loss, grad_norm, new_carry); parameters are left untouched if either is non-finite.
        ``masks``: this step's dropout masks (``rnnlab.dropout``), None for none."""
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are reported below
            value, grads, new_carry = self._loss_and_grads(carry, inputs, targets, masks)
        if not np.isfinite(value):
            return value, float("nan"), carry
        norm = self._clip(grads, self.clip, self.clip_value)
        if not np.isfinite(norm):
            return value, norm, carry
        self.optimizer.update_(self.params, grads, lr)
        return value, norm, new_carry

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace the weights' values (same names and shapes); the optimizer state stays."""
        for k, v in params.items():
            self.params[k][...] = v

    def forward(self, carry, inputs):
        return forward(self.params, self.spec, carry, inputs)

    def step(self, carry, x):
        return step(self.params, self.spec, carry, x)

    def state_tensors(self) -> dict[str, np.ndarray]:
        return state_tensors(self.params, self.optimizer)
