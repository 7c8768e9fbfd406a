"""Residual connections and RMS norm between stacked layers: gradients by finite differences,
every backend equal, and which layers get them."""

import numpy as np
import pytest
from test_backends_equal import OTHER_BACKENDS, backend_module, rel
from test_numpy_gradcheck import central_differences

from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import ModelSpec, count_params, has_norm, has_residual, init_params, param_shapes
from rnnlab.dropout import dropout_masks

KINDS = ["onehot", "embedding", "dense_relu", "dense"]


def _problem(cell, input_kind, residual, norm, L=3, B=3, T=5, H=4, V=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = input_kind in ("onehot", "embedding")
    spec = ModelSpec(
        cell,
        V if ids else 3,
        H,
        V,
        L,
        input_kind,
        embed_size=H if input_kind == "embedding" else 0,
        residual=residual,
        norm=norm,
    )
    params = init_params(spec, rng, dtype=np.float64)
    params = {k: v + rng.standard_normal(v.shape) * 0.3 if v.ndim == 1 else v for k, v in params.items()}
    carry = [
        tuple(rng.standard_normal(a.shape) for a in c) if isinstance(c, tuple) else rng.standard_normal(c.shape)
        for c in nb.init_carry(spec, B, np.float64)
    ]
    inputs = rng.integers(0, V, (B, T)) if ids else rng.standard_normal((B, T, 3))
    targets = rng.integers(0, V, (B, T))
    masks = dropout_masks(spec, 0.3, rng, B, T, np.float64)
    return spec, params, carry, inputs, targets, masks


def test_which_layers_are_normalised_and_residual():
    onehot = ModelSpec("mingru", 10, 8, 10, 3, "onehot", residual=True, norm="rms")
    assert [has_norm(onehot, k) for k in range(3)] == [False, True, True]  # never a raw input
    assert [has_residual(onehot, k) for k in range(3)] == [False, True, True]  # only H -> H layers
    narrow = ModelSpec("mingru", 10, 8, 10, 2, "embedding", embed_size=4, residual=True, norm="rms")
    assert has_norm(narrow, 0) and not has_residual(narrow, 0)
    shapes = param_shapes(narrow)
    assert shapes["layers.0.norm"] == (4,) and shapes["readout.norm"] == (8,)
    assert count_params(narrow) == sum(int(np.prod(s)) for s in shapes.values())
    assert not has_norm(ModelSpec("rnn", 1, 8, 1, 2, "dense", norm="rms"), 0)


@pytest.mark.parametrize("cell", ["mingru", "minlstm_linear", "lstm"])
@pytest.mark.parametrize("input_kind", KINDS)
@pytest.mark.parametrize("residual,norm", [(True, "rms"), (True, "none"), (False, "rms")])
def test_gradients_match_central_differences(cell, input_kind, residual, norm):
    spec, params, carry, inputs, targets, masks = _problem(cell, input_kind, residual, norm)
    value, grads, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, masks=masks)
    assert set(grads) == set(params)
    for name, p in params.items():
        numeric = central_differences(
            lambda: nb.loss_and_grads(params, spec, carry, inputs, targets, masks=masks)[0], p
        )
        err = np.linalg.norm(grads[name] - numeric) / max(np.linalg.norm(numeric), 1e-12)
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell", ["mingru", "gru", "lstm"])
@pytest.mark.parametrize("input_kind", KINDS)
def test_backends_equal_numpy(backend, cell, input_kind):
    other = backend_module(backend)
    spec, params, carry, inputs, targets, masks = _problem(cell, input_kind, True, "rms", B=4, T=7, H=5)
    v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, masks=masks)
    v_o, g_o, _ = other.loss_and_grads(params, spec, carry, inputs, targets, masks=masks)
    assert v_o == pytest.approx(v_np, rel=1e-12) and g_o.keys() == g_np.keys()
    for k in g_np:
        assert rel(g_o[k], g_np[k]) < 1e-9, k
    y_np, _ = nb.forward(params, spec, carry, inputs)
    y_o, _ = other.forward(params, spec, carry, inputs)
    assert rel(y_o, y_np) < 1e-9
