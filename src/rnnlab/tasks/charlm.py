"""charlm: a character-level language model; what is specific to it and nothing else.

Data (90/10 split, vocabulary from the training part, B carried streams), the
loss (softmax cross-entropy, reported in nats/char and bits/char), the
evaluation on the validation split, and sampling.  The loop is ``rnnlab.train``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
from pathlib import Path

import numpy as np

from .. import checkpoint, train
from ..backends import get_backend
from ..cells import ModelSpec, check_params, init_params
from ..config import CharLMConfig, flag, from_dict, to_toml
from ..data.text import BUILTIN_NAME, StreamBatcher, Vocab, eval_chunks, read_text, split_train_val
from ..errors import UserError
from ..optim import Optimizer

RUN_FILES = ("config.toml", "metrics.jsonl", "checkpoint.safetensors", "checkpoint.json",
             "best.safetensors", "best.json", "loss.png")
# Fields that may change when a run is resumed: budgets and reporting, not the model or data.
RESUMABLE_OVERRIDES = {"max_steps", "max_minutes", "target_loss", "target_val_loss", "eval_every", "eval_max_chars",
                       "sample_length"}
EVAL_STREAMS = 64
LN2 = math.log(2.0)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CharLMTask:
    name = "charlm"
    item_name = "chars"

    def __init__(self, cfg: CharLMConfig, text: str, vocab: Vocab | None = None):
        self.cfg = cfg
        train_text, val_text = split_train_val(text, cfg.val_fraction)
        if len(train_text) < cfg.seq_len + 1:
            raise UserError(f"text {cfg.text or BUILTIN_NAME!r} has {len(train_text)} training characters; "
                            f"--seq-len {cfg.seq_len} needs at least {cfg.seq_len + 1}: give more text "
                            "or lower --seq-len")
        self.vocab = vocab or Vocab.from_text(train_text)
        self.text_sha256 = text_sha256(text)
        self.batcher = StreamBatcher(self.vocab.encode(train_text, "training text"), cfg.batch_size, cfg.seq_len)
        val_ids, self.val_dropped = self.vocab.encode_known(val_text)
        if cfg.eval_max_chars:
            val_ids = val_ids[: cfg.eval_max_chars]
        self.val_ids = val_ids if len(val_ids) >= 2 else None
        self.batch_size = cfg.batch_size
        self.items_per_step = cfg.batch_size * cfg.seq_len

    def spec(self) -> ModelSpec:
        V = len(self.vocab)
        return ModelSpec(self.cfg.cell, V, self.cfg.hidden_size, V, self.cfg.layers, "onehot")

    def next_batch(self):
        return self.batcher.next()

    def evaluate(self, trainer) -> dict:
        if self.val_ids is None:
            return {}
        nats = nats_per_char(trainer, self.val_ids, self.cfg.seq_len)
        return {"val_loss": nats, "val_nats_per_char": nats, "val_bits_per_char": nats / LN2}

    def describe_eval(self, trainer, state, record, final) -> str:
        val = record.get("val_nats_per_char")
        val_text = f"val {val:.4f} nats/char ({val / LN2:.3f} bits)" if val is not None else "no validation text"
        speed = record.get("chars_per_s")
        speed_text = f" | {speed:,.0f} chars/s" if speed else ""
        train_text = f"train {state.smoothed_loss:.4f}" if state.smoothed_loss is not None else "train -"
        sample = sample_text(trainer, self.vocab, min(self.cfg.sample_length, 120), temperature=0.8,
                             rng=state.sample_rng)
        shown = sample.replace("\n", " ⏎ ")
        return f"step {state.step} | {train_text} | {val_text}{speed_text}\n  sample: {shown}"

    def data_state(self) -> dict:
        return self.batcher.state()

    def checkpoint_meta(self) -> dict:
        return {"vocab": self.vocab.chars, "text_sha256": self.text_sha256}


# --------------------------------------------------------------------------- evaluation, sampling

def log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of -log p(target) over all positions; logits [..., V], targets [...] (float64 math)."""
    z = logits.astype(np.float64).reshape(-1, logits.shape[-1])
    z -= z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(z).sum(axis=1))
    picked = z[np.arange(z.shape[0]), targets.reshape(-1)]
    return float(np.sum(logsum - picked))


def nats_per_char(trainer, ids: np.ndarray, seq_len: int) -> float:
    """Mean next-character loss over ``ids`` in nats, the state carried along each stream."""
    carry, total, count = None, 0.0, 0
    for inputs, targets in eval_chunks(ids, EVAL_STREAMS, seq_len):
        if carry is None:
            carry = trainer.init_carry(inputs.shape[0])
        logits, carry = trainer.forward(carry, inputs)
        total += log_softmax_nll(logits, targets)
        count += targets.size
    return total / count


