"""JAX specifics: backends load only when chosen, and the loop's schedule means what optax's does.
(Equality with the NumPy backend is in test_backends_equal.py.)"""

import pytest


def test_numpy_runs_never_import_jax_or_torch(tmp_path):
    """denoise and forecast on the NumPy backend, start to finish, with every task module loaded."""
    import subprocess
    import sys

    run = [
        "denoise",
        "train",
        "--backend",
        "numpy",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--val-sequences",
        "10",
        "--test-sequences",
        "10",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    run_forecast = [
        "forecast",
        "train",
        "--backend",
        "numpy",
        "--builtin-points",
        "100",
        "--window",
        "4",
        "--hidden-size",
        "3",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "fc"),
    ]
    code = (
        "import sys, rnnlab.cli, rnnlab.tasks.charlm, rnnlab.tasks.denoise, rnnlab.tasks.forecast, "
        "rnnlab.classic, rnnlab.runs, rnnlab.data.prices, rnnlab.data.series; "
        f"assert rnnlab.cli.main({run!r}) == 0; assert rnnlab.cli.main({run_forecast!r}) == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'torch', 'optax')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("warmup", [0, 7])
def test_loop_schedule_means_the_same_as_optax(warmup):
    """The loop computes the learning rate on the host for every backend; with warm-up it is
    linear from base/warmup to base, then exactly optax's cosine decay to alpha * base."""
    import optax

    from rnnlab.optim import learning_rate

    base, total, alpha = 3e-3, 100, 0.1
    optax_lr = optax.join_schedules(
        [
            optax.linear_schedule(base / max(warmup, 1), base, max(warmup - 1, 1)),
            optax.cosine_decay_schedule(base, total - warmup, alpha=alpha),
        ],
        [warmup],
    )
    for step in range(total + 5):
        ours = learning_rate(base, "cosine", step, total, warmup_steps=warmup, min_ratio=alpha)
        assert ours == pytest.approx(float(optax_lr(step)), rel=1e-5), step
    constant = optax.constant_schedule(base)
    assert learning_rate(base, "constant", 42, None) == pytest.approx(float(constant(42)))
