"""numba's compiled step kernels (``rnnlab.backends.numpy_kernels``) against the pure-NumPy
reference path they replace: equal in float64 (libm's exp there), within float32 rounding in
float32 (the polynomial exp there), and switched off by ``RNNLAB_NUMBA=0``."""

import numpy as np
import pytest

from rnnlab.backends import compiled
from rnnlab.backends import numpy_backend as nb
from rnnlab.backends import numpy_kernels as kernels  # numba is in `make test`'s extras: no skip
from rnnlab.cells import ModelSpec, init_params


def both_paths(monkeypatch, compute):
    """``compute()`` with the kernels, then on the reference path."""
    monkeypatch.setenv("RNNLAB_NUMBA", "1")
    fused = compute()
    monkeypatch.setenv("RNNLAB_NUMBA", "0")
    return fused, compute()


def test_kernels_are_chosen_by_dtype_and_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("RNNLAB_NUMBA", "1")
    assert compiled.kernels(np.float32) is kernels and compiled.kernels(np.float64) is kernels
    assert compiled.kernels(np.float16) is None
    monkeypatch.setenv("RNNLAB_NUMBA", "0")
    assert compiled.kernels(np.float32) is None


def test_float32_exp_is_within_two_ulps_and_saturates_to_zero_and_inf():
    x = np.linspace(-87.0, 88.0, 1_000_003, dtype=np.float32)
    out = np.empty_like(x)
    kernels.exp(x, out)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - want) / want) < 2.5e-7
    far = np.array([-np.inf, -1e30, -800.0, -88.0, 88.5, 800.0, 1e30, np.inf, np.nan], np.float32)
    out = np.empty_like(far)
    kernels.exp(far, out)  # NaN stays NaN: a diverged step must still show as non-finite
    np.testing.assert_array_equal(out, [0, 0, 0, 0, np.inf, np.inf, np.inf, np.inf, np.nan])
    x64 = np.linspace(-700.0, 700.0, 10_001)
    out64 = np.empty_like(x64)
    kernels.exp(x64, out64)
    np.testing.assert_allclose(out64, np.exp(x64), rtol=1e-15)


def _lstm_problem(dtype, T=9, B=5, H=6):
    rng = np.random.default_rng(11)
    p = {"U": (rng.standard_normal((H, 4 * H)) * 0.4).astype(dtype)}
    pre = rng.standard_normal((T, B, 4 * H)) * 1.5
    pre[2, 1] = -800.0  # a row of saturated gates: exp overflows in float32 and float64
    pre[4, 0] = 800.0
    A = (pre * nb.LSTMCell.input_scale(H, dtype)).astype(dtype)
    carry0 = tuple((rng.standard_normal((B, H)) * 0.5).astype(dtype) for _ in range(2))
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    d_final = tuple((rng.standard_normal((B, H)) * 0.3).astype(dtype) for _ in range(2))
    return p, A, carry0, dH, d_final


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_step_kernels_equal_the_reference(dtype, monkeypatch):
    """Every output of the LSTM's forward and backward, the cache the backward reads, the
    gradients of U and of the starting carry: the same with the kernels as without."""
    p, A, carry0, dH, d_final = _lstm_problem(dtype)

    def compute():
        Hout, (h, c), cache = nb.LSTMCell.forward(p, A.copy(), carry0)
        dA, grads, (dh0, dc0) = nb.LSTMCell.backward(p, cache, dH, d_final)
        return [Hout, h, c, *cache, dA, grads["U"], dh0, dc0]

    fused, reference = both_paths(monkeypatch, compute)
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-5, 2e-6)
    names = ["H", "h", "c", "Hs", "Cs", "gates", "tanh c", "dA", "dU", "dh0", "dc0"]
    for name, a, b in zip(names, fused, reference, strict=True):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    low = fused[5][2, 1]  # every gate saturated low: i, f, o exactly 0 and n exactly -1, as numpy's
    assert np.all(low[np.r_[0:12, 18:24]] == 0.0) and np.all(low[12:18] == -1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gru_step_kernels_equal_the_reference(dtype, monkeypatch):
    """nn.GRU's form: its outputs, the cache, dA, the gradients of U and b_U and of h_0, the same
    with the kernels as without (a gradient arriving at the final carry too)."""
    cell = nb.GRUResetAfterCell
    rng = np.random.default_rng(12)
    T, B, H = 9, 5, 6
    p = {"U": (rng.standard_normal((H, 3 * H)) * 0.4).astype(dtype), "b_U": rng.standard_normal(3 * H).astype(dtype)}
    pre = rng.standard_normal((T, B, 3 * H)) * 1.5
    pre[2, 1, : 2 * H] = -800.0  # r and z saturated low: exp overflows in float32 and float64
    A = (pre * cell.input_scale(H, dtype)).astype(dtype)
    h0 = (rng.standard_normal((B, H)) * 0.5).astype(dtype)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    d_final = (rng.standard_normal((B, H)) * 0.3).astype(dtype)

    def compute():
        Hout, h, cache = cell.forward(p, A.copy(), h0)
        dA, grads, dh0 = cell.backward(p, cache, dH, d_final)
        return [Hout, h, *cache, dA, grads["U"], grads["b_U"], dh0]

    fused, reference = both_paths(monkeypatch, compute)
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-5, 2e-6)
    names = ["H", "h", "Hs", "hU", "rz", "n", "dA", "dU", "db_U", "dh0"]
    for name, a, b in zip(names, fused, reference, strict=True):
        assert a.dtype == dtype, name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    assert np.all(fused[4][2, 1] == 0.0)  # r and z exactly 0, as numpy's


