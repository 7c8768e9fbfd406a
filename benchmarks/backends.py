"""Backends side by side: char-LM training throughput of numpy, jax and torch, and of the
plain PyTorch model a user would write, on the same batches.

For each cell (rnn, gru = gru_reset_after = nn.GRU, lstm) and hidden size H in {128, 512},
at B=64, T=100, float32, one layer, Adam, gradient norm clipped at 5: characters per
second of training, interleaved across implementations and best of 3, so machine noise
hits every column alike.  The reference is nn.RNN/nn.GRU/nn.LSTM + nn.Linear + Adam
over one-hot inputs, written directly (the same model and FLOPs).  Also numpy's own
GEMM throughput for the step's recurrent matmul, (B, H) @ (H, G*H), and the fraction
of it the NumPy backend reaches (model FLOPs: 6 (G H^2 + H V) per character).

Prints a markdown table on stderr and one JSON object on stdout.

    python benchmarks/backends.py [--seconds 2] [--hidden 128,512] [--cells rnn,gru,lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rnnlab import runs
from rnnlab.cells import GATES, ModelSpec, init_params
from rnnlab.config import CharLMConfig
from rnnlab.data.text import Vocab, read_text
from rnnlab.memory import keep_freed_blocks
from rnnlab.optim import Optimizer
from rnnlab.threads import available_cpus

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
CELL_NAMES = {"rnn": "rnn", "gru": "gru_reset_after", "lstm": "lstm"}
B, T = 64, 100
LR, CLIP = 2e-3, 5.0


def gemm_gflops(m: int, k: int, n: int, seconds: float = 1.5) -> float:
    """Best of 3 rounds of numpy's (m, k) @ (k, n) in float32, after a warm-up round."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    for _ in range(50):
        np.matmul(a, b, out=out)
    best = 0.0
    for _ in range(3):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            np.matmul(a, b, out=out)
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - t0) / 1e9)
    return best


class RnnlabRunner:
    """One of rnnlab's Trainers on a stream of real batches.  ``numpy-ref`` is the NumPy backend
    without its numba kernels (``RNNLAB_NUMBA=0`` while it runs): the pure-NumPy reference path."""

    def __init__(self, backend: str, cell: str, H: int, V: int, streams: np.ndarray):
        self.numba = "0" if backend == "numpy-ref" else "1"
        backend = "numpy" if backend == "numpy-ref" else backend
        spec = ModelSpec(cell, V, H, V)
        cfg = CharLMConfig(backend=backend, cell=cell, hidden_size=H, clip_value=CLIP)
        params = init_params(spec, np.random.default_rng(0), "default", np.float32)
        self.trainer = runs.make_trainer(cfg, spec, params, Optimizer("adam"), "cross_entropy")
        self.streams, self.pos, self.carry = streams, 0, self.trainer.init_carry(B)

    def steps(self, n: int) -> None:
        os.environ["RNNLAB_NUMBA"] = self.numba
        for _ in range(n):
            if self.pos + T + 1 > self.streams.shape[1]:
                self.pos, self.carry = 0, self.trainer.init_carry(B)
            chunk = self.streams[:, self.pos : self.pos + T + 1]
            _, _, self.carry = self.trainer.train_step(self.carry, chunk[:, :-1], chunk[:, 1:], LR)
            self.pos += T


class PlainTorchRunner:
    """What a PyTorch user writes: nn.RNN/GRU/LSTM + nn.Linear, one-hot inputs, Adam, clip."""

    def __init__(self, cell: str, H: int, V: int, streams: np.ndarray):
        import torch
        import torch.nn.functional as F

        torch.manual_seed(0)
        module = {"rnn": torch.nn.RNN, "gru_reset_after": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
        self.torch, self.F, self.V = torch, F, V
        self.rnn = module(V, H, batch_first=True)
        self.fc = torch.nn.Linear(H, V)
        self.params = list(self.rnn.parameters()) + list(self.fc.parameters())
        self.opt = torch.optim.Adam(self.params, lr=LR)
        self.streams = torch.as_tensor(streams, dtype=torch.int64)
        self.pos, self.state = 0, None

    def steps(self, n: int) -> None:
        torch, F = self.torch, self.F
        for _ in range(n):
            if self.pos + T + 1 > self.streams.shape[1]:
                self.pos, self.state = 0, None
            chunk = self.streams[:, self.pos : self.pos + T + 1]
            x = F.one_hot(chunk[:, :-1], self.V).float()
            out, state = self.rnn(x, self.state)
            loss = F.cross_entropy(self.fc(out).reshape(-1, self.V), chunk[:, 1:].reshape(-1))
            self.opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, CLIP)
            self.opt.step()
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            self.pos += T


