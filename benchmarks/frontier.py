"""The training-time frontier of char-LMs on 2 CPU cores: validation nats/char of rnnlab's best
classic-cell preset, its best parallel-scan-cell preset, a plain PyTorch script of the kind a user
writes in thirty lines, and a plain PyTorch script of the classic preset's own recipe (the engine
against the engine).

tinyshakespeare (../shared/data; the built-in corpus when it is absent), the first 90% trains and
the last 10% validates, every contender scored by the same function (``charlm.nats_per_char``: the
whole validation split, state carried along 64 streams).  Training time excludes evaluation for all
alike.  The contenders run one after another in this one process, so they share the machine's
state.  For each: chars/s of training and the fraction of numpy's GEMM roofline the run's
matrix products reach (numpy's float32 GEMM measured here for the shape that dominates: the
recurrent step (B, H) @ (H, G*H) for a classic cell, the whole-sequence gate GEMM
(B*T, in) @ (in, G*H) for a parallel cell).

The rnnlab runs are the presets ``fast-60s`` / ``best-300s`` (and their parallel-cell twins), whose
step counts were measured on this machine for the budget.  ``--until steps`` (the default) trains
every contender for its full step count, so the losses compare on any machine and the speeds are
chars/s; ``--until clock`` also stops each at the budget's seconds, the frontier as a user with that
budget sees it on the day; ``--until fit`` runs the presets with ``--fit-budget`` (their step count
fitted to the budget from the first steps' rate, the schedule ending with the clock).  Each row
says its mode.  ``same`` is the classic preset's recipe written directly in PyTorch
(``same_recipe`` reads it from the preset); the JSON's ``same_recipe_<budget>s`` gives, seed by
seed, rnnlab's chars/s over the script's and the difference of their validation losses.

Prints one JSON object on stdout and a markdown table on stderr.

    python benchmarks/frontier.py [--budgets 60,300] [--seeds 0] [--contenders classic,parallel,plain,same]
        [--until steps|clock] [--backend numpy|jax|torch]
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


def run_preset(
    name: str, text_path: str, cap_s: float | None, seed: int, out: Path, V: int, scale: float, backend: str, fit: bool
) -> dict:
    """One preset's run: its step count (times ``scale``), capped at ``cap_s`` seconds of training
    when that is given (the clock mode), or as many steps as fit in ``cap_s`` (``fit``: --fit-budget)."""
    preset = PRESETS[name]
    steps = max(1, round(preset.settings["max_steps"] * scale))
    cfg = dataclasses.replace(
        CharLMConfig(text=text_path), **preset.settings, seed=seed, max_minutes=(cap_s or 0.0) / 60, fit_budget=fit
    )
    cfg = dataclasses.replace(cfg, max_steps=steps, eval_every=steps, **({"backend": backend} if backend else {}))
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
        "backend": cfg.backend,
        "settings": {k: v for k, v in preset.settings.items()},
        "val_nats_per_char": round(summary["best_val_loss"], 4),
        "steps": summary["step"],
        "fitted_steps": summary["fitted_steps"],
        "stop_reason": summary["stop_reason"],
        "train_seconds": round(summary["train_seconds"], 1),
        "chars_per_s": round(chars_per_s),
        "params": count_params(spec),
        "gemm_shape": [m, k, n],
        "gemm_gflops": round(roof, 1),
        "roofline_fraction": round(model_flops_per_char(spec) * chars_per_s / 1e9 / roof, 3),
    }


def same_recipe(preset_name: str) -> dict:
    """The torch script's settings for a classic-cell preset: its model, data, optimizer, schedule,
    clipping and weight average, read from the preset itself so that the two cannot drift apart."""
    cfg = dataclasses.replace(CharLMConfig(), **PRESETS[preset_name].settings)
    if cfg.cell != "gru_reset_after" or cfg.layers != 1 or not cfg.embed_size or cfg.tie_weights:
        raise SystemExit(f"{preset_name}: the same-recipe script writes one nn.GRU over an embedding")
    return dict(
        embed=cfg.embed_size,
        hidden=cfg.hidden_size,
        dropout=cfg.dropout,
        input_dropout=cfg.input_dropout,
        lr=cfg.lr,
        adam_beta2=cfg.adam_beta2,
        batch=cfg.batch_size,
        seq=cfg.seq_len,
        clip=cfg.clip_value,
        weight_decay=cfg.weight_decay,
        warmup=cfg.warmup_steps,
        ema=cfg.ema_decay,
        steps=cfg.max_steps,
    )


def run_torch_script(text: str, p: dict, steps: int, budget_s: float | None, seed: int, name: str) -> dict:
    """A PyTorch script written the way its user would (nn.Embedding -> nn.GRU -> nn.Linear,
    dropout on the GRU's output and, unless ``input_dropout`` is off, its input, Adam or AdamW-style decay of the weight matrices, linear
    warm-up then cosine to 0.1x, global-norm clipping, a debiased moving average of the weights
    for evaluation); scored by rnnlab's evaluation.  Stops after ``steps`` or ``budget_s`` seconds
    of training, whichever comes first."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    train_text, val_text = split_train_val(text, 0.1)
    vocab = Vocab.from_text(train_text)
    V = len(vocab)
    data = torch.as_tensor(vocab.encode(train_text, "text").astype(np.int64))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.drop = nn.Embedding(V, p["embed"]), nn.Dropout(p["dropout"])
            self.drop_input = self.drop if p.get("input_dropout", True) else nn.Identity()
            self.gru, self.fc = nn.GRU(p["embed"], p["hidden"], batch_first=True), nn.Linear(p["hidden"], V)

        def forward(self, x, h):
            out, h = self.gru(self.drop_input(self.embed(x)), h)
            return self.fc(self.drop(out)), h

    net = Net()
    wd = p.get("weight_decay", 0.0)
    matrices = [q for q in net.parameters() if q.ndim == 2]
    others = [q for q in net.parameters() if q.ndim != 2]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}],
        lr=p["lr"],
        betas=(0.9, p.get("adam_beta2", 0.999)),
    )
    warmup = p.get("warmup", 0)

    def lr_factor(s: int) -> float:  # 0-based step: linear warm-up, then cosine to 0.1x at ``steps``
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, steps - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    decay = p.get("ema", 0.0)
    average = [q.detach().clone() for q in net.parameters()] if decay else None
    span = len(data) // p["batch"]
    streams = data[: span * p["batch"]].view(p["batch"], span)
    h, pos, trained, step = None, 0, 0.0, 0
    while step < steps and (budget_s is None or trained < budget_s):
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
        step += 1
        if average is not None:  # debiased: the initial weights never enter the average
            with torch.no_grad():
                weight = (1 - decay) / (1 - decay**step)
                for a, q in zip(average, net.parameters()):
                    a.add_(q - a, alpha=weight)
        pos += p["seq"]
        trained += time.perf_counter() - t0
    net.eval()
    if average is not None:
        with torch.no_grad():
            for a, q in zip(average, net.parameters()):
                q.copy_(a)

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
        "preset": name,
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


