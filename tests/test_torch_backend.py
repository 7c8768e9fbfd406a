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


@pytest.mark.parametrize("opt_name,clip,reduction", [("adam", "norm", "mean"), ("adagrad", "value", "sum"),
                                                     ("sgd", "none", "mean"), ("adam", "value", "sum"),
                                                     ("adagrad", "norm", "mean")])
@pytest.mark.parametrize("cell", ["rnn", "gru", "gru_reset_after", "lstm"])
def test_torch_trainer_steps_equal_numpy(opt_name, clip, reduction, cell):
    from rnnlab.optim import Optimizer

    spec, params, carry, inputs, targets = _problem(cell, "onehot", "cross_entropy", B=4, T=7, H=5)
    trainers = [backend.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer(opt_name),
                                "cross_entropy", reduction, clip, 0.05)
                for backend in (nb, tb)]
    carries = [carry, carry]
    for step in range(3):
        results = [t.train_step(c, inputs, targets, 0.01 * (step + 1)) for t, c in zip(trainers, carries)]
        assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
        assert results[1][1] == pytest.approx(results[0][1], rel=1e-9)
        carries = [r[2] for r in results]
    for u, v in zip(_flat(carries[1]), _flat(carries[0])):
        assert rel(u, v) < 1e-9
    s_np, s_t = trainers[0].state_tensors(), trainers[1].state_tensors()
    assert trainers[1].optimizer.step == trainers[0].optimizer.step == 3
    assert s_t.keys() == s_np.keys()
    for k in s_np:
        assert rel(s_t[k], s_np[k]) < 1e-9, k


@pytest.mark.parametrize("opt_name", ["adam", "adagrad"])
def test_torch_trainer_continues_numpy_optimizer_state_and_skips_non_finite(opt_name):
    from rnnlab.optim import Optimizer

    spec, params, carry, inputs, targets = _problem("lstm", "dense", "mse", B=3, T=5, H=4)
    t_np = nb.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer(opt_name), "mse", "mean",
                      "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    restored = Optimizer.restore(t_np.optimizer.meta(), t_np.optimizer.state_tensors())
    t_t = tb.Trainer(spec, t_np.params, restored, "mse", "mean", "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    t_t.train_step(carry, inputs, targets, 0.01)
    for k, v in t_np.params.items():
        assert rel(t_t.params[k], v) < 1e-9, k
    bad = dict(t_np.params)
    bad["readout.b"] = bad["readout.b"].copy()
    bad["readout.b"][0] = np.nan
    t_bad = tb.Trainer(spec, bad, Optimizer(opt_name), "mse", "mean", "norm", 1.0)
    loss, _, returned_carry = t_bad.train_step(carry, inputs, targets, 0.01)
    assert not np.isfinite(loss) and t_bad.optimizer.step == 0 and returned_carry is carry
    for k, v in bad.items():
        np.testing.assert_array_equal(t_bad.params[k], v)
