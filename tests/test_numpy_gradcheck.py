"""Float64 central finite differences against the hand-written BPTT, every cell."""

import numpy as np
import pytest

from rnnlab.backends import numpy_backend as nb
from rnnlab.carry import map_arrays
from rnnlab.cells import CELLS, ModelSpec, init_params


def float64_params_and_carry(spec: ModelSpec, rows: int, rng: np.random.Generator) -> tuple[dict, list]:
    """Parameters and a starting carry for a gradient check: non-zero biases and a non-zero carry,
    so that every term of every gradient is exercised (norm gains keep their init)."""
    params = init_params(spec, rng, dtype=np.float64)
    for k, v in params.items():
        if v.ndim == 1 and not k.endswith(".norm"):
            params[k] = rng.standard_normal(v.shape) * 0.3
    carry = map_arrays(lambda a: rng.standard_normal(a.shape) * 0.5, nb.init_carry(spec, rows, np.float64))
    return params, carry


def _problem(cell, input_kind, loss, num_layers=2, B=3, T=5, H=4, V=6, seed=0, tie_weights=False):
    """A small float64 problem; ``input_kind`` "embedding" has 3-wide rows, or H-wide when tied."""
    rng = np.random.default_rng(seed)
    ids = input_kind in ("onehot", "embedding")
    in_size = V if ids else 3
    out_size = V if loss == "cross_entropy" else 2
    embed_size = (H if tie_weights else 3) if input_kind == "embedding" else 0
    spec = ModelSpec(
        cell,
        in_size,
        H,
        out_size,
        num_layers=num_layers,
        input_kind=input_kind,
        embed_size=embed_size,
        tie_weights=tie_weights,
    )
    params, carry = float64_params_and_carry(spec, B, rng)
    inputs = rng.integers(0, V, (B, T)) if ids else rng.standard_normal((B, T, in_size))
    targets = rng.integers(0, V, (B, T)) if loss == "cross_entropy" else rng.standard_normal((B, T, out_size))
    return spec, params, carry, inputs, targets


def central_differences(loss, p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d loss() / d p by central differences, ``p`` perturbed in place element by element."""
    numeric = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + eps
        plus = loss()
        p[i] = old - eps
        minus = loss()
        p[i] = old
        numeric[i] = (plus - minus) / (2 * eps)
    return numeric


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "input_kind,loss",
    [
        ("onehot", "cross_entropy"),
        ("dense", "mse"),
        ("dense", "cross_entropy"),
        ("dense_relu", "mse"),
        ("embedding", "cross_entropy"),
    ],
)
def test_gradients_match_central_differences(cell, input_kind, loss):
    spec, params, carry, inputs, targets = _problem(cell, input_kind, loss)
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss=loss)
    assert set(grads) == set(params)
    for name, p in params.items():
        numeric = central_differences(lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, loss=loss)[0], p)
        analytic = grads[name]
        assert analytic.shape == p.shape
        rel = np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-12)
        assert rel < 1e-6, f"{cell}/{input_kind}/{loss}: {name} relative error {rel:.2e}"


def test_sum_reduction_scales_gradients_by_token_count():
    spec, params, carry, inputs, targets = _problem("rnn", "onehot", "cross_entropy", num_layers=1)
    v1, g_mean, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, reduction="mean")
    v2, g_sum, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, reduction="sum")
    assert v1 == pytest.approx(v2)
    n = inputs.size
    for k in params:
        np.testing.assert_allclose(g_sum[k], g_mean[k] * n, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scored", [1, 3])
def test_tail_targets_gradients_match_central_differences(cell, scored):
    """mse targets for only the last T' outputs (a forecaster scored on its final step)."""
    spec, params, carry, inputs, targets = _problem(cell, "dense", "mse", num_layers=1)
    tail = targets[:, -scored:]
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, tail, loss="mse")
    outputs, _ = nb.forward(params, spec, carry, inputs)
    assert value == pytest.approx(np.mean((outputs[:, -scored:] - tail) ** 2), rel=1e-12)
    for name, p in params.items():
        numeric = central_differences(lambda: nb.loss_and_grads(params, spec, carry, inputs, tail, loss="mse")[0], p)
        rel = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert rel < 1e-6, f"{cell}/last {scored}: {name} relative error {rel:.2e}"


