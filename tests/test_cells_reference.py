"""The batched NumPy backend against naive per-example loops written from the cell equations."""

import numpy as np
import pytest

from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import CELLS, ModelSpec, init_params, param_shapes
from rnnlab.optim import Optimizer


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def naive_cell(cell, p, x, h, c):
    """One step for one example, straight from the documented equations."""
    if cell.startswith("min"):  # Feng et al. 2024: gates from x only; g keeps the candidate positive
        g = (lambda v: v) if cell.endswith("_linear") else (lambda v: np.where(v >= 0, v + 0.5, sigmoid(v)))
        a = x @ p["W"] + p["b"]
        if cell.startswith("mingru"):
            H = a.size // 2
            z = sigmoid(a[:H])
            return (1 - z) * h + z * g(a[H:]), None
        H = a.size // 3
        f, i = sigmoid(a[:H]), sigmoid(a[H : 2 * H])
        return f / (f + i) * h + i / (f + i) * g(a[2 * H :]), None
    W, U, b = p["W"], p["U"], p["b"]
    H = U.shape[0]
    if cell == "rnn":
        return np.tanh(x @ W + h @ U + b), None
    if cell == "gru":
        r = sigmoid(x @ W[:, :H] + h @ U[:, :H] + b[:H])
        z = sigmoid(x @ W[:, H : 2 * H] + h @ U[:, H : 2 * H] + b[H : 2 * H])
        n = np.tanh(x @ W[:, 2 * H :] + (r * h) @ U[:, 2 * H :] + b[2 * H :])
        return z * h + (1 - z) * n, None
    if cell == "gru_reset_after":
        bU = p["b_U"]
        r = sigmoid(x @ W[:, :H] + b[:H] + h @ U[:, :H] + bU[:H])
        z = sigmoid(x @ W[:, H : 2 * H] + b[H : 2 * H] + h @ U[:, H : 2 * H] + bU[H : 2 * H])
        n = np.tanh(x @ W[:, 2 * H :] + b[2 * H :] + r * (h @ U[:, 2 * H :] + bU[2 * H :]))
        return (1 - z) * n + z * h, None
    a = x @ W + h @ U + b
    i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
    c = f * c + i * g
    return o * np.tanh(c), c


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("input_kind", ["onehot", "dense", "dense_relu"])
def test_forward_matches_naive_loop(cell, input_kind):
    rng = np.random.default_rng(1)
    V, F, H, B, T, L = 7, 3, 5, 4, 6, 2
    spec = ModelSpec(cell, V if input_kind == "onehot" else F, H, V, L, input_kind)
    params = init_params(spec, rng, dtype=np.float64)
    for k, v in params.items():
        if v.ndim == 1:
            params[k] = rng.standard_normal(v.shape) * 0.2
    inputs = rng.integers(0, V, (B, T)) if input_kind == "onehot" else rng.standard_normal((B, T, F))
    carry = nb.init_carry(spec, B, np.float64)
    Y, new_carry = nb.forward(params, spec, carry, inputs)
    assert Y.shape == (B, T, V)
    for bi in range(B):
        hs = [np.zeros(H) for _ in range(L)]
        cs = [np.zeros(H) for _ in range(L)]
        for t in range(T):
            x = np.eye(V)[inputs[bi, t]] if input_kind == "onehot" else inputs[bi, t]
            if input_kind == "dense_relu":
                x = np.maximum(x @ params["input.W"] + params["input.b"], 0.0)
            for k in range(L):
                p = {
                    name.split(".")[-1]: params[name] for name in param_shapes(spec) if name.startswith(f"layers.{k}.")
                }
                hs[k], cs[k] = naive_cell(cell, p, x, hs[k], cs[k])
                x = hs[k]
            y = x @ params["readout.W"] + params["readout.b"]
            np.testing.assert_allclose(Y[bi, t], y, rtol=1e-12, atol=1e-12)
        last = new_carry[L - 1][0] if cell == "lstm" else new_carry[L - 1]
        np.testing.assert_allclose(last[bi], hs[L - 1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "jax", "torch"])
@pytest.mark.parametrize("cell", CELLS)
def test_step_equals_forward_from_a_carried_state(backend, cell):
    """Sampling runs one step at a time from the state carried so far; it must equal the sequence
    form from the same non-zero state (a parallel-scan cell that forgot h_0 would pass from zeros)."""
    module = pytest.importorskip(f"rnnlab.backends.{backend}_backend")
    rng = np.random.default_rng(2)
    spec = ModelSpec(cell, 6, 4, 6, 2)
    params = init_params(spec, rng, dtype=np.float64)
    for k, v in params.items():
        if v.ndim == 1:
            params[k] = rng.standard_normal(v.shape) * 0.3
    trainer = module.Trainer(spec, params, Optimizer("sgd"), "cross_entropy", "mean", "none", 1.0)
    start = [
        tuple(rng.standard_normal(a.shape) for a in c) if isinstance(c, tuple) else rng.standard_normal(c.shape)
        for c in nb.init_carry(spec, 3, np.float64)
    ]
    ids = rng.integers(0, 6, (3, 5))
    Y, final = trainer.forward(start, ids)
    carry = start
    for t in range(5):
        carry, y = trainer.step(carry, ids[:, t])
        assert np.abs(y - Y[:, t]).max() < 1e-9 * max(1.0, np.abs(Y).max()), t
    for a, b in zip(carry, final):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    Y0, _ = trainer.forward(nb.init_carry(spec, 3, np.float64), ids)
    assert np.abs(Y0 - Y).max() > 1e-3  # the carried state matters


def test_float32_is_float32_throughout():
    spec = ModelSpec("lstm", 6, 4, 6)
    params = init_params(spec, np.random.default_rng(0))
    ids = np.random.default_rng(0).integers(0, 6, (2, 3))
    loss, grads, carry = nb.loss_and_grads(params, spec, nb.init_carry(spec, 2), ids, ids)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert carry[0][0].dtype == np.float32


def test_mse_rejects_broadcasting_shapes():
    spec = ModelSpec("gru", 1, 4, 1, input_kind="dense")
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    x = np.zeros((2, 5, 1))
    with pytest.raises(ValueError, match="broadcast"):
        nb.loss_and_grads(params, spec, nb.init_carry(spec, 2, np.float64), x, np.zeros((2, 5)), loss="mse")


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    spec = ModelSpec("rnn", 3, 2, 3)
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    params["readout.b"][:] = [1000.0, -1000.0, 0.0]
    ids = np.array([[0, 1, 2]])
    loss, grads, _ = nb.loss_and_grads(params, spec, nb.init_carry(spec, 1, np.float64), ids, ids)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert loss == pytest.approx((0 + 2000 + 1000) / 3, rel=1e-3)
