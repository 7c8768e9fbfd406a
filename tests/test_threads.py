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
    assert threads.torch_threads(processes_per_machine=3) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.torch_threads(processes_per_machine=3) == 5


def test_torch_backend_sizes_its_pool_to_the_process():
    env = {k: v for k, v in os.environ.items() if k not in threads.THREADS_ENV}
    code = ("import torch; from rnnlab.backends import torch_backend; from rnnlab.threads import available_cpus; "
            "print(torch.get_num_threads(), available_cpus())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    used, available = map(int, out.stdout.split())
    assert used == available
    env["RNNLAB_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[0]) == 1