def _gaussian_problem(cell, seed=0):
    """A forecaster with a Gaussian head: outputs (mean, log-variance), one target column."""
    spec, params, carry, inputs, targets = _problem(cell, "dense", "mse", num_layers=1, seed=seed)
    return spec, params, carry, inputs, targets[..., :1]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scored", [1, 3])
def test_gaussian_nll_gradients_match_central_differences(cell, scored):
    spec, params, carry, inputs, targets = _gaussian_problem(cell)
    tail = targets[:, -scored:]
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, tail, loss="gaussian_nll")
    outputs, _ = nb.forward(params, spec, carry, inputs)
    mean, log_var = outputs[:, -scored:, 0], outputs[:, -scored:, 1]
    expected = np.mean(0.5 * np.log(2 * np.pi * np.exp(log_var)) + 0.5 * (tail[..., 0] - mean) ** 2 / np.exp(log_var))
    assert value == pytest.approx(expected, rel=1e-12)
    for name, p in params.items():
        numeric = central_differences(
            lambda: nb.loss_and_grads(params, spec, carry, inputs, tail, loss="gaussian_nll")[0], p
        )
        rel = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert rel < 1e-6, f"{cell}/last {scored}: {name} relative error {rel:.2e}"


def test_gaussian_nll_needs_two_outputs_and_one_target_column():
    spec, params, carry, inputs, targets = _gaussian_problem("rnn")
    with pytest.raises(ValueError, match="gaussian_nll needs"):
        nb.loss_and_grads(params, spec, carry, inputs, np.concatenate([targets, targets], -1), loss="gaussian_nll")


def test_mse_targets_longer_than_the_outputs_or_without_feature_axis_are_refused():
    spec, params, carry, inputs, targets = _problem("rnn", "dense", "mse", num_layers=1)
    too_long = np.concatenate([targets, targets[:, :1]], axis=1)
    for bad in (too_long, targets[..., 0], targets[:, :0]):
        with pytest.raises(ValueError, match="targets must be"):
            nb.loss_and_grads(params, spec, carry, inputs, bad, loss="mse")


@pytest.mark.parametrize("vocab_size", [50, 2100])  # both sides of the one-hot GEMM / sort-and-reduceat switch
def test_one_hot_input_gradient_sums_repeated_characters(vocab_size):
    """The gradient of the embedding gather equals the gradient of the same model fed one-hot
    vectors densely, for small vocabularies and large ones (where each repeated id must be
    summed, not kept once)."""
    rng = np.random.default_rng(3)
    B, T, H = 3, 7, 5
    spec = ModelSpec("gru_reset_after", vocab_size, H, vocab_size, 1, "onehot")
    dense = ModelSpec("gru_reset_after", vocab_size, H, vocab_size, 1, "dense")
    params = init_params(spec, rng, dtype=np.float64)
    inputs = rng.integers(0, 4, (B, T))  # four ids, each repeated several times
    inputs[0, 0] = vocab_size - 1
    targets = rng.integers(0, vocab_size, (B, T))
    carry = nb.init_carry(spec, B, np.float64)
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss="cross_entropy")
    one_hot = np.eye(vocab_size)[inputs]
    dense_value, dense_grads, _ = nb.loss_and_grads(params, dense, carry, one_hot, targets, loss="cross_entropy")
    assert value == pytest.approx(dense_value, rel=1e-12)
    np.testing.assert_allclose(grads["layers.0.W"], dense_grads["layers.0.W"], rtol=1e-10, atol=1e-14)
    assert np.abs(grads["layers.0.W"][:4]).sum() > 0


