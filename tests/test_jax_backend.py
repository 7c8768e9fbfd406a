"""JAX backend == NumPy backend in float64: forward outputs, carries and gradients, every cell."""

import numpy as np
import pytest

from test_numpy_gradcheck import _problem

from rnnlab.backends import jax_backend as jb
from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import CELLS


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("input_kind,loss", [("onehot", "cross_entropy"), ("dense", "mse"),
                                             ("dense_relu", "mse")])
def test_jax_matches_numpy_float64(cell, input_kind, loss):
    spec, params, carry, inputs, targets = _problem(cell, input_kind, loss, B=4, T=7, H=5)
    y_np, c_np = nb.forward(params, spec, carry, inputs)
    y_jx, c_jx = jb.forward(params, spec, carry, inputs)
    assert y_jx.dtype == np.float64
    assert rel(y_jx, y_np) < 1e-9
    for a, b in zip(c_jx, c_np):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert rel(u, v) < 1e-9
    v_np, g_np, _ = nb.loss_and_grads(params, spec, carry, inputs, targets, loss)
    v_jx, g_jx, _ = jb.loss_and_grads(params, spec, carry, inputs, targets, loss)
    assert v_jx == pytest.approx(v_np, rel=1e-12)
    assert g_jx.keys() == g_np.keys()
    for k in g_np:
        assert rel(g_jx[k], g_np[k]) < 1e-9, k


def test_numpy_runs_never_import_jax_or_torch(tmp_path):
    import subprocess
    import sys

    run = ["denoise", "train", "--backend", "numpy", "--steps", "3", "--eval-every", "3", "--val-sequences", "10",
           "--test-sequences", "10", "--quiet", "--out", str(tmp_path / "run")]
    code = ("import sys, rnnlab.cli, rnnlab.tasks.charlm, rnnlab.tasks.denoise, rnnlab.classic, rnnlab.runs; "
            f"assert rnnlab.cli.main({run!r}) == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'torch', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("opt_name,clip,reduction", [("adam", "norm", "mean"), ("adagrad", "value", "sum"),
                                                     ("sgd", "none", "mean"), ("adam", "value", "sum")])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_jax_trainer_steps_equal_numpy(opt_name, clip, reduction, cell):
    from rnnlab.optim import Optimizer

    spec, params, carry, inputs, targets = _problem(cell, "onehot", "cross_entropy", B=4, T=7, H=5)
    trainers = [backend.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer(opt_name),
                                "cross_entropy", reduction, clip, 0.05)
                for backend in (nb, jb)]
    carries = [carry, carry]
    for step in range(3):
        results = [t.train_step(c, inputs, targets, 0.01 * (step + 1)) for t, c in zip(trainers, carries)]
        assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
        assert results[1][1] == pytest.approx(results[0][1], rel=1e-9)
        carries = [r[2] for r in results]
    s_np, s_jx = trainers[0].state_tensors(), trainers[1].state_tensors()
    assert trainers[1].optimizer.step == trainers[0].optimizer.step == 3
    assert s_jx.keys() == s_np.keys()
    for k in s_np:
        assert rel(s_jx[k], s_np[k]) < 1e-9, k


def test_jax_trainer_resumes_from_numpy_optimizer_state_and_skips_non_finite():
    from rnnlab.optim import Optimizer

    spec, params, carry, inputs, targets = _problem("rnn", "onehot", "cross_entropy", B=3, T=5, H=4)
    t_np = nb.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), "cross_entropy",
                      "mean", "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    restored = Optimizer.restore(t_np.optimizer.meta(), t_np.optimizer.state_tensors())
    t_jx = jb.Trainer(spec, t_np.params, restored, "cross_entropy", "mean", "norm", 1.0)
    t_np.train_step(carry, inputs, targets, 0.01)
    t_jx.train_step(carry, inputs, targets, 0.01)
    for k, v in t_np.params.items():
        assert rel(t_jx.params[k], v) < 1e-9, k
    bad = dict(t_np.params)
    bad["readout.b"] = bad["readout.b"].copy()
    bad["readout.b"][0] = np.inf  # the loss becomes NaN
    t_bad = jb.Trainer(spec, bad, Optimizer("adam"), "cross_entropy", "mean", "norm", 1.0)
    loss, _, returned_carry = t_bad.train_step(carry, inputs, targets, 0.01)
    assert not np.isfinite(loss) and t_bad.optimizer.step == 0
    assert returned_carry is carry
    for k, v in bad.items():
        np.testing.assert_array_equal(t_bad.params[k], v)
    assert not any(v.any() for k, v in t_bad.state_tensors().items() if k.startswith("opt/"))


@pytest.mark.parametrize("warmup", [0, 7])
def test_loop_schedule_means_the_same_as_optax(warmup):
    """The loop computes the learning rate on the host for every backend; with warm-up it is
    linear from base/warmup to base, then exactly optax's cosine decay to alpha * base."""
    import optax

    from rnnlab.optim import learning_rate

    base, total, alpha = 3e-3, 100, 0.1
    optax_lr = optax.join_schedules(
        [optax.linear_schedule(base / max(warmup, 1), base, max(warmup - 1, 1)),
         optax.cosine_decay_schedule(base, total - warmup, alpha=alpha)], [warmup])
    for step in range(total + 5):
        ours = learning_rate(base, "cosine", step, total, warmup_steps=warmup, min_ratio=alpha)
        assert ours == pytest.approx(float(optax_lr(step)), rel=1e-5), step
    constant = optax.constant_schedule(base)
    assert learning_rate(base, "constant", 42, None) == pytest.approx(float(constant(42)))
