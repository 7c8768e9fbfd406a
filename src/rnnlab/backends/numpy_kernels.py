"""Compiled element-wise kernels for the NumPy backend's time loops (optional: ``pip install rnnlab[numba]``).

A step of an LSTM's time loop is one small GEMM and a dozen element-wise NumPy calls on [B, 4H] and
[B, H] rows; at H = 128 the calls cost more than the GEMM (each one passes over its row again, and
NumPy's float32 exp runs at about 1.4 ns an element on an AVX2 CPU without a vector math library).
Each kernel here does one step's element-wise work in a single pass, with an exp that the compiler
vectorises (below), and releases the interpreter lock, so that the batch split's two row blocks
(``threads.batch_split_threads``) never wait on each other between GEMMs.

The NumPy code in ``numpy_backend`` stays the readable reference: these kernels compute the same
arithmetic, and the tests hold them to it in float64 (where they use libm's exp and tanh) and in
float32 (where they use the polynomial exp, within a few float32 ulps).  This module needs numba;
``numpy_backend`` imports it only when numba is installed and ``RNNLAB_NUMBA`` is not ``0``.

Every kernel works on C-contiguous arrays of one dtype (float32 or float64) and takes ``one``, a
scalar 1 of that dtype, so that its constants keep the arrays' precision (a Python float literal
would make numba compute a float32 step in float64).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import overload

f32 = np.float32
# Cephes' expf: exp(x) = 2^n exp(r) with n = round(x / ln 2), |r| <= ln(2) / 2, and exp(r) from a
# degree-7 polynomial; 2^n is built in the float's exponent bits.  Written without calls or branches,
# so that LLVM vectorises it (8 lanes with AVX2).  Maximum relative error 2e-7 (two ulps) on
# [-87, 88].  Inputs are clamped to [-88, 89], where n = -127 and 128 give the exponent bits of 0
# and inf: exp is exactly 0 below about -87.7 and inf above about 88.4 (numpy's: -103.9 and 88.7),
# so that a saturated gate 1 / (1 + exp(-a)) is exactly 0 or 1, as in the reference.
_LOG2E, _LN2_HI, _LN2_LO = f32(1.4426950408889634), f32(0.693359375), f32(-2.12194440e-4)
_C0, _C1, _C2 = f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3)
_C3, _C4, _C5 = f32(4.1665795894e-2), f32(1.6666665459e-1), f32(5.0000001201e-1)
_LO, _HI, _HALF, _ONE, _TWO = f32(-88.0), f32(89.0), f32(0.5), f32(1.0), f32(2.0)


def _exp(x):
    """exp for a kernel: the polynomial in float32, libm's in float64 (numba types it by the overload)."""
    raise NotImplementedError


@overload(_exp, inline="always")
def _exp_typed(x):
    if x == types.float32:

        def exp32(x):
            x = min(max(x, _LO), _HI)
            n = np.floor(x * _LOG2E + _HALF)
            r = x - n * _LN2_HI
            r = r - n * _LN2_LO
            p = ((((_C0 * r + _C1) * r + _C2) * r + _C3) * r + _C4) * r + _C5
            p = p * r * r + r + _ONE
            return p * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)

        return exp32
    return lambda x: math.exp(x)


def _tanh(x):
    """tanh for a kernel: 2 / (1 + exp(-2x)) - 1 in float32 (within 1.2e-7 absolutely), libm's in float64."""
    raise NotImplementedError


@overload(_tanh, inline="always")
def _tanh_typed(x):
    if x == types.float32:
        return lambda x: _TWO / (_ONE + _exp(-_TWO * x)) - _ONE
    return lambda x: math.tanh(x)


# error_model="numpy": a division by zero gives inf instead of raising, which is what lets the loops vectorise.
_jit = numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
# Without fused multiply-adds: the optimizer's kernel rounds as NumPy's code does, bit for bit.
_jit_exact = numba.njit(nogil=True, cache=True, error_model="numpy")


@_jit
def lstm_forward_step(g, a, c_prev, c, tc, h, one):
    """One LSTM step after its GEMM: ``g`` [B, 4H] holds h_prev @ U' (columns scaled by
    ``LSTMCell.input_scale``) and ``a`` [B, 4H] the step's scaled input projection.  On return
    ``g`` holds the gates [i, f, n, o] (sigmoids, n = tanh), ``c`` [B, H] the new cell state,
    ``tc`` tanh(c) and ``h`` o * tanh(c): what the reference's twelve calls leave."""
    B, H4 = g.shape
    H = H4 // 4
    two = one + one
    # Row views indexed by the loop variable alone: numba then knows the index is not negative and
    # drops its wraparound check, which would otherwise keep LLVM from vectorising the loop.
    for b in range(B):
        gb, ab = g[b], a[b]
        for j in range(H4):
            gb[j] = one / (one + _exp(gb[j] + ab[j]))
        i, f, n, o = gb[:H], gb[H : 2 * H], gb[2 * H : 3 * H], gb[3 * H :]
        cp, cb, tb, hb = c_prev[b], c[b], tc[b], h[b]
        for j in range(H):
            nj = two * n[j] - one
            n[j] = nj
            cc = f[j] * cp[j] + i[j] * nj
            cb[j] = cc
            t = _tanh(cc)
            tb[j] = t
            hb[j] = o[j] * t


