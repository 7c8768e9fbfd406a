import math

import numpy as np
import pytest

from rnnlab.errors import UserError
from rnnlab.optim import Optimizer, clip_gradients_, learning_rate


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(5)]
    return params, grads


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_optimizers_match_torch(name):
    torch = pytest.importorskip("torch")
    params, grads = _problem()
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    lr = 0.05
    if name == "sgd":
        topt = torch.optim.SGD(tparams.values(), lr=lr)
    elif name == "adam":
        topt = torch.optim.Adam(tparams.values(), lr=lr, eps=1e-8)
    else:
        # torch's Adagrad adds eps outside the sqrt; ours (min-char-rnn) inside. With g^2 >> eps
        # they agree to ~1e-9 relative, which is all this comparison needs.
        topt = torch.optim.Adagrad(tparams.values(), lr=lr, eps=1e-8)
    opt = Optimizer(name)
    for g in grads:
        opt.update_(params, {k: v.copy() for k, v in g.items()}, lr)
        topt.zero_grad()
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        topt.step()
    assert opt.step == len(grads)
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-7, atol=1e-9)


def test_adam_first_step_is_lr_times_sign():
    params, grads = _problem()
    before = {k: v.copy() for k, v in params.items()}
    Optimizer("adam").update_(params, grads[0], 0.01)
    for k in params:
        np.testing.assert_allclose(before[k] - params[k], 0.01 * np.sign(grads[0][k]), rtol=1e-5)


def test_adam_bias_correction_uses_real_step_counter():
    params, grads = _problem()
    opt = Optimizer("adam")
    for g in grads[:3]:
        opt.update_(params, g, 0.01)
    restored = Optimizer.restore(opt.meta(), opt.state_tensors())
    p1 = {k: v.copy() for k, v in params.items()}
    p2 = {k: v.copy() for k, v in params.items()}
    opt.update_(p1, grads[3], 0.01)
    restored.update_(p2, grads[3], 0.01)
    assert restored.step == 4
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


def test_clip_by_norm_and_value():
    g = {"a": np.array([3.0, 4.0]), "b": np.array([0.0])}
    norm = clip_gradients_(g, "norm", 1.0)
    assert norm == pytest.approx(5.0)
    assert np.linalg.norm(g["a"]) == pytest.approx(1.0)
    g = {"a": np.array([-7.0, 2.0, 9.0])}
    clip_gradients_(g, "value", 5.0)
    np.testing.assert_array_equal(g["a"], [-5.0, 2.0, 5.0])
    g = {"a": np.array([0.3, 0.4])}
    clip_gradients_(g, "norm", 1.0)
    np.testing.assert_array_equal(g["a"], [0.3, 0.4])


def test_learning_rate_schedules():
    assert learning_rate(0.1, "constant", 50, 100) == 0.1
    assert learning_rate(0.1, "cosine", 0, 100) == pytest.approx(0.1)
    assert learning_rate(0.1, "cosine", 50, 100) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert learning_rate(0.1, "cosine", 100, 100) == pytest.approx(0.01)
    assert learning_rate(0.1, "constant", 0, 100, warmup_steps=10) == pytest.approx(0.01)
    assert learning_rate(0.1, "cosine", 10, 110, warmup_steps=10) == pytest.approx(0.1)
    with pytest.raises(UserError):
        learning_rate(0.1, "cosine", 5, None)
    with pytest.raises(UserError):
        learning_rate(0.1, "linear", 5, 10)
    assert not math.isnan(learning_rate(0.1, "cosine", 500, 100))


@pytest.mark.parametrize("name", ["sgd", "adagrad", "adam"])
def test_decoupled_weight_decay_scales_matrices_not_biases(name):
    rng = np.random.default_rng(7)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    plain, decayed = Optimizer(name), Optimizer(name, weight_decay=0.5)
    p_plain = {k: v.copy() for k, v in params.items()}
    p_decayed = {k: v.copy() for k, v in params.items()}
    lr = 0.1
    plain.update_(p_plain, {k: g.copy() for k, g in grads.items()}, lr)
    decayed.update_(p_decayed, {k: g.copy() for k, g in grads.items()}, lr)
    # p * (1 - lr wd) - lr d, with the same direction d as without decay
    np.testing.assert_allclose(p_decayed["W"], p_plain["W"] - lr * 0.5 * params["W"], rtol=1e-12)
    np.testing.assert_array_equal(p_decayed["b"], p_plain["b"])
    assert Optimizer.restore(decayed.meta(), decayed.state_tensors()).weight_decay == 0.5


def test_a_run_starts_its_adam_with_the_configured_beta2():
    """--adam-beta2 reaches the optimizer every backend reads (and its checkpoint meta)."""
    from rnnlab.cells import ModelSpec
    from rnnlab.config import DenoiseConfig
    from rnnlab.runs import fresh_start

    spec = ModelSpec("gru", 1, 4, 1)
    _, opt, _ = fresh_start(DenoiseConfig(adam_beta2=0.99, weight_decay=0.01), spec)
    assert (opt.beta2, opt.weight_decay) == (0.99, 0.01)
    assert Optimizer.restore(opt.meta(), opt.state_tensors()).beta2 == 0.99
