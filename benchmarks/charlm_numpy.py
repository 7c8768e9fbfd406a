"""NumPy char-LM benchmark: throughput against numpy's own GEMM, speed-up over the classic
min-char-rnn recipe at equal validation loss, and validation loss after 60 s and 300 s.

Prints one JSON object. Reads ../shared/data/tinyshakespeare.txt when present (the
built-in corpus otherwise). Every ratio is taken inside this one run, so machine noise
affects both sides alike. Time is training time (evaluation excluded) throughout.

    python benchmarks/charlm_numpy.py [--short-seconds 60] [--long-seconds 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import ModelSpec, init_params
from rnnlab.config import PRESETS, CharLMConfig
from rnnlab.data.text import Vocab, read_text
from rnnlab.optim import Optimizer
from rnnlab.runner import train_run

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
TARGET_VAL = 2.10
# Chosen by trying configurations on this corpus (see docs/results.md and docs/frontier.md):
# the fastest to reach 2.10 nats/char, and the best after a fixed time budget.
FAST_TO_2_10 = dict(cell="rnn", hidden_size=128, batch_size=32, seq_len=32, lr=1e-2)
BEST_FIXED_TIME = dict(cell="gru_reset_after", hidden_size=384, batch_size=32, seq_len=64, lr=3e-3)


def gemm_gflops(repeats: int = 300) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 512), dtype=np.float32)
    b = rng.standard_normal((512, 512), dtype=np.float32)
    out = np.empty((64, 512), np.float32)
    best = 0.0
    for _ in range(3):
        for _ in range(20):
            np.matmul(a, b, out=out)
        t0 = time.perf_counter()
        for _ in range(repeats):
            np.matmul(a, b, out=out)
        best = max(best, 2 * 64 * 512 * 512 * repeats / (time.perf_counter() - t0) / 1e9)
    return best


def training_chars_per_s(ids: np.ndarray, vocab_size: int, cfg: dict, steps: int, dtype=np.float32) -> float:
    """Steady-state training throughput of the NumPy Trainer on real batches (best of 3)."""
    H, B, T = cfg["hidden_size"], cfg["batch_size"], cfg["seq_len"]
    spec = ModelSpec(cfg["cell"], vocab_size, H, vocab_size)
    params = init_params(spec, np.random.default_rng(0), cfg.get("init", "default"), dtype)
    trainer = nb.Trainer(
        spec,
        params,
        Optimizer(cfg.get("optimizer", "adam")),
        "cross_entropy",
        cfg.get("loss_reduction", "mean"),
        cfg.get("clip", "norm"),
        cfg.get("clip_value", 5.0),
    )
    stream_len = len(ids) // B
    streams = ids[: B * stream_len].reshape(B, stream_len)
    carry = trainer.init_carry(B)
    best, pos = 0.0, 0
    for rep in range(4):  # the first round warms caches and allocators
        t0 = time.perf_counter()
        for _ in range(steps):
            if pos + T + 1 > stream_len:
                pos, carry = 0, trainer.init_carry(B)
            chunk = streams[:, pos : pos + T + 1]
            _, _, carry = trainer.train_step(carry, chunk[:, :-1], chunk[:, 1:], cfg.get("lr", 1e-3))
            pos += T
        if rep:
            best = max(best, steps * B * T / (time.perf_counter() - t0))
    return best


def train_seconds_to(cfg: CharLMConfig, out: Path, cap_minutes: float) -> dict:
    summary = train_run(
        dataclasses.replace(cfg, max_steps=0, max_minutes=cap_minutes, target_val_loss=TARGET_VAL),
        out,
        force=True,
        quiet=True,
    )
    reached = summary["stop_reason"].startswith("validation loss")
    return {
        "reached": reached,
        "train_seconds": summary["train_seconds"],
        "steps": summary["step"],
        "val_nats_per_char": summary["best_val_loss"],
    }


def fixed_time_run(
    text_path: str, ids: np.ndarray, V: int, model: dict, short_seconds: float, long_seconds: float, out: Path
) -> dict:
    """Validation loss after ``short_seconds`` and ``long_seconds`` of training, in one run.

    The cosine schedule needs a step horizon; it is the number of steps this
    machine does in ``long_seconds`` (throughput measured just before), and the
    long leg is also capped by time, so it never trains longer than asked.
    """
    steps_per_s = training_chars_per_s(ids, V, model, steps=10) / (model["batch_size"] * model["seq_len"])
    horizon = max(1, int(0.97 * long_seconds * steps_per_s))
    cfg = dataclasses.replace(
        CharLMConfig(text=text_path), **model, schedule="cosine", max_steps=horizon, eval_every=10 * horizon
    )
    s1 = train_run(dataclasses.replace(cfg, max_minutes=short_seconds / 60), out, force=True, quiet=True)
    s2 = train_run(
        cfg, out, resume=True, overrides={"max_minutes": (long_seconds - s1["train_seconds"]) / 60}, quiet=True
    )
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "best_config_fixed_time": dict(model, schedule="cosine", max_steps=horizon),
        f"val_nats_per_char_{short_seconds:g}s": round(evals[0]["val_nats_per_char"], 4),
        f"val_nats_per_char_{long_seconds:g}s": round(evals[-1]["val_nats_per_char"], 4),
        "train_seconds_measured": [round(s1["train_seconds"], 1), round(s2["train_seconds"], 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-seconds", type=float, default=60.0)
    parser.add_argument("--long-seconds", type=float, default=300.0)
    parser.add_argument("--classic-cap-seconds", type=float, default=600.0)
    args = parser.parse_args()

    text_path = str(SHAKESPEARE) if SHAKESPEARE.exists() else ""
    text = read_text(text_path or None)
    vocab = Vocab.from_text(text[: int(len(text) * 0.9)])
    ids = vocab.encode_known(text)[0]
    V = len(vocab)
    result = {
        "corpus": "tinyshakespeare" if text_path else "built-in pydoc topics",
        "vocab_size": V,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
    }

    # 1. Throughput against the GEMM roofline.
    result["gemm_gflops"] = round(gemm_gflops(), 1)
    H, B, T = 512, 64, 100
    cps = training_chars_per_s(ids, V, dict(cell="rnn", hidden_size=H, batch_size=B, seq_len=T), steps=5)
    gflops = 6 * (H * H + H * V) * cps / 1e9
    result.update(
        chars_per_s=round(cps), gflops=round(gflops, 1), gemm_fraction=round(gflops / result["gemm_gflops"], 3)
    )
    classic = dict(PRESETS["min-char-rnn"].settings)
    result["classic_chars_per_s"] = round(training_chars_per_s(ids, V, classic, steps=400, dtype=np.float64))

    # 2. Time to the same validation loss: the classic recipe vs the fastest configuration.
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        classic_cfg = dataclasses.replace(CharLMConfig(text=text_path), **classic, eval_every=1000)
        classic_run = train_seconds_to(classic_cfg, tmp / "classic", args.classic_cap_seconds / 60)
        fast_cfg = dataclasses.replace(CharLMConfig(text=text_path), **FAST_TO_2_10, eval_every=10)
        fast_run = train_seconds_to(fast_cfg, tmp / "fast", 2.0)
        result["classic_seconds_to_2_10"] = round(classic_run["train_seconds"], 2)
        result["classic_reached_2_10"] = classic_run["reached"]
        result["best_seconds_to_2_10"] = round(fast_run["train_seconds"], 2)
        result["best_config_to_2_10"] = FAST_TO_2_10
        # If the classic run hit its cap, the ratio is a lower bound; the flag above says so.
        result["speedup_vs_classic"] = (
            round(classic_run["train_seconds"] / fast_run["train_seconds"], 1) if fast_run["reached"] else None
        )

        # 3. Validation loss after a fixed training time: one run, stopped and resumed exactly.
        result.update(
            fixed_time_run(text_path, ids, V, BEST_FIXED_TIME, args.short_seconds, args.long_seconds, tmp / "best")
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
