"""PyTorch backend == NumPy backend in float64: forward outputs, carries and gradients, every cell,
with the built-in fused modules where the cell equals one."""

import numpy as np
import pytest

from test_jax_backend import rel
from test_numpy_gradcheck import _problem

from rnnlab.backends import numpy_backend as nb
from rnnlab.backends import torch_backend as tb
from rnnlab.cells import CELLS

torch = pytest.importorskip("torch")


def _flat(carry):
    return [a for c in carry for a in (c if isinstance(c, tuple) else (c,))]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("input_kind,loss", [("onehot", "cross_entropy"), ("dense", "mse"),
                                             ("dense", "cross_entropy"), ("dense_relu", "mse")])
def test_torch_matches_numpy_float64(cell, input_kind, loss):
    spec, params, carry, inputs, targets = _problem(cell, input_kind, loss, B=4, T=7, H=5)
    y_np, c_np = nb.forward(params, spec, carry, inputs)
    y_t, c_t = tb.forward(params, spec, carry, inputs)
    assert y_t.dtype == np.float64 and y_t.shape == y_np.shape
    assert rel(y_t, y_np) < 1e-9
    for u, v in zip(_flat(c_t), _flat(c_np)):
        assert rel(u, v) < 1e-9
    for reduction in ("mean", "sum"):
        v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss, reduction)
        v_t, g_t, _ = tb.loss_and_grads(params, spec, carry, inputs, targets, loss, reduction)
        assert v_t == pytest.approx(v_np, rel=1e-12)
        assert g_t.keys() == g_np.keys()
        for k in g_np:
            assert rel(g_t[k], g_np[k]) < 1e-9, (k, reduction)


@pytest.mark.parametrize("cell,module", [("rnn", "RNN"), ("gru_reset_after", "GRU"), ("lstm", "LSTM")])
def test_builtin_cells_use_the_fused_module_and_round_trip(cell, module):
    spec, params, *_ = _problem(cell, "onehot", "cross_entropy", B=2, T=3, H=4)
    model = tb.TorchModel(spec, params)
    assert type(model.rnn) is getattr(torch.nn, module)
    back = model.canonical()
    assert back.keys() == params.keys()
    for k, v in params.items():
        np.testing.assert_array_equal(back[k], v)
    if cell != "gru_reset_after":  # the single canonical bias: the built-in's second bias is frozen at 0
        assert not model.rnn.bias_hh_l0.requires_grad and not model.rnn.bias_hh_l0.any()


def test_float32_agrees_within_1e4():
    spec, params, carry, inputs, targets = _problem("lstm", "dense_relu", "mse", B=4, T=7, H=5)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    c32 = [tuple(a.astype(np.float32) for a in c) for c in carry]
    y_np, _ = nb.forward(p32, spec, c32, inputs)
    y_t, _ = tb.forward(p32, spec, c32, inputs)
    assert y_t.dtype == np.float32 and rel(y_t, y_np) < 1e-4


def test_mse_refuses_the_broadcasting_mistake():
    spec, params, carry, inputs, targets = _problem("gru", "dense", "mse", B=3, T=4, H=4)
    with pytest.raises(ValueError, match="broadcast"):
        tb.loss_and_grads(params, spec, carry, inputs, targets[..., 0], "mse")