def sample_text(trainer, vocab: Vocab, length: int, temperature: float = 1.0, top_k: int = 0,
                prime: str = "", rng: np.random.Generator | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (returned without the prime).

    temperature divides the logits (0 = always the most likely character);
    top_k > 0 samples only among the k most likely.
    """
    if temperature < 0 or not math.isfinite(temperature):
        raise UserError(f"--temperature must be >= 0 (0 = argmax), got {temperature}")
    if top_k < 0:
        raise UserError(f"--top-k must be >= 0 (0 = off), got {top_k}")
    rng = rng or np.random.default_rng(0)
    carry = trainer.init_carry(1)
    if prime:
        prime_ids = vocab.encode(prime, "--prime text")
    else:  # start after a line break, as at the start of a paragraph
        prime_ids = vocab.encode("\n" if "\n" in vocab.index else vocab.chars[0])
    logits, carry = trainer.forward(carry, prime_ids[None, :])
    y = logits[0, -1].astype(np.float64)
    out = []
    for _ in range(length):
        if temperature == 0:
            ix = int(np.argmax(y))
        else:
            z = y / temperature
            if top_k and top_k < z.size:
                kth = np.partition(z, -top_k)[-top_k]
                z = np.where(z >= kth, z, -np.inf)
            z -= z.max()
            p = np.exp(z)
            p /= p.sum()
            ix = int(rng.choice(p.size, p=p))
        out.append(ix)
        carry, y = trainer.step(carry, np.array([ix]))
        y = y[0].astype(np.float64)
    return vocab.decode(out)


# --------------------------------------------------------------------------- runs

def _make_trainer(cfg: CharLMConfig, spec: ModelSpec, params: dict, optimizer: Optimizer):
    backend = get_backend(cfg.backend)
    return backend.Trainer(spec, params, optimizer, "cross_entropy", cfg.loss_reduction, cfg.clip,
                           cfg.clip_value)


def _prepare_run_dir(out: Path, resume: bool, force: bool) -> bool:
    """True when an existing run is to be resumed; refuses to mix two runs in one directory."""
    holds_run = out.exists() and any((out / f).exists() for f in RUN_FILES)
    if resume:
        if not checkpoint.exists(out):
            raise UserError(f"--resume: no checkpoint in {str(out)!r}; start a new run without --resume")
        return True
    if holds_run:
        if not force:
            raise UserError(f"{str(out)!r} already holds a run; pass --resume to continue it, --force to "
                            "replace it, or choose another --out")
        for f in RUN_FILES:
            if (out / f).exists():
                (out / f).unlink()
        for extra in out.glob("*.png"):
            extra.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return False


def train_run(cfg: CharLMConfig, out: str | os.PathLike, resume: bool = False, force: bool = False,
              overrides: dict | None = None, quiet: bool = False) -> dict:
    """Train (or resume) a charlm run in ``out``; returns the loop summary plus paths.

    ``overrides`` are the fields given explicitly on the command line; on resume
    only budgets may change.
    """
    out = Path(out)
    overrides = overrides or {}
    if _prepare_run_dir(out, resume, force):
        tensors, meta = checkpoint.load(out)
        if meta.get("task") != "charlm":
            raise UserError(f"{str(out)!r} holds a {meta.get('task')!r} run, not charlm")
        saved = from_dict(CharLMConfig, meta["config"], where=f"{out}/checkpoint.json")
        changed = {k: v for k, v in overrides.items() if k not in RESUMABLE_OVERRIDES and getattr(saved, k) != v}
        if changed:
            names = ", ".join(f"--{flag(k)}" for k in sorted(changed))
            raise UserError(f"cannot change {names} when resuming {str(out)!r}; start a new run "
                            "(--force or another --out) to change the model or data")
        cfg = dataclasses.replace(saved, **{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES})
        cfg.validate()
        text = read_text(cfg.text or None)
        if text_sha256(text) != meta.get("text_sha256"):
            raise UserError(f"the text {cfg.text or BUILTIN_NAME!r} changed since {str(out)!r} was started; "
                            "resume needs the same text")
        task = CharLMTask(cfg, text, Vocab(meta["vocab"]))
        task.batcher.load_state(meta["data"])
        spec = ModelSpec.from_dict(meta["spec"])
        params = checkpoint.group(tensors, "params")
        check_params(spec, params, f"{out}/checkpoint.safetensors")
        optimizer = Optimizer.restore(meta["optimizer"], checkpoint.group(tensors, "opt"))
        carry = checkpoint.carry_from_tensors(tensors, spec.num_layers, spec.cell == "lstm")
        state = train.LoopState.restore(meta["loop"], carry)
    else:
        cfg.validate()
        if cfg.text:
            cfg = dataclasses.replace(cfg, text=os.path.abspath(cfg.text))
        text = read_text(cfg.text or None)
        task = CharLMTask(cfg, text)
        spec = task.spec()
        rng = np.random.default_rng(cfg.seed)
        params = init_params(spec, rng, cfg.init, np.dtype(cfg.dtype))
        optimizer = Optimizer(cfg.optimizer)
        state = train.LoopState(sample_rng=np.random.default_rng([cfg.seed, 1]))
    checkpoint.atomic_write_text(out / "config.toml", to_toml(cfg, header="rnnlab charlm run configuration"))
    trainer = _make_trainer(cfg, spec, params, optimizer)
    budget = train.Budget(cfg.max_steps, cfg.max_minutes, cfg.target_loss, cfg.target_val_loss, cfg.eval_every)
    schedule = dict(base_lr=cfg.lr, schedule=cfg.schedule, total_steps=cfg.max_steps or None,
                    warmup_steps=cfg.warmup_steps)
    summary = train.run(task, trainer, state, budget, schedule, out, dataclasses.asdict(cfg), quiet)
    summary.update(run_dir=str(out), val_dropped_chars=task.val_dropped, vocab_size=len(task.vocab),
                   trainer=trainer, vocab=task.vocab)
    _plot_losses(out)
    return summary


def _plot_losses(run_dir: Path) -> None:
    """loss.png: smoothed train loss and validation loss per eval, nats/char."""
    import json

    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    rows = [r for r in rows if r.get("train_loss") is not None]
    if len(rows) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_loss"] for r in rows], label="train (smoothed)")
    if any("val_nats_per_char" in r for r in rows):
        ax.plot(steps, [r.get("val_nats_per_char", float("nan")) for r in rows], label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / char")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = run_dir / ".loss.png.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, run_dir / "loss.png")


def load_run(run_dir: str | os.PathLike, which: str = "checkpoint"):
    """(trainer, vocab, config, meta) of a saved run, for sampling and evaluation."""
    run_dir = Path(run_dir)
    if which == "best" and not checkpoint.exists(run_dir, "best"):
        raise UserError(f"{str(run_dir)!r} has no best.json (no validation loss yet); use the last checkpoint")
    tensors, meta = checkpoint.load(run_dir, which)
    if meta.get("task") != "charlm":
        raise UserError(f"{str(run_dir)!r} holds a {meta.get('task')!r} run, not charlm")
    try:
        spec = ModelSpec.from_dict(meta["spec"])
        cfg = from_dict(CharLMConfig, meta["config"], where=f"{run_dir}/{which}.json")
        vocab = Vocab(meta["vocab"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run_dir}/{which}.json lacks field {exc}; the checkpoint is damaged") from exc
    params = checkpoint.group(tensors, "params")
    check_params(spec, params, f"{run_dir}/{which}.safetensors")
    if len(vocab) != spec.input_size:
        raise UserError(f"{run_dir}/{which}.json: vocabulary size {len(vocab)} does not match the model "
                        f"({spec.input_size}); the checkpoint is damaged")
    trainer = _make_trainer(cfg, spec, params, Optimizer(cfg.optimizer))
    return trainer, vocab, cfg, meta


def evaluate_run(run_dir, text_path: str | None = None, which: str = "checkpoint") -> dict:
    """nats/char and bits/char of a saved model on ``text_path`` (default: the run's validation split)."""
    trainer, vocab, cfg, _ = load_run(run_dir, which)
    if text_path is None:
        _, val_text = split_train_val(read_text(cfg.text or None), cfg.val_fraction)
        text, source = val_text, f"validation split of {cfg.text or BUILTIN_NAME}"
    else:
        text, source = read_text(text_path), text_path
    ids, dropped = vocab.encode_known(text)
    if len(ids) < 2:
        raise UserError(f"{source} has fewer than 2 characters the model knows; nothing to evaluate")
    nats = nats_per_char(trainer, ids, cfg.seq_len)
    return {"text": source, "chars": int(len(ids)), "unknown_chars_skipped": int(dropped),
            "nats_per_char": nats, "bits_per_char": nats / LN2}
