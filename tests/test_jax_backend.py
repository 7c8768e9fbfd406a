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


def test_numpy_runs_never_import_jax_or_torch():
    import subprocess
    import sys

    code = ("import sys, rnnlab.cli, rnnlab.tasks.charlm, rnnlab.classic; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'torch', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
