"""Every task on a GPU, checked and measured: one script, one JSON object.

    python benchmarks/gpu.py                    # on a machine with CUDA (about 3 minutes on one H100)
    python benchmarks/gpu.py --device cpu --quick   # the dry run: every code path, tiny sizes, on the CPU

It runs from the source tree (``PYTHONPATH=src``) with whatever torch is installed, and checks:

* ``tasks``: charlm, denoise and forecast each train briefly on the torch backend on the device;
* ``agreement``: forward and gradients on a fixed batch, on the device, against NumPy's float64
  on the CPU, for every classic cell and one parallel-scan cell: float64 must agree to 1e-9;
  float32 (TF32 off) to 1e-4 relative, what float32's 24-bit mantissa leaves after a few
  hundred accumulated products;
* ``round_trip``: a float64 checkpoint written on the device resumes on the CPU (and the
  reverse); tensors are identical through the file, and the continued run agrees with a
  CPU-only run to 1e-9;
* ``throughput``: charlm training chars/s of rnnlab's torch trainer against a plain
  ``nn.Embedding``-free cuDNN ``nn.RNN``/``nn.GRU``/``nn.LSTM`` + ``nn.Linear`` loop at H = 512
  and 1024, B = 64 and 256, T = 100 (target >= 0.95x); the plain loop again under bf16
  autocast; and rnnlab's mingru;
* ``jax``: the same agreement check where JAX sees a GPU (it is told not to preallocate);
* ``process_group``: a one-process process group (nccl on CUDA, gloo on the CPU) and one
  all-reduce; a two-process nccl job needs two GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX must not take the whole GPU
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

CLASSIC = ("rnn", "gru", "gru_reset_after", "lstm")


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def problem(cell, dtype, V=20, H=32, B=4, T=12, seed=0):
    from rnnlab.backends import numpy_backend as nb
    from rnnlab.cells import ModelSpec, init_params

    rng = np.random.default_rng(seed)
    spec = ModelSpec(cell, V, H, V, num_layers=2)
    params = init_params(spec, rng, dtype=np.dtype(dtype))
    carry = nb.init_carry(spec, B, np.dtype(dtype))
    ids, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    return spec, params, carry, ids, targets


def agreement(device: str, backend: str = "torch") -> dict:
    """Loss and gradients on ``device`` against NumPy float64, float64 and float32."""
    import importlib

    from rnnlab.backends import numpy_backend as nb

    other = importlib.import_module(f"rnnlab.backends.{backend}_backend")
    kwargs = {"device": device} if backend == "torch" else {}
    out = {}
    for cell in (*CLASSIC, "mingru"):
        row = {}
        spec, p64, c64, ids, targets = problem(cell, "float64")
        v_ref, g_ref, _ = nb.loss_and_grads(p64, spec, c64, ids, targets)
        for dtype, tol in (("float64", 1e-9), ("float32", 1e-4)):
            params = {k: v.astype(dtype) for k, v in p64.items()}
            carry = (
                [c.astype(dtype) for c in c64] if cell != "lstm" else [tuple(a.astype(dtype) for a in c) for c in c64]
            )
            v, g, _ = other.loss_and_grads(params, spec, carry, ids, targets, **kwargs)
            worst = max(rel(g[k], g_ref[k]) for k in g_ref)
            row[dtype] = {
                "loss_rel": abs(v - v_ref) / abs(v_ref),
                "grad_rel_max": worst,
                "ok": bool(worst < tol and abs(v - v_ref) / abs(v_ref) < tol),
            }
        out[cell] = row
    return out


def train_tasks(device: str, quick: bool, root: Path) -> dict:
    from rnnlab.config import CharLMConfig, DenoiseConfig, ForecastConfig
    from rnnlab.runner import train_run

    scale = 1 if quick else 10
    configs = {
        "charlm": CharLMConfig(
            max_steps=20 * scale,
            eval_every=10 * scale,
            hidden_size=64,
            sample_length=50,
            eval_max_chars=2000,
            backend="torch",
            device=device,
        ),
        "denoise": DenoiseConfig(
            steps=20 * scale,
            eval_every=10 * scale,
            val_sequences=500,
            test_sequences=2000,
            backend="torch",
            device=device,
        ),
        "forecast": ForecastConfig(epochs=2 * scale, builtin_points=600, backend="torch", device=device),
    }
    out = {}
    for name, cfg in configs.items():
        started = time.perf_counter()
        summary = train_run(cfg, root / name, quiet=True)
        out[name] = {
            "steps": summary["step"],
            "best_val_loss": summary["best_val_loss"],
            "seconds": round(time.perf_counter() - started, 2),
        }
    return out


def round_trip(device: str, root: Path) -> dict:
    """float64 charlm: 3 steps on A, 3 more on B, against 6 on the CPU; tensors through the file."""
    from rnnlab import checkpoint
    from rnnlab.config import CharLMConfig
    from rnnlab.runner import train_run

    base = CharLMConfig(
        max_steps=3,
        eval_every=3,
        hidden_size=16,
        seq_len=16,
        batch_size=4,
        dtype="float64",
        sample_length=0,
        eval_max_chars=500,
        backend="torch",
        device="cpu",
    )
    train_run(base.__class__(**{**base.__dict__, "max_steps": 6}), root / "cpu_only", quiet=True)
    out = {}
    for i, (first, second) in enumerate(((device, "cpu"), ("cpu", device))):
        where = root / f"trip{i}_{first}_then_{second}".replace(":", "")
        summary = train_run(base.__class__(**{**base.__dict__, "device": first}), where, quiet=True)
        saved, _ = checkpoint.load(where)
        on_device = summary["trainer"].params  # copied back from the device
        identical = all(np.array_equal(saved[f"params/{k}"], v) for k, v in on_device.items())
        train_run(
            base.__class__(**{**base.__dict__, "device": second}),
            where,
            resume=True,
            overrides={"max_steps": 6, "device": second},
            quiet=True,
        )
        ref, _ = checkpoint.load(root / "cpu_only")
        after, _ = checkpoint.load(where)
        params = [k for k in ref if k.startswith("params/")]
        worst = max(rel(after[k], ref[k]) for k in params)
        out[f"{i}: {first} -> {second}"] = {
            "saved_tensors": len(saved),
            "tensors_identical_through_file": identical,
            "continued_vs_cpu_only_rel_max": worst,
            "ok": bool(identical and worst < 1e-9),
        }
    return out


def throughput(device: str, quick: bool) -> list[dict]:
    import torch

    from rnnlab.backends import torch_backend as tb
    from rnnlab.cells import ModelSpec, init_params
    from rnnlab.optim import Optimizer

    V, T = 65, (10 if quick else 100)
    shapes = [(16, 4)] if quick else [(512, 64), (512, 256), (1024, 64), (1024, 256)]
    steps = 3 if quick else 20
    modules = {"rnn": torch.nn.RNN, "gru_reset_after": torch.nn.GRU, "lstm": torch.nn.LSTM}
    rows = []
    rng = np.random.default_rng(0)
    for H, B in shapes:
        ids = rng.integers(0, V, (B, T + 1))
        for cell in (*modules, "mingru"):
            spec = ModelSpec(cell, V, H, V)
            trainer = tb.Trainer(
                spec,
                init_params(spec, rng, dtype=np.float32),
                Optimizer("adam"),
                "cross_entropy",
                "mean",
                "norm",
                5.0,
                0.0,
                device=device,
            )
            carry = trainer.init_carry(B)
            trainer.train_step(carry, ids[:, :-1], ids[:, 1:], 1e-3)  # warm-up
            _sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                _, _, carry = trainer.train_step(carry, ids[:, :-1], ids[:, 1:], 1e-3)
            _sync(device)
            ours = B * T * steps / (time.perf_counter() - started)
            row = {"cell": cell, "H": H, "B": B, "T": T, "rnnlab_chars_per_s": round(ours)}
            if cell in modules:
                plain, plain_bf16 = (_plain(modules[cell], V, H, B, T, steps, device, bf16) for bf16 in (False, True))
                row.update(
                    plain_chars_per_s=round(plain),
                    ratio=round(ours / plain, 3),
                    plain_bf16_chars_per_s=None if plain_bf16 is None else round(plain_bf16),
                )
            rows.append(row)
    return rows


def _plain(module_cls, V, H, B, T, steps, device, bf16: bool):
    """A plain one-hot -> module -> Linear loop with Adam, as a user would write it."""
    import torch

    if bf16 and not (device.startswith("cuda") and torch.cuda.is_bf16_supported()):
        return None
    dev = torch.device(device)
    rnn, head = module_cls(V, H, batch_first=True).to(dev), torch.nn.Linear(H, V).to(dev)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3)
    eye = torch.eye(V, device=dev)
    ids = torch.randint(0, V, (B, T + 1), device=dev)

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16):
            y, _ = rnn(eye[ids[:, :-1]])
            loss = torch.nn.functional.cross_entropy(head(y).reshape(-1, V).float(), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*rnn.parameters(), *head.parameters()], 5.0)
        opt.step()

    step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return B * T * steps / (time.perf_counter() - started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def jax_check() -> dict:
    try:
        import jax
    except ImportError:
        return {"available": False, "reason": "jax is not installed"}
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        return {"available": False, "reason": f"JAX sees no GPU ({jax.devices()[0].platform} only)"}
    return {"available": True, "devices": [str(d) for d in gpus], "agreement": agreement("unused", "jax")}


def process_group(device: str) -> dict:
    import socket

    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return {"ok": False, "reason": "this torch has no torch.distributed"}
    backend = "nccl" if device.startswith("cuda") else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        t = torch.ones(3, device=device if device.startswith("cuda") else "cpu")
        dist.all_reduce(t)
        return {
            "backend": backend,
            "world_size": 1,
            "ok": bool(t.sum().item() == 3),
            "note": "a two-process nccl job needs two GPUs",
        }
    finally:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for the dry run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the dry run)")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --quick for the dry run")
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 in the agreement check
    torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    result = {
        "device": args.device,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
    }
    with tempfile.TemporaryDirectory(prefix="rnnlab-gpu-") as tmp:
        root = Path(tmp)
        result["tasks"] = train_tasks(args.device, args.quick, root)
        result["agreement"] = agreement(args.device)
        result["round_trip"] = round_trip(args.device, root)
    result["throughput"] = throughput(args.device, args.quick)
    result["jax"] = jax_check()
    result["process_group"] = process_group(args.device)
    ratios = [r["ratio"] for r in result["throughput"] if "ratio" in r]
    result["checks_ok"] = (
        all(v["ok"] for cell in result["agreement"].values() for v in cell.values())
        and all(v["ok"] for v in result["round_trip"].values())
        and result["process_group"]["ok"]
    )
    result["throughput_target_met"] = bool(ratios) and min(ratios) >= 0.95
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
