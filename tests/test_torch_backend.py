"""PyTorch specifics: the built-in fused modules hold the canonical parameters exactly, float32 agrees,
and the MSE shape check.  (Equality with the NumPy backend is in test_backends_equal.py.)"""

import numpy as np
import pytest
from test_backends_equal import rel
from test_numpy_gradcheck import _problem

from rnnlab.backends import numpy_backend as nb

torch = pytest.importorskip("torch")
tb = pytest.importorskip("rnnlab.backends.torch_backend")


@pytest.mark.parametrize("cell,module", [("rnn", "RNN"), ("gru_reset_after", "GRU"), ("lstm", "LSTM")])
def test_builtin_cells_use_the_fused_module_and_round_trip(cell, module):
    spec, params, *_ = _problem(cell, "onehot", "cross_entropy", B=2, T=3, H=4)
    model = tb.TorchModel(spec, params)
    assert all(type(layer) is getattr(torch.nn, module) for layer in model.layers)
    back = model.canonical()
    assert back.keys() == params.keys()
    for k, v in params.items():
        np.testing.assert_array_equal(back[k], v)
    if cell != "gru_reset_after":  # the single canonical bias: the built-in's second bias is frozen at 0
        for layer in model.layers:
            assert not layer.bias_hh_l0.requires_grad and not layer.bias_hh_l0.any()


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


def test_device_names():
    """Where the torch backend computes, for every case a GPU machine can present (checked without one)."""
    assert tb.device_name("auto", 0, None) == "cpu"
    assert tb.device_name("auto", 2, None) == "cuda:0"
    assert tb.device_name("cpu", 2, 1) == "cpu"
    assert tb.device_name("cuda:1", 2, None) == "cuda:1"
    assert tb.device_name("auto", 4, 3) == "cuda:3"  # torchrun: the GPU of this process's LOCAL_RANK
    assert tb.device_name("cuda", 4, 2) == "cuda:2"
    with pytest.raises(tb.UserError, match="no CUDA GPU.*--device cpu"):
        tb.device_name("cuda", 0, None)
    with pytest.raises(tb.UserError, match="GPU 2 does not exist"):
        tb.device_name("cuda:2", 2, None)
    with pytest.raises(tb.UserError, match="at most that many processes"):
        tb.device_name("auto", 2, 2)
    with pytest.raises(tb.UserError, match="LOCAL_RANK"):
        tb.device_name("cuda:0", 2, 0)


def test_trainer_on_an_explicit_cpu_device_matches_numpy():
    from rnnlab.optim import Optimizer

    spec, params, carry, inputs, targets = _problem("gru_reset_after", "onehot", "cross_entropy", B=3, T=5, H=4)
    t_np = nb.Trainer(
        spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), "cross_entropy", "mean", "norm", 5.0
    )
    t_t = tb.Trainer(
        spec,
        {k: v.copy() for k, v in params.items()},
        Optimizer("adam"),
        "cross_entropy",
        "mean",
        "norm",
        5.0,
        device="cpu",
    )
    assert t_t.device == torch.device("cpu")
    for t in (t_np, t_t):
        t.train_step(carry, inputs, targets, 1e-2)
    for k in params:
        assert rel(t_t.params[k], t_np.params[k]) < 1e-9


def test_process_group_backend():
    from rnnlab.distributed import process_group_backend

    assert process_group_backend("cuda") == "nccl" and process_group_backend("cpu") == "gloo"
