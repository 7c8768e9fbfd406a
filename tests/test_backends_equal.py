"""Every backend == the NumPy backend in float64, from the same parameters: forward outputs and
carries, loss and gradients (mean and sum), optimizer steps and optimizer state."""

import importlib

import numpy as np
import pytest
from test_numpy_gradcheck import _problem

from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import CELLS
from rnnlab.config import BACKEND_NAMES
from rnnlab.optim import Optimizer

OTHER_BACKENDS = [name for name in BACKEND_NAMES if name != "numpy"]  # the reference is NumPy
# The cells the slower cross-backend tests walk: every equation, without the "_linear" twins of
# the parallel cells (they differ only in the candidate, which the faster tests cover).
DISTINCT_CELLS = [c for c in CELLS if not c.endswith("_linear")]


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300)


def flat(carry):
    return [a for c in carry for a in (c if isinstance(c, tuple) else (c,))]


def backend_module(name):
    pytest.importorskip(name)
    return importlib.import_module(f"rnnlab.backends.{name}_backend")


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
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
def test_forward_and_gradients_equal_numpy(backend, cell, input_kind, loss):
    other = backend_module(backend)
    spec, params, carry, inputs, targets = _problem(cell, input_kind, loss, B=4, T=7, H=5)
    y_np, c_np = nb.forward(params, spec, carry, inputs)
    y_o, c_o = other.forward(params, spec, carry, inputs)
    assert y_o.dtype == np.float64 and y_o.shape == y_np.shape
    assert rel(y_o, y_np) < 1e-9
    for u, v in zip(flat(c_o), flat(c_np)):
        assert rel(u, v) < 1e-9
    for reduction in ("mean", "sum"):
        v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss, reduction)
        v_o, g_o, _ = other.loss_and_grads(params, spec, carry, inputs, targets, loss, reduction)
        assert v_o == pytest.approx(v_np, rel=1e-12)
        assert g_o.keys() == g_np.keys()
        for k in g_np:
            assert rel(g_o[k], g_np[k]) < 1e-9, (k, reduction)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell", DISTINCT_CELLS)
def test_tail_targets_equal_numpy(backend, cell):
    """mse scored on the last T' outputs only: loss, gradients and a trainer step agree."""
    other = backend_module(backend)
    spec, params, carry, inputs, targets = _problem(cell, "dense", "mse", B=4, T=7, H=5)
    for tail in (targets[:, -1:], targets[:, -3:]):
        for reduction in ("mean", "sum"):
            v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, tail, "mse", reduction)
            v_o, g_o, _ = other.loss_and_grads(params, spec, carry, inputs, tail, "mse", reduction)
            assert v_o == pytest.approx(v_np, rel=1e-12)
            for k in g_np:
                assert rel(g_o[k], g_np[k]) < 1e-9, (k, reduction)
        trainers = [
            module.Trainer(
                spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), "mse", "mean", "norm", 1.0
            )
            for module in (nb, other)
        ]
        for t in trainers:
            t.train_step(carry, inputs, tail, 0.01)
        for k in params:
            assert rel(trainers[1].params[k], trainers[0].params[k]) < 1e-9, k


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell", DISTINCT_CELLS)
def test_gaussian_nll_equals_numpy(backend, cell):
    """The Gaussian head's loss (mean and log-variance outputs): value, gradients, a trainer step."""
    from test_numpy_gradcheck import _gaussian_problem

    other = backend_module(backend)
    spec, params, carry, inputs, targets = _gaussian_problem(cell)
    for tail in (targets[:, -1:], targets[:, -3:]):
        v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, tail, "gaussian_nll")
        v_o, g_o, _ = other.loss_and_grads(params, spec, carry, inputs, tail, "gaussian_nll")
        assert v_o == pytest.approx(v_np, rel=1e-12)
        for k in g_np:
            assert rel(g_o[k], g_np[k]) < 1e-9, k
    trainers = [
        module.Trainer(
            spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), "gaussian_nll", "mean", "norm", 1.0
        )
        for module in (nb, other)
    ]
    for t in trainers:
        t.train_step(carry, inputs, targets[:, -1:], 0.01)
    for k in params:
        assert rel(trainers[1].params[k], trainers[0].params[k]) < 1e-9, k


OPTIMIZER_CASES = [
    ("adam", "norm", "mean"),
    ("adagrad", "value", "sum"),
    ("sgd", "none", "mean"),
    ("adam", "value", "sum"),
    ("adagrad", "norm", "mean"),
]
# Every optimizer case for a classic and a parallel cell; the first case for every cell (the
# update rule does not depend on the cell, the gradients it is fed are checked above).
TRAINER_CASES = [
    (cell, *case) for cell in CELLS for case in (OPTIMIZER_CASES if cell in ("lstm", "mingru") else OPTIMIZER_CASES[:1])
]


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("cell,opt_name,clip,reduction", TRAINER_CASES)
def test_trainer_steps_equal_numpy(backend, opt_name, clip, reduction, cell):
    other = backend_module(backend)
    spec, params, carry, inputs, targets = _problem(cell, "onehot", "cross_entropy", B=4, T=7, H=5)
    trainers = [
        module.Trainer(
            spec, {k: v.copy() for k, v in params.items()}, Optimizer(opt_name), "cross_entropy", reduction, clip, 0.05
        )
        for module in (nb, other)
    ]
    carries = [carry, carry]
    for step in range(3):
        results = [t.train_step(c, inputs, targets, 0.01 * (step + 1)) for t, c in zip(trainers, carries)]
        assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
        assert results[1][1] == pytest.approx(results[0][1], rel=1e-9)
        carries = [r[2] for r in results]
    for u, v in zip(flat(carries[1]), flat(carries[0])):
        assert rel(u, v) < 1e-9
    s_np, s_o = trainers[0].state_tensors(), trainers[1].state_tensors()
    assert trainers[1].optimizer.step == trainers[0].optimizer.step == 3
    assert s_o.keys() == s_np.keys()
    for k in s_np:
        assert rel(s_o[k], s_np[k]) < 1e-9, k


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("opt_name", ["adam", "adagrad"])
def test_trainer_continues_numpy_optimizer_state_and_skips_non_finite(backend, opt_name):
    other = backend_module(backend)
    spec, params, carry, inputs, targets = _problem("lstm", "dense", "mse", B=3, T=5, H=4)
    t_np = nb.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer(opt_name), "mse", "mean", "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    restored = Optimizer.restore(t_np.optimizer.meta(), t_np.optimizer.state_tensors())
    t_o = other.Trainer(spec, t_np.params, restored, "mse", "mean", "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    t_o.train_step(carry, inputs, targets, 0.01)
    for k, v in t_np.params.items():
        assert rel(t_o.params[k], v) < 1e-9, k
    bad = dict(t_np.params)
    bad["readout.b"] = bad["readout.b"].copy()
    bad["readout.b"][0] = np.nan
    t_bad = other.Trainer(spec, bad, Optimizer(opt_name), "mse", "mean", "norm", 1.0)
    loss, _, returned_carry = t_bad.train_step(carry, inputs, targets, 0.01)
    assert not np.isfinite(loss) and t_bad.optimizer.step == 0 and returned_carry is carry
    for k, v in bad.items():
        np.testing.assert_array_equal(t_bad.params[k], v)
    assert not any(v.any() for k, v in t_bad.state_tensors().items() if k.startswith("opt/"))
