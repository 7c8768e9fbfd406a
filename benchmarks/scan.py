"""The linear recurrence of the parallel-scan cells, h_t = a_t * h_{t-1} + b_t, forward and
backward, in each way each backend could compute it, so the backends use the fastest one here.

JAX: ``lax.associative_scan`` (log depth, more arithmetic) against ``lax.scan`` (T sequential
steps).  PyTorch: rnnlab's autograd function with a written-out reverse loop, a plain Python loop
under autograd, and the cumulative-product closed form h_t = P_t (h_0 + sum_s b_s / P_s) with
P_t = a_1 ... a_t (one cumprod and one cumsum; it divides by products that underflow on long
sequences, so it is only a speed reference).  NumPy: the loop rnnlab uses.  float32, the shape of
a char-LM batch (B=32, T=64, H=512 by default), best of 5 rounds.

Prints one JSON object: milliseconds per forward + backward for each.

    python benchmarks/scan.py [--batch 32] [--steps 64] [--hidden 512]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def best_ms(fn, rounds: int = 5, repeat: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return round(best * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()
    B, T, H = args.batch, args.steps, args.hidden
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (T, B, H)).astype(np.float32)
    b = rng.standard_normal((T, B, H)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    g = rng.standard_normal((T, B, H)).astype(np.float32)
    result = {"shape": {"batch": B, "steps": T, "hidden": H}}

    from rnnlab.backends import numpy_backend as nb

    def numpy_loop():
        Hs = nb.linear_scan(a, b, h0)
        dh = nb.linear_scan_backward(a, g)
        return dh * Hs[:-1]

    result["numpy_loop_ms"] = best_ms(numpy_loop)

    import jax
    import jax.numpy as jnp

    def combine(first, second):  # h -> a h + b twice, composed: associative, so it scans in parallel
        return first[0] * second[0], second[0] * first[1] + second[1]

    def associative(a, b, h0):
        a_cum, b_cum = jax.lax.associative_scan(combine, (a, b), axis=0)
        return a_cum * h0 + b_cum

    def sequential(a, b, h0):
        def body(h, ab):
            h = ab[0] * h + ab[1]
            return h, h

        return jax.lax.scan(body, h0, (a, b))[1]

    ja, jb, jh, jg = (jnp.asarray(v) for v in (a, b, h0, g))
    for name, fn in (("associative_scan", associative), ("scan", sequential)):
        grad = jax.jit(jax.grad(lambda a, b, h0, fn=fn: jnp.sum(fn(a, b, h0) * jg), argnums=(0, 1, 2)))
        result[f"jax_{name}_ms"] = best_ms(lambda grad=grad: jax.block_until_ready(grad(ja, jb, jh)))

    import torch

    from rnnlab.backends.torch_backend import _LinearScan

    ta, tb, th = (torch.tensor(v.swapaxes(0, 1) if v.ndim == 3 else v, requires_grad=True) for v in (a, b, h0))
    tg = torch.tensor(g.swapaxes(0, 1))

    def autograd_loop(a, b, h0):
        h, outs = h0, []
        for t in range(a.shape[1]):
            h = a[:, t] * h + b[:, t]
            outs.append(h)
        return torch.stack(outs, dim=1)

    def cumulative(a, b, h0):
        P = torch.cumprod(a, dim=1)
        return P * (h0[:, None] + torch.cumsum(b / P, dim=1))

    for name, fn in (("function", _LinearScan.apply), ("autograd_loop", autograd_loop), ("cumprod", cumulative)):

        def step(fn=fn):
            for t in (ta, tb, th):
                t.grad = None
            (fn(ta, tb, th) * tg).sum().backward()

        result[f"torch_{name}_ms"] = best_ms(step)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