@_jit
def lstm_backward_step(g, c_prev, tc, dh_out, dh, dc, d, one):
    """One LSTM step of the backward pass before its GEMM: from the gates ``g`` [B, 4H], c_prev
    and tanh(c) [B, H] of the forward pass, the gradient arriving from above ``dh_out`` and the
    running ``dh`` (read) and ``dc`` (updated to the previous step's), writes ``d`` [B, 4H], the
    gradient of the pre-activations [a_i, a_f, a_n, a_o] (unscaled); d @ U^T is the next dh."""
    B, H4 = g.shape
    H = H4 // 4
    for b in range(B):
        gb, db = g[b], d[b]
        i, f, n, o = gb[:H], gb[H : 2 * H], gb[2 * H : 3 * H], gb[3 * H :]
        di, df, dn, do = db[:H], db[H : 2 * H], db[2 * H : 3 * H], db[3 * H :]
        cp, tb, dhb, dcb, dob = c_prev[b], tc[b], dh[b], dc[b], dh_out[b]
        for j in range(H):
            t = tb[j]
            dhv = dhb[j] + dob[j]
            dcv = dcb[j] + dhv * o[j] * (one - t * t)
            di[j] = dcv * n[j] * (i[j] - i[j] * i[j])
            df[j] = dcv * cp[j] * (f[j] - f[j] * f[j])
            dn[j] = dcv * i[j] * (one - n[j] * n[j])
            do[j] = dhv * t * (o[j] - o[j] * o[j])
            dcb[j] = dcv * f[j]


@_jit
def gru_forward_step(hu, b_u, a, h, rz, n, h_next, one):
    """One step of nn.GRU's form after its GEMM: ``hu`` [B, 3H] holds h @ U' (r and z columns
    negated, ``GRUResetAfterCell.input_scale``) and gets ``b_u`` [3H] added (the backward reads its
    n columns); ``a`` [B, 3H] is the step's scaled input projection.  Writes the gates ``rz`` [B, 2H]
    (sigmoids), ``n`` [B, H] = tanh(a_n + r * hu_n) and ``h_next`` = n + z (h - n)."""
    B, H3 = hu.shape
    H = H3 // 3
    for b in range(B):
        hub, ab, rzb = hu[b], a[b], rz[b]
        for j in range(H3):
            hub[j] += b_u[j]
        for j in range(2 * H):
            rzb[j] = one / (one + _exp(hub[j] + ab[j]))
        r, z, hu_n, a_n = rzb[:H], rzb[H:], hub[2 * H :], ab[2 * H :]
        hb, nb, outb = h[b], n[b], h_next[b]
        for j in range(H):
            nj = _tanh(r[j] * hu_n[j] + a_n[j])
            nb[j] = nj
            outb[j] = (hb[j] - nj) * z[j] + nj


@_jit
def gru_backward_step(rz, n, h, hu, dh_out, dh, dh_matmul, dhu, da_n, one):
    """One step of nn.GRU's backward before its GEMM.  The gradient reaching h' is ``dh`` (the
    part through z, from the later step) + ``dh_matmul`` (the later step's dhu @ U^T) + ``dh_out``.
    From the forward's ``rz``, ``n``, h and ``hu`` (its n columns), writes ``da_n`` [B, H],
    ``dhu`` [B, 3H] = d(h U + b_U) = [d a_r, d a_z, d a_n r], and ``dh`` = the gradient reaching
    h through z; dhu @ U^T is the rest of it."""
    B, H = n.shape
    for b in range(B):
        rzb, hub, dhub = rz[b], hu[b], dhu[b]
        r, z, hu_n = rzb[:H], rzb[H:], hub[2 * H :]
        d_r, d_z, d_n = dhub[:H], dhub[H : 2 * H], dhub[2 * H :]
        nb, hb, dob, dhb, dmb, danb = n[b], h[b], dh_out[b], dh[b], dh_matmul[b], da_n[b]
        for j in range(H):
            g = dhb[j] + dmb[j] + dob[j]
            nj, zj, rj = nb[j], z[j], r[j]
            dan = g * (one - nj * nj) * (one - zj)
            danb[j] = dan
            d_n[j] = dan * rj
            d_z[j] = g * (hb[j] - nj) * (zj - zj * zj)
            d_r[j] = dan * (rj - rj * rj) * hu_n[j]
            dhb[j] = g * zj


@_jit_exact
def adam_update(p, g, m, v, shrink, b1, one_minus_b1, b2, one_minus_b2, bias2_sqrt, eps, step_size):
    """One Adam step on one tensor in one pass, in place: ``p`` scaled by ``shrink`` (decoupled
    weight decay; 1 for none), then m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2 and
    p -= step_size m / (sqrt(v) / bias2_sqrt + eps): ``Optimizer.update_``'s NumPy code, whose
    eleven passes over the tensors this replaces.  Arrays C-contiguous, of one shape and dtype; the
    scalars of that dtype (as NumPy would cast them)."""
    pf, gf, mf, vf = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
    for k in range(pf.size):
        gk = gf[k]
        mk = mf[k] * b1 + one_minus_b1 * gk
        vk = vf[k] * b2 + one_minus_b2 * (gk * gk)
        mf[k], vf[k] = mk, vk
        pf[k] = pf[k] * shrink - step_size * (mk / (np.sqrt(vk) / bias2_sqrt + eps))


@_jit
def scatter_rows(ids, rows, out):
    """``out[ids[n]] += rows[n]`` for every n: ``rows`` [N, G] summed by ``ids`` [N] into ``out``
    [V, G] (the gradient of a row gather), in one pass over ``rows`` where the one-hot GEMM it
    replaces multiplies a V x N matrix of zeros and ones.  The caller checks that 0 <= ids < V:
    numba does not."""
    for k in range(ids.size):
        src, dst = rows[k], out[ids[k]]
        for j in range(src.size):
            dst[j] += src[j]


@_jit
def exp(x, out):
    """``out`` = exp(``x``) element-wise on 1-D arrays: the kernels' exp, exposed for its test."""
    for k in range(x.size):
        out[k] = _exp(x[k])