def measure(runners: dict, steps: int, repeats: int = 3) -> dict:
    """chars/s per runner: one warm-up round, then ``repeats`` interleaved rounds, best kept."""
    for runner in runners.values():
        runner.steps(2)
    best = {name: 0.0 for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            t0 = time.perf_counter()
            runner.steps(steps)
            best[name] = max(best[name], steps * B * T / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="rough time of one measurement")
    parser.add_argument("--hidden", default="128,512")
    parser.add_argument("--cells", default="rnn,gru,lstm")
    parser.add_argument(
        "--backends",
        default="numpy,numpy-ref,jax,torch",
        help="numpy-ref: the NumPy backend without its numba kernels (where numba is installed)",
    )
    args = parser.parse_args()
    import torch

    keep_freed_blocks()  # as rnnlab's training loop does, so the trainers run as they do in a run
    text = read_text(str(SHAKESPEARE)) if SHAKESPEARE.exists() else read_text(None)
    vocab = Vocab.from_text(text)
    V = len(vocab)
    ids = vocab.encode(text)
    streams = ids[: (len(ids) // B) * B].reshape(B, -1)
    backends = [b for b in args.backends.split(",") if b]
    rows = []
    for short in args.cells.split(","):
        cell = CELL_NAMES[short]
        G = GATES[cell]
        for H in (int(h) for h in args.hidden.split(",")):
            runners = {b: RnnlabRunner(b, cell, H, V, streams) for b in backends}
            runners["plain_torch"] = PlainTorchRunner(cell, H, V, streams)
            # Every torch row gets all the CPUs, as NumPy's batch split does: the rnnlab torch trainer
            # sizes its pool from the load average when it is built, which after another benchmark
            # would leave both torch rows one thread.
            torch.set_num_threads(available_cpus())
            flops_per_char = 6 * (G * H * H + H * V)
            # Size the rounds from a quick probe of the slowest runner, so each lasts about --seconds.
            probe = measure({"p": runners["plain_torch"]}, 2, repeats=1)["p"]
            steps = max(3, int(args.seconds * probe / (B * T)))
            cps = measure(runners, steps)
            gemm = gemm_gflops(B, H, G * H)
            row = {
                "cell": short,
                "hidden_size": H,
                "steps_per_round": steps,
                "chars_per_s": {k: round(v) for k, v in cps.items()},
                "ratio_to_plain_torch": {
                    k: round(v / cps["plain_torch"], 3) for k, v in cps.items() if k != "plain_torch"
                },
                "gemm_gflops": round(gemm, 1),
            }
            if "numpy" in cps:
                row["numpy_gflops"] = round(cps["numpy"] * flops_per_char / 1e9, 1)
                row["numpy_roofline_fraction"] = round(row["numpy_gflops"] / gemm, 3)
            rows.append(row)
            print(f"{short} H={H}: " + ", ".join(f"{k} {v:,.0f}" for k, v in cps.items()), file=sys.stderr)
    table = [
        "| cell | H | "
        + " | ".join(f"{b} chars/s" for b in backends)
        + " | plain PyTorch chars/s | "
        + " | ".join(f"{b} / plain" for b in backends)
        + " | numpy / GEMM roofline |",
        "|---" * (3 + 2 * len(backends) + 1) + "|",
    ]
    for r in rows:
        c = r["chars_per_s"]
        table.append(
            f"| {r['cell']} | {r['hidden_size']} | "
            + " | ".join(f"{c[b]:,}" for b in backends)
            + f" | {c['plain_torch']:,} | "
            + " | ".join(f"{r['ratio_to_plain_torch'][b]:.2f}" for b in backends)
            + f" | {r.get('numpy_roofline_fraction', '-')} |"
        )
    print("\n".join(table), file=sys.stderr)
    import jax

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
        f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "batch_size": B,
        "seq_len": T,
        "dtype": "float32",
        "vocab_size": V,
        "rows": rows,
        "table": "\n".join(table),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