@pytest.mark.parametrize("vocab_size", [7, 3000])
@pytest.mark.parametrize("id_dtype", [np.int64, np.int32])
def test_scatter_rows_kernel_sums_repeated_ids_as_the_reference(vocab_size, id_dtype, monkeypatch):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, min(vocab_size, 5), 400).astype(id_dtype)  # few ids, each many times
    ids[0] = vocab_size - 1
    rows = rng.standard_normal((400, 24))
    fused, reference = both_paths(monkeypatch, lambda: nb._scatter_rows(ids, rows, vocab_size))
    np.testing.assert_allclose(fused, reference, rtol=1e-12, atol=1e-13)
    assert fused.shape == (vocab_size, 24) and np.abs(fused[:5]).sum() > 0


def test_scatter_rows_kernel_refuses_ids_outside_the_vocabulary(monkeypatch):
    """The kernel writes wherever an id points, unchecked: the caller checks first."""
    monkeypatch.setenv("RNNLAB_NUMBA", "1")
    rows = np.ones((3, 4))
    for bad in ([0, 5, 1], [0, -1, 1]):
        with pytest.raises(IndexError, match=r"token ids must lie in \[0, 5\)"):
            nb._scatter_rows(np.array(bad), rows, 5)


@pytest.mark.parametrize("cell", ["lstm", "gru_reset_after"])
@pytest.mark.parametrize("input_kind", ["onehot", "embedding"])
def test_a_training_step_is_the_same_with_and_without_kernels(cell, input_kind, monkeypatch):
    """A two-layer char model's loss, every gradient and the final carry, in float64: the one-hot
    input's W gradient and the folded embedding's come from the scatter kernel."""
    rng = np.random.default_rng(4)
    embed_size = 5 if input_kind == "embedding" else 0
    spec = ModelSpec(cell, 11, 8, 11, 2, input_kind, embed_size=embed_size)
    params = init_params(spec, rng, dtype=np.float64)
    inputs, targets = rng.integers(0, 11, (4, 13)), rng.integers(0, 11, (4, 13))
    carry = nb.init_carry(spec, 4, np.float64)

    def compute():
        return nb.loss_and_grads(params, spec, carry, inputs, targets, loss="cross_entropy")

    (value, grads, new_carry), (ref_value, ref_grads, ref_carry) = both_paths(monkeypatch, compute)
    assert value == pytest.approx(ref_value, rel=1e-13)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-11, atol=1e-14, err_msg=name)
    flat = lambda carry: np.concatenate([np.ravel(x) for layer in carry for x in layer])  # noqa: E731
    np.testing.assert_allclose(flat(new_carry), flat(ref_carry), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_gives_the_numpy_codes_bits(dtype, monkeypatch):
    """The NumPy optimizer's Adam step (with decoupled weight decay on the matrices) through
    numba's kernel: the same parameters and moments, bit for bit, over several steps; and a
    tensor that is not C-contiguous sends the whole step back to the NumPy code."""
    from rnnlab.optim import Optimizer

    shapes = {"W": (7, 12), "U": (4, 12), "b": (12,)}

    def compute(transposed=False):
        rng = np.random.default_rng(5)
        params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        if transposed:
            params["W"] = np.asfortranarray(params["W"])
        opt = Optimizer("adam", beta2=0.99, weight_decay=0.3)
        for step in range(4):
            grads = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
            opt.update_(params, grads, 0.02 / (step + 1))
        return params, opt.state

    (params, state), (ref_params, ref_state) = both_paths(monkeypatch, compute)
    for k in shapes:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)
    for k in ref_state:
        np.testing.assert_array_equal(state[k], ref_state[k], err_msg=k)
    monkeypatch.setenv("RNNLAB_NUMBA", "1")
    calls, kernel = [], kernels.adam_update
    monkeypatch.setattr(kernels, "adam_update", lambda *a: calls.append(kernel(*a)))
    compute()
    assert len(calls) == 4 * len(shapes)  # the kernel did run above
    calls.clear()
    strided, _ = compute(transposed=True)
    assert not calls  # the NumPy code ran
    np.testing.assert_array_equal(strided["U"], ref_params["U"])