def test_lstm_saturated_gates_are_exact_and_raise_no_warning():
    """The LSTM's gates come from one exp (sigmoid(a) = 1 / (1 + exp(-a))), which overflows for
    a far below zero: the gate must then be exactly 0 (tanh: -1), with no overflow warning
    reaching an evaluation run, and the step must match the textbook formulas elsewhere."""
    import warnings

    rng = np.random.default_rng(5)
    T, B, H = 3, 2, 4
    pre = rng.standard_normal((T, B, 4 * H)) * 3
    pre[0, 0] = -800.0  # every gate saturated low: exp overflows in float32 and float64
    pre[1, 1] = 800.0
    for dtype in (np.float32, np.float64):
        p = {"U": np.zeros((H, 4 * H), dtype)}
        A = (pre * nb.LSTMCell.input_scale(H, dtype)).astype(dtype)
        zero = np.zeros((B, H), dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Hout, (h, c), _ = nb.LSTMCell.forward(p, A, (zero, zero))
        sig = 1.0 / (1.0 + np.exp(-np.clip(pre, -700, 700)))
        i, f, n, o = sig[..., :H], sig[..., H : 2 * H], np.tanh(pre[..., 2 * H : 3 * H]), sig[..., 3 * H :]
        c_ref, want = np.zeros((B, H)), []
        for t in range(T):
            c_ref = f[t] * c_ref + i[t] * n[t]
            want.append(o[t] * np.tanh(c_ref))
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(Hout, np.array(want), rtol=0, atol=tol)
        assert np.all(Hout[0, 0] == 0.0)  # o = 0 exactly where every gate saturated low


def test_gru_saturated_gates_are_exact_and_raise_no_warning():
    """nn.GRU's form takes its r and z from one exp each (sigmoid(a) = 1 / (1 + exp(-a))), which
    overflows for a far below zero: r and z must then be exactly 0 (h' = n), with no overflow
    warning, and every step must match the textbook formulas."""
    import warnings

    rng = np.random.default_rng(6)
    T, B, H = 3, 2, 4
    pre = rng.standard_normal((T, B, 3 * H)) * 3
    pre[0, 0, : 2 * H] = -800.0  # r and z saturated low: exp overflows in float32 and float64
    pre[1, 1, : 2 * H] = 800.0
    for dtype in (np.float32, np.float64):
        p = {"U": np.zeros((H, 3 * H), dtype), "b_U": np.zeros(3 * H, dtype)}
        A = (pre * nb.GRUResetAfterCell.input_scale(H, dtype)).astype(dtype)
        h0 = (rng.standard_normal((B, H)) * 0.5).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Hout, _, (_, _, _, N) = nb.GRUResetAfterCell.forward(p, A, h0)
        z = 1.0 / (1.0 + np.exp(-np.clip(pre[..., H : 2 * H], -700, 700)))
        n = np.tanh(pre[..., 2 * H :])  # U = 0: r multiplies h U_n + b_U_n = 0
        h, want = h0.astype(np.float64), []
        for t in range(T):
            h = z[t] * h + (1.0 - z[t]) * n[t]
            want.append(h)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(Hout, np.array(want), rtol=0, atol=tol)
        assert np.all(Hout[0, 0] == N[0, 0])  # z = 0 exactly: h' = n


@pytest.mark.parametrize("block", [1, 2, 3])
def test_lstm_backward_in_factor_blocks_matches_central_differences(block, monkeypatch):
    """The LSTM backward forms its gate factors a block of steps at a time: with blocks shorter
    than the sequence (and a last, partial block) every gradient, and the gradient reaching the
    starting carry, must still be exact.  (The reference path: numba's kernel has no blocks.)"""
    monkeypatch.setenv("RNNLAB_NUMBA", "0")
    monkeypatch.setattr(nb.LSTMCell, "FACTOR_BLOCK", block)
    spec, params, carry, inputs, targets = _problem("lstm", "dense", "mse", num_layers=1, T=7)
    loss = lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, loss="mse")[0]  # noqa: E731
    _, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss="mse")
    for name, p in params.items():
        numeric = central_differences(loss, p)
        rel = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert rel < 1e-6, f"block {block}: {name} relative error {rel:.2e}"
    # d carry_0 from the cell itself, against central differences of the starting h and c.
    Y, _, (_, (_, _, _, caches), _, _, _) = nb._forward(params, spec, carry, inputs)
    dH = np.random.default_rng(1).standard_normal(Y.shape[:2] + (spec.hidden_size,))
    p = nb._layer_params(params, 0)
    A = nb._project(spec, 0, p, np.ascontiguousarray(np.swapaxes(inputs, 0, 1)))
    _, _, (dh0, dc0) = nb.LSTMCell.backward(p, caches[0], dH)
    for start, analytic in zip(carry[0], (dh0, dc0)):
        numeric = central_differences(lambda: float(np.sum(nb.LSTMCell.forward(p, A, tuple(carry[0]))[0] * dH)), start)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