def run_contender(who: str, budget: int, seed: int, args, text: str, text_path: str, V: int, tmp: Path) -> dict:
    cap = budget * args.scale if args.until in ("clock", "fit") else None
    if who == "plain":
        steps = max(1, round(PLAIN["steps_per_300s"] * budget / 300 * args.scale))
        return run_torch_script(text, PLAIN, steps, cap, seed, "plain PyTorch script")
    if who == "same":
        recipe = same_recipe(CONTENDERS["classic"][budget])
        steps = max(1, round(recipe["steps"] * args.scale))
        return run_torch_script(
            text, recipe, steps, cap, seed, f"plain PyTorch, {CONTENDERS['classic'][budget]}'s recipe"
        )
    fit = args.until == "fit"
    return run_preset(CONTENDERS[who][budget], text_path, cap, seed, tmp / who, V, args.scale, args.backend, fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,300", help="training seconds, comma-separated (presets: 60, 300)")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated")
    parser.add_argument("--contenders", default="classic,parallel,plain,same")
    parser.add_argument(
        "--until",
        choices=("steps", "clock", "fit"),
        default="steps",
        help="steps: every contender trains its full step count (losses comparable on any machine); "
        "clock: the budget's seconds also stop it (the frontier as a user with that budget sees it); "
        "fit: rnnlab's presets fit their step count to the budget (--fit-budget), the scripts stop at it",
    )
    parser.add_argument("--backend", default="", help="the rnnlab contenders' backend (default: the preset's)")
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
        "until": args.until,
        "gemm_gflops_float32_512": round(gemm_gflops(512, 512, 512), 1),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            for seed in seeds:
                for who in contenders:
                    row = run_contender(who, budget, seed, args, text, text_path, V, Path(tmp))
                    row.update(contender=who, budget_seconds=budget, seed=seed, mode=args.until)
                    result["runs"].append(row)
                    print(
                        f"{who:9s} {budget:4d} s seed {seed}: {row['val_nats_per_char']:.4f} nats/char after "
                        f"{row['steps']:,} steps, {row['chars_per_s']:,} chars/s, roofline {row['roofline_fraction']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    for budget in budgets:
        rows = [r for r in result["runs"] if r["budget_seconds"] == budget]
        best = {who: min(r["val_nats_per_char"] for r in rows if r["contender"] == who) for who in contenders}
        result[f"best_val_nats_per_char_{budget}s"] = best
        ours = [v for k, v in best.items() if k not in ("plain", "same")]
        if "plain" in best and ours:  # a plain-only run (a day's baseline) has nothing to compare
            result[f"rnnlab_beats_plain_{budget}s"] = min(ours) < best["plain"]
        if "same" in best and "classic" in best:  # the engine against the engine, seed by seed
            pairs = {
                seed: [
                    next(r for r in rows if r["contender"] == who and r["seed"] == seed) for who in ("classic", "same")
                ]
                for seed in seeds
            }
            result[f"same_recipe_{budget}s"] = {
                seed: {
                    "speed_ratio": round(ours["chars_per_s"] / theirs["chars_per_s"], 3),
                    "val_difference": round(ours["val_nats_per_char"] - theirs["val_nats_per_char"], 4),
                }
                for seed, (ours, theirs) in pairs.items()
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
