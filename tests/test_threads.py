"""Thread-pool sizing from affinity, cgroup quotas and the user's environment."""

import os
import subprocess
import sys

import pytest

from rnnlab import threads


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota_and_none(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cgroup_cpu_limit(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert threads.cgroup_cpu_limit(tmp_path) is None


def test_available_cpus_respects_affinity_and_quota(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("CPU affinity is Linux-only")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.available_cpus() == 3
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.available_cpus() == 8
    for name in threads.THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0)
    assert threads.torch_threads(processes_per_machine=3) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.torch_threads(processes_per_machine=3) == 5


def test_torch_backend_sizes_its_pool_when_a_trainer_is_built_not_on_import():
    env = {k: v for k, v in os.environ.items() if k not in threads.THREADS_ENV}
    code = (
        "import numpy as np, torch; torch.set_num_threads(7); "
        "from rnnlab.backends import torch_backend; on_import = torch.get_num_threads(); "
        "from rnnlab.cells import ModelSpec, init_params; from rnnlab.optim import Optimizer; "
        "from rnnlab.threads import available_cpus; spec = ModelSpec('rnn', 3, 4, 1, 1, 'dense'); "
        "torch_backend.Trainer(spec, init_params(spec, np.random.default_rng(0)), Optimizer('adam'), 'mse', "
        "'mean', 'none', 1.0, device='cpu'); print(on_import, torch.get_num_threads(), available_cpus())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    on_import, used, available = map(int, out.stdout.split())
    assert on_import == 7  # importing the backend changed nothing
    assert used == 1  # a model this small gets one thread
    env["RNNLAB_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[1]) == 3


def test_torch_threads_one_for_small_models_and_no_more_than_the_idle_cpus(monkeypatch):
    for name in threads.THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 0)
    big = threads.SMALL_MODEL_PARAMS
    assert threads.torch_threads(1, big) == 4 and threads.torch_threads(2, big) == 2
    assert threads.torch_threads(1, big - 1) == 1  # a small model
    monkeypatch.setattr(threads, "busy_cpus", lambda: 3)  # other work keeps three CPUs busy
    assert threads.torch_threads(1, big) == 1
    monkeypatch.setattr(threads, "busy_cpus", lambda: 9)
    assert threads.torch_threads(1, big) == 1  # never fewer than one
    monkeypatch.setenv("RNNLAB_THREADS", "3")
    assert threads.torch_threads(1, big - 1) == 3  # the user's request wins


def test_importing_the_jax_backend_leaves_64_bit_mode_off_until_a_float64_model():
    code = (
        "import jax, numpy as np; from rnnlab.backends import jax_backend; off = jax.config.jax_enable_x64; "
        "from rnnlab.cells import ModelSpec, init_params; spec = ModelSpec('rnn', 3, 4, 1, 1, 'dense'); "
        "p32 = init_params(spec, np.random.default_rng(0)); "
        "jax_backend.forward(p32, spec, jax_backend.init_carry(spec, 2), np.zeros((2, 5, 3), np.float32)); "
        "still_off = jax.config.jax_enable_x64; "
        "p64 = init_params(spec, np.random.default_rng(0), dtype=np.float64); "
        "y, _ = jax_backend.forward(p64, spec, jax_backend.init_carry(spec, 2, np.float64), np.ones((2, 5, 3))); "
        "print(off, still_off, jax.config.jax_enable_x64, y.dtype)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True", "float64"]


def test_freed_blocks_are_kept_for_reuse_unless_the_user_tuned_malloc(monkeypatch):
    import sys

    from rnnlab.memory import keep_freed_blocks

    if sys.platform.startswith("linux"):
        assert keep_freed_blocks() is True
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert keep_freed_blocks() is False
