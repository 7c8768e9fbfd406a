"""Ornstein-Uhlenbeck sequences and the exact Kalman baselines for them.

The Euler-Maruyama scheme

    x[t+1] = x[t] - (x[t] - mu) / tau * dt + sigma * sqrt(2 / tau) * sqrt(dt) * N(0, 1)

is exactly the AR(1) process x[t+1] = a x[t] + c + N(0, q) with a = 1 - dt/tau,
c = mu dt / tau and q = 2 sigma^2 dt / tau.  With x[0] ~ U[0, 1) (mean 1/2,
variance 1/12) and observations y[t] = x[t] + N(0, noise_var), the Kalman
filter computes the conditional mean of the state given the observations.
It is linear in y, and here it is also the best linear estimator: no model
can beat its one-step prediction in mean squared error when x[0] is Gaussian,
and no *linear* one can for the uniform x[0] used here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class OUProcess:
    """Parameters of the process and of the observation noise (a variance, not a std)."""

    mu: float = 1.0
    tau: float = 2.0
    sigma: float = 0.5
    dt: float = 0.1
    noise_var: float = 0.1

    def __post_init__(self):
        for name in ("tau", "sigma", "dt", "noise_var"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
        if not math.isfinite(self.mu):
            raise UserError(f"--mu must be a finite number, got {self.mu!r}")
        if self.dt >= self.tau:
            raise UserError(
                f"--dt {self.dt} must be smaller than --tau {self.tau}: with dt >= tau the Euler scheme is unstable"
            )

    @property
    def a(self) -> float:
        return 1.0 - self.dt / self.tau

    @property
    def c(self) -> float:
        return self.mu * self.dt / self.tau

    @property
    def process_var(self) -> float:
        return 2.0 * self.sigma**2 * self.dt / self.tau


PRIOR_MEAN, PRIOR_VAR = 0.5, 1.0 / 12.0  # x[0] ~ U[0, 1)


def generate_ou_process(
    batch: int,
    steps: int = 10,
    mu: float = 1.0,
    tau: float = 2.0,
    sigma: float = 0.5,
    dt: float = 0.1,
    noise_var: float = 0.1,
    seed: int | np.random.Generator = 0,
):
    """(clean, noisy), each ``[batch, steps]`` float64: OU paths by Euler-Maruyama and
    the same paths plus N(0, noise_var) observation noise."""
    if batch < 1 or steps < 1:
        raise UserError(f"batch and steps must be positive, got {batch} and {steps}")
    OUProcess(mu, tau, sigma, dt, noise_var)  # refuses bad parameters, naming the flag
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    clean = np.empty((batch, steps))
    clean[:, 0] = rng.random(batch)
    kicks = rng.standard_normal((batch, steps - 1)) * (sigma * math.sqrt(2.0 / tau) * math.sqrt(dt))
    for t in range(steps - 1):
        clean[:, t + 1] = clean[:, t] - (clean[:, t] - mu) / tau * dt + kicks[:, t]
    noisy = clean + rng.standard_normal((batch, steps)) * math.sqrt(noise_var)
    return clean, noisy


def kalman(noisy: np.ndarray, proc: OUProcess) -> dict[str, np.ndarray]:
    """Kalman estimates for every sequence of ``noisy`` [B, T]:

    ``filter``     [B, T]   E[x[t] | y[0..t]]
    ``predict``    [B, T-1] E[x[t+1] | y[0..t]]  (the one-step-ahead target of the exercise)
    ``smoother``   [B, T]   E[x[t] | y[0..T-1]]  (Rauch-Tung-Striebel)
    and the matching posterior variances (the same for every sequence).
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    B, T = noisy.shape
    a, c, q, r = proc.a, proc.c, proc.process_var, proc.noise_var
    prior_m = np.empty((B, T))
    prior_P = np.empty(T)
    filt_m = np.empty((B, T))
    filt_P = np.empty(T)
    m, P = np.full(B, PRIOR_MEAN), PRIOR_VAR
    for t in range(T):
        if t > 0:
            m, P = a * m + c, a * a * P + q
        prior_m[:, t], prior_P[t] = m, P
        gain = P / (P + r)
        m = m + gain * (noisy[:, t] - m)
        P = (1.0 - gain) * P
        filt_m[:, t], filt_P[t] = m, P
    smooth_m, smooth_P = filt_m.copy(), filt_P.copy()
    for t in range(T - 2, -1, -1):
        J = filt_P[t] * a / prior_P[t + 1]
        smooth_m[:, t] = filt_m[:, t] + J * (smooth_m[:, t + 1] - prior_m[:, t + 1])
        smooth_P[t] = filt_P[t] + J * J * (smooth_P[t + 1] - prior_P[t + 1])
    return {
        "filter": filt_m,
        "filter_var": filt_P,
        "predict": prior_m[:, 1:],
        "predict_var": prior_P[1:],
        "smoother": smooth_m,
        "smoother_var": smooth_P,
    }


def kalman_mse(clean: np.ndarray, noisy: np.ndarray, proc: OUProcess) -> dict[str, float]:
    """Mean squared error against ``clean`` of the predictor, filter and smoother, and of
    the raw observations (the do-nothing baseline)."""
    est = kalman(noisy, proc)
    return {
        "predict_mse": float(np.mean((est["predict"] - clean[:, 1:]) ** 2)),
        "filter_mse": float(np.mean((est["filter"] - clean) ** 2)),
        "smoother_mse": float(np.mean((est["smoother"] - clean) ** 2)),
        "noisy_mse": float(np.mean((noisy - clean) ** 2)),
    }
