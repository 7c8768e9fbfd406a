"""The training-time frontier of char-LMs on 2 CPU cores: best validation nats/char after 60 s and
300 s of training for rnnlab's best classic-cell run, its best parallel-scan-cell run, and a plain
PyTorch script of the kind a user writes in thirty lines.

tinyshakespeare (../shared/data; the built-in corpus when it is absent), the first 90% trains and
the last 10% validates, every contender scored by the same function (``charlm.nats_per_char``: the
whole validation split, state carried along 64 streams).  Training time excludes evaluation for all
alike.  The contenders run one after another in this one process, so they share the machine's
state.  For each: chars/s of training and the fraction of numpy's GEMM roofline the run's
matrix products reach (numpy's float32 GEMM measured here for the shape that dominates: the
recurrent step (B, H) @ (H, G*H) for a classic cell, the whole-sequence gate GEMM
(B*T, in) @ (in, G*H) for a parallel cell).

The rnnlab runs are the presets ``fast-60s`` / ``best-300s`` (and their parallel-cell twins), whose
step counts were measured on this machine for the budget; the budget is also a hard cap.

Prints one JSON object on stdout and a markdown table on stderr.

    python benchmarks/frontier.py [--budgets 60,300] [--seeds 0] [--contenders classic,parallel,plain]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from backends import gemm_gflops  # benchmarks/backends.py: numpy's own float32 GEMM rate

from rnnlab.cells import ModelSpec, count_params, layer_input_size
from rnnlab.config import PRESETS, CharLMConfig
from rnnlab.data.text import Vocab, read_text, split_train_val
from rnnlab.runner import train_run
from rnnlab.tasks.charlm import nats_per_char

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
# The rnnlab contenders: for each budget (seconds), the preset of each family.
CONTENDERS = {
    "classic": {60: "fast-60s", 300: "best-300s"},
    "parallel": {60: "fast-60s-parallel", 300: "best-300s-parallel"},
}
# The plain script of the issue: Embedding(V, 64) -> GRU(384) -> Linear, dropout 0.2 on the
# embedding output and before the Linear, Adam 3e-3 with cosine to 0.1x, B=32, T=64, clip 5;
# 3,100 steps is what this machine does in 300 s, and the step count scales with the budget.
PLAIN = dict(embed=64, hidden=384, dropout=0.2, lr=3e-3, batch=32, seq=64, clip=5.0, steps_per_300s=3100)


def model_flops_per_char(spec: ModelSpec) -> float:
    """Matrix-product FLOPs of one training character (forward + two backward products: x3),
    from the parameter shapes: every weight matrix is used once per character."""
    H, G = spec.hidden_size, spec.gates
    per = sum(layer_input_size(spec, k) * G * H for k in range(spec.num_layers))
    if spec.input_kind == "onehot":
        per -= spec.input_size * G * H  # a row gather, not a product
    if "U" in spec.cell_info.layer_params:
        per += spec.num_layers * H * G * H
    per += H * spec.output_size
    return 6.0 * per


def dominant_gemm(spec: ModelSpec, cfg: CharLMConfig) -> tuple[int, int, int]:
    H, G = spec.hidden_size, spec.gates
    if "U" in spec.cell_info.layer_params:
        return cfg.batch_size, H, G * H
    return cfg.batch_size * cfg.seq_len, layer_input_size(spec, spec.num_layers - 1), G * H


def run_preset(name: str, text_path: str, budget_s: float, seed: int, out: Path, V: int, scale: float) -> dict:
    preset = PRESETS[name]
    steps = max(1, round(preset.settings["max_steps"] * scale))
    cfg = dataclasses.replace(
        CharLMConfig(text=text_path), **preset.settings, seed=seed, max_minutes=budget_s * scale / 60
    )
    cfg = dataclasses.replace(cfg, max_steps=steps, eval_every=steps)
    summary = train_run(cfg, out, force=True, quiet=True)
    spec = ModelSpec(
        cfg.cell,
        V,
        cfg.hidden_size,
        V,
        cfg.layers,
        "embedding" if cfg.embed_size else "onehot",
        embed_size=cfg.embed_size,
        tie_weights=cfg.tie_weights,
        residual=cfg.residual,
        norm=cfg.norm,
    )
    chars_per_s = summary["step"] * cfg.batch_size * cfg.seq_len / summary["train_seconds"]
    m, k, n = dominant_gemm(spec, cfg)
    roof = gemm_gflops(m, k, n)
    return {
        "preset": name,
        "settings": {k: v for k, v in preset.settings.items()},
        "val_nats_per_char": round(summary["best_val_loss"], 4),
        "steps": summary["step"],
        "stop_reason": summary["stop_reason"],
        "train_seconds": round(summary["train_seconds"], 1),
        "chars_per_s": round(chars_per_s),
        "params": count_params(spec),
        "gemm_shape": [m, k, n],
        "gemm_gflops": round(roof, 1),
        "roofline_fraction": round(model_flops_per_char(spec) * chars_per_s / 1e9 / roof, 3),
    }


def run_plain_torch(text: str, budget_s: float, seed: int) -> dict:
    """The plain PyTorch script, written the way its user would; scored by rnnlab's evaluation."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    train_text, val_text = split_train_val(text, 0.1)
    vocab = Vocab.from_text(train_text)
    V, p = len(vocab), PLAIN
    data = torch.as_tensor(vocab.encode(train_text, "text").astype(np.int64))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.drop = nn.Embedding(V, p["embed"]), nn.Dropout(p["dropout"])
            self.gru, self.fc = nn.GRU(p["embed"], p["hidden"], batch_first=True), nn.Linear(p["hidden"], V)

        def forward(self, x, h):
            out, h = self.gru(self.drop(self.embed(x)), h)
            return self.fc(self.drop(out)), h

    net = Net()
    steps = max(1, round(p["steps_per_300s"] * budget_s / 300))
    opt = torch.optim.Adam(net.parameters(), lr=p["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    span = len(data) // p["batch"]
    streams = data[: span * p["batch"]].view(p["batch"], span)
    h, pos, trained, step = None, 0, 0.0, 0
    while step < steps and trained < budget_s:
        t0 = time.perf_counter()
        if pos + p["seq"] + 1 > span:
            pos, h = 0, None
        chunk = streams[:, pos : pos + p["seq"] + 1]
        logits, h = net(chunk[:, :-1], h)
        h = h.detach()
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), chunk[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), p["clip"])
        opt.step()
        sched.step()
        pos += p["seq"]
        step += 1
        trained += time.perf_counter() - t0
    net.eval()

    class Scored:  # the two methods rnnlab's evaluation calls
        def init_carry(self, batch):
            return torch.zeros(1, batch, p["hidden"])

        @torch.no_grad()
        def forward(self, carry, inputs):
            logits, carry = net(torch.as_tensor(inputs.astype(np.int64)), carry)
            return logits.numpy(), carry

    val_ids, _ = vocab.encode_known(val_text)
    val = nats_per_char(Scored(), val_ids, p["seq"])
    chars_per_s = step * p["batch"] * p["seq"] / trained
    spec = ModelSpec("gru_reset_after", V, p["hidden"], V, 1, "embedding", embed_size=p["embed"])
    roof = gemm_gflops(p["batch"], p["hidden"], 3 * p["hidden"])
    return {
        "preset": "plain PyTorch script",
        "settings": dict(p, steps=steps),
        "val_nats_per_char": round(val, 4),
        "steps": step,
        "train_seconds": round(trained, 1),
        "chars_per_s": round(chars_per_s),
        "params": count_params(spec),
        "gemm_shape": [p["batch"], p["hidden"], 3 * p["hidden"]],
        "gemm_gflops": round(roof, 1),
        "roofline_fraction": round(model_flops_per_char(spec) * chars_per_s / 1e9 / roof, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,300", help="training seconds, comma-separated (presets: 60, 300)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated")
    parser.add_argument("--contenders", default="classic,parallel,plain")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every budget and step count (e.g. 0.02 to check the script quickly)",
    )
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    contenders = args.contenders.split(",")

    text_path = str(SHAKESPEARE) if SHAKESPEARE.exists() else ""
    text = read_text(text_path or None)
    V = len(Vocab.from_text(split_train_val(text, 0.1)[0]))
    import torch

    result = {
        "corpus": "tinyshakespeare" if text_path else "built-in pydoc topics",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, torch {torch.__version__}",
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            for seed in seeds:
                for who in contenders:
                    if who == "plain":
                        row = run_plain_torch(text, budget * args.scale, seed)
                    else:
                        row = run_preset(
                            CONTENDERS[who][budget], text_path, budget, seed, Path(tmp) / who, V, args.scale
                        )
                    row.update(contender=who, budget_seconds=budget, seed=seed)
                    result["runs"].append(row)
                    print(
                        f"{who:9s} {budget:4d} s seed {seed}: {row['val_nats_per_char']:.4f} nats/char, "
                        f"{row['chars_per_s']:,} chars/s, roofline {row['roofline_fraction']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    for budget in budgets:
        rows = [r for r in result["runs"] if r["budget_seconds"] == budget]
        best = {who: min(r["val_nats_per_char"] for r in rows if r["contender"] == who) for who in contenders}
        result[f"best_val_nats_per_char_{budget}s"] = best
        if "plain" in best:
            result[f"rnnlab_beats_plain_{budget}s"] = min(v for k, v in best.items() if k != "plain") < best["plain"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
