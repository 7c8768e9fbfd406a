"""OU generator and Kalman baselines: exact AR(1) form, and optimal among linear estimators."""

import math

import numpy as np
import pytest

from rnnlab.data.ou import OUProcess, generate_ou_process, kalman, kalman_mse
from rnnlab.errors import UserError


def test_generator_moments_match_the_ar1_form():
    clean, noisy = generate_ou_process(200_000, 10, seed=1)
    proc = OUProcess()
    assert clean.shape == noisy.shape == (200_000, 10)
    assert clean[:, 0].min() >= 0 and clean[:, 0].max() < 1
    resid = clean[:, 1:] - (proc.a * clean[:, :-1] + proc.c)
    assert resid.mean() == pytest.approx(0, abs=2e-4)
    assert resid.var() == pytest.approx(proc.process_var, rel=1e-2)
    assert (noisy - clean).var() == pytest.approx(0.1, rel=1e-2)
    # The mean relaxes towards mu = 1 from 0.5 by a factor a per step.
    np.testing.assert_allclose(clean.mean(axis=0), 1 - 0.5 * proc.a ** np.arange(10), atol=3e-3)


def test_same_seed_same_data():
    a = generate_ou_process(4, 6, seed=7)
    b = generate_ou_process(4, 6, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_kalman_variances_predict_the_errors():
    proc = OUProcess()
    clean, noisy = generate_ou_process(200_000, 10, seed=2)
    est = kalman(noisy, proc)
    for key, target in (("filter", clean), ("predict", clean[:, 1:]), ("smoother", clean)):
        err = ((est[key] - target) ** 2).mean(axis=0)
        np.testing.assert_allclose(err, est[f"{key}_var"], rtol=0.03)
    m = kalman_mse(clean, noisy, proc)
    assert m["smoother_mse"] < m["filter_mse"] < m["noisy_mse"]
    assert m["filter_mse"] < m["predict_mse"]


def test_kalman_filter_equals_best_linear_estimator():
    """Least squares of x[t] on (1, y[0..t]) fitted on many sequences cannot beat the filter."""
    proc = OUProcess(tau=5.0, sigma=1.0, noise_var=0.5)
    clean, noisy = generate_ou_process(100_000, 8, mu=1.0, tau=5.0, sigma=1.0, dt=0.1, noise_var=0.5, seed=3)
    est = kalman(noisy, proc)
    for t in (0, 3, 7):
        X = np.column_stack([np.ones(len(noisy)), noisy[:, : t + 1]])
        coef, *_ = np.linalg.lstsq(X, clean[:, t], rcond=None)
        ls_mse = np.mean((X @ coef - clean[:, t]) ** 2)
        kf_mse = np.mean((est["filter"][:, t] - clean[:, t]) ** 2)
        assert kf_mse == pytest.approx(ls_mse, rel=0.01)
        np.testing.assert_allclose(est["filter"][:, t], X @ coef, atol=0.02)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau=0), "--tau"),
        (dict(dt=-0.1), "--dt"),
        (dict(sigma=0), "--sigma"),
        (dict(noise_var=0), "--noise-var"),
        (dict(dt=2.0, tau=2.0), "unstable"),
        (dict(mu=math.inf), "--mu"),
    ],
)
def test_bad_process_parameters(kwargs, match):
    with pytest.raises(UserError, match=match):
        OUProcess(**kwargs)
