"""charlm: a character-level language model; what is specific to it and nothing else.

Data (90/10 split, vocabulary from the training part, B carried streams), the
loss (softmax cross-entropy, reported in nats/char and bits/char), the
evaluation on the validation split, and sampling.  The loop is ``rnnlab.train``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from .. import checkpoint, jsonfile, report, runs, train
from ..cells import ModelSpec
from ..config import PRESETS, CharLMConfig, to_toml
from ..data.text import BUILTIN_NAME, StreamBatcher, Vocab, eval_chunks, read_text, split_train_val
from ..errors import UserError
from ..facts import Facts, Headline, read_json
from .definition import COMMON_SPACE, ApiData, TaskDefinition, sequence_io

EVAL_STREAMS = 64
# --fit-budget times this many steps (the first few not counted) before it fixes the step count:
# about 3 s of best-300s's 300, and long enough that one slow step does not move the horizon much.
FIT_PROBE_STEPS = 30
LN2 = math.log(2.0)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CharLMTask(train.TaskBase):
    name = "charlm"
    item_name = "chars"

    def __init__(self, cfg: CharLMConfig, text: str | None, vocab: Vocab | None = None, prepared=None):
        """The run's data from ``text``, or from ``prepared`` (``rnnlab.data.corpus.Prepared``:
        memory-mapped ids; the same ids ``text`` would give)."""
        self.cfg = cfg
        source = cfg.data_dir or cfg.text or BUILTIN_NAME
        if prepared is not None:
            train_ids, all_val_ids = prepared.train, prepared.val
            self.vocab = vocab or Vocab(prepared.vocab_chars)
            self.text_sha256, self.val_dropped = (
                prepared.manifest["text_sha256"],
                prepared.manifest["val"]["dropped_unknown"],
            )
            train_counts = np.asarray(prepared.manifest["train_counts"], dtype=np.int64)
        else:
            train_text, val_text = split_train_val(text, cfg.val_fraction)
            self.vocab = vocab or Vocab.from_text(train_text)
            self.text_sha256 = text_sha256(text)
            train_ids = self.vocab.encode(train_text, "training text") if len(self.vocab) >= 2 else np.zeros(0)
            all_val_ids, self.val_dropped = self.vocab.encode_known(val_text)
            train_counts = None
        if len(self.vocab) < 2:
            raise UserError(
                f"text {source!r} has only one distinct character "
                f"({self.vocab.chars!r}) in its training part: there is nothing to predict; give a "
                "text with at least two different characters"
            )
        if len(train_ids) < cfg.seq_len + 1:
            raise UserError(
                f"text {source!r} has {len(train_ids)} training characters; "
                f"--seq-len {cfg.seq_len} needs at least {cfg.seq_len + 1}: give more text "
                "or lower --seq-len"
            )
        self.batcher = StreamBatcher(train_ids, cfg.batch_size, cfg.seq_len)
        if prepared is not None:
            from .. import distributed

            shard = distributed.current()
            if shard.active:  # under torchrun each rank reads its own rows' streams
                self.batcher.rows = shard.bounds(cfg.batch_size)
        val_ids = all_val_ids[: cfg.eval_max_chars] if cfg.eval_max_chars else all_val_ids
        self.val_chars_total = len(all_val_ids)
        self.val_ids = np.asarray(val_ids, dtype=np.int32) if len(val_ids) >= 2 else None
        self.unigram_nats = (
            unigram_nats_per_char(train_ids, self.val_ids, len(self.vocab), train_counts)
            if self.val_ids is not None
            else None
        )
        self.run = None  # the run directory (rnnlab.runs.RunDir) its samples go to, once before_training sets it
        self.batch_size = cfg.batch_size
        self.items_per_step = cfg.batch_size * cfg.seq_len

    def spec(self) -> ModelSpec:
        V, cfg = len(self.vocab), self.cfg
        return ModelSpec(
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

    def next_batch(self):
        return self.batcher.next()

    def evaluate(self, trainer) -> dict:
        if self.val_ids is None:
            return {}
        nats = nats_per_char(trainer, self.val_ids, self.cfg.seq_len)
        return {
            "val_loss": nats,
            "val_nats_per_char": nats,
            "val_bits_per_char": nats / LN2,
            "val_unigram_nats_per_char": self.unigram_nats,
        }

    def describe_eval(self, trainer, state, record, final) -> str:
        """The evaluation's line and a sample (also appended to samples.jsonl, for the report)."""
        val = record.get("val_nats_per_char")
        val_text = f"val {val:.4f} nats/char ({val / LN2:.3f} bits)" if val is not None else "no validation text"
        speed = record.get("chars_per_s")
        speed_text = f" | {speed:,.0f} chars/s" if speed else ""
        train_text = f"train {state.smoothed_loss:.4f}" if state.smoothed_loss is not None else "train -"
        sample = sample_text(trainer, self.vocab, self.cfg.sample_length, temperature=0.8, rng=state.sample_rng)
        self.keep_sample(state.step, sample)
        shown = sample[:120].replace("\n", " ⏎ ")  # one screen line; samples.jsonl has all of it
        return f"step {state.step} | {train_text} | {val_text}{speed_text}\n  sample: {shown}"

    def keep_sample(self, step: int, text: str, temperature: float = 0.8) -> None:
        if self.run is not None:
            self.run.append_log("samples.jsonl", json.dumps({"step": step, "temperature": temperature, "text": text}))

    def data_state(self) -> dict:
        return self.batcher.state()

    def load_data_state(self, state: dict) -> None:
        self.batcher.load_state(state)

    def checkpoint_meta(self) -> dict:
        used = 0 if self.val_ids is None else len(self.val_ids)
        return {
            "vocab": self.vocab.chars,
            "text_sha256": self.text_sha256,
            "validation": {
                "chars": used,
                "of": int(self.val_chars_total),
                "source": self.cfg.data_dir or self.cfg.text or BUILTIN_NAME,
            },
        }

    # ----- the run skeleton's hooks (rnnlab.runner)
    loss = "cross_entropy"

    @property
    def reduction(self) -> str:
        return self.cfg.loss_reduction

    def budget(self) -> tuple[train.Budget, int]:
        cfg = self.cfg
        # --fit-budget: no step count until the first steps are timed (the loop fits it then)
        steps = 0 if cfg.fit_budget else cfg.max_steps
        probe = FIT_PROBE_STEPS if cfg.fit_budget else 0
        budget = train.Budget(
            steps, cfg.max_minutes, cfg.target_loss, cfg.target_val_loss, cfg.eval_every, fit_probe_steps=probe
        )
        return budget, steps

    def before_training(self, trainer, run, fresh: bool) -> None:
        self.run = run
        if fresh:  # what the untrained model writes, for the report's before/after
            self.keep_sample(
                0,
                sample_text(
                    trainer,
                    self.vocab,
                    self.cfg.sample_length,
                    temperature=0.8,
                    rng=np.random.default_rng([self.cfg.seed, 2]),
                ),
            )

    def after_training(self, trainer, summary: dict, run) -> dict:
        unigram = ("unigram (character frequencies)", self.unigram_nats) if self.unigram_nats is not None else None
        report.plot_losses(run.path, "nats / char", "val_nats_per_char", baseline=unigram)
        return {"val_dropped_chars": self.val_dropped, "vocab_size": len(self.vocab), "vocab": self.vocab}


# --------------------------------------------------------------------------- evaluation, sampling


def unigram_nats_per_char(
    train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int, train_counts: np.ndarray | None = None
) -> float:
    """Validation loss of the best model that ignores context: the training text's character
    frequencies (add-one smoothed, so no character has probability 0).  A trained model
    should beat it by far; log(vocab_size) is the loss of uniform guessing.  ``train_counts``:
    the frequencies already counted (a prepared corpus has them), so the ids are not read."""
    if train_counts is None:
        train_counts = np.bincount(train_ids, minlength=vocab_size)
    counts = np.asarray(train_counts, dtype=np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return float(-log_p[val_ids[1:]].mean())  # the first character is never predicted


def log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum of -log p(target) over all positions; logits [..., V], targets [...] (float64 math)."""
    z = logits.astype(np.float64).reshape(-1, logits.shape[-1])
    z -= z.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(z).sum(axis=1))
    picked = z[np.arange(z.shape[0]), targets.reshape(-1)]
    return float(np.sum(logsum - picked))


def nats_per_char(trainer, ids: np.ndarray, seq_len: int, progress: bool = False) -> float:
    """Mean next-character loss over ``ids`` in nats, the state carried along each stream;
    ``progress``: a bar on a terminal (a whole book takes a while)."""
    import sys

    from tqdm import tqdm

    carry, total, count = None, 0.0, 0
    with tqdm(
        total=len(ids) - 1,
        unit="char",
        unit_scale=True,
        disable=not (progress and sys.stderr.isatty()),
        desc="evaluating",
        leave=False,
    ) as bar:
        for inputs, targets in eval_chunks(ids, EVAL_STREAMS, seq_len):
            if carry is None:
                carry = trainer.init_carry(inputs.shape[0])
            logits, carry = trainer.forward(carry, inputs)
            total += log_softmax_nll(logits, targets)
            count += targets.size
            bar.update(targets.size)
            bar.set_postfix(nats_per_char=f"{total / count:.3f}")
    return total / count


MAX_SAMPLE_CHARS = 10_000_000  # one sample's characters: minutes of stepping, not forever


def sample_text(
    trainer,
    vocab: Vocab,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    prime: str = "",
    rng: np.random.Generator | None = None,
) -> str:
    """Generate ``length`` characters after ``prime`` (returned without the prime).

    temperature divides the logits (0 = always the most likely character);
    top_k > 0 samples only among the k most likely.
    """
    if length > MAX_SAMPLE_CHARS:
        raise UserError(
            f"--length {length:,} is more than one sample may be ({MAX_SAMPLE_CHARS:,} characters); ask for fewer"
        )
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
        if not np.isfinite(y).all():
            raise UserError(
                "the model's outputs are not finite (its weights hold NaN or infinity): the checkpoint is "
                "damaged; restore it from a copy or train again"
            )
        if temperature == 0:
            ix = int(np.argmax(y))
        else:
            z = y / temperature
            if not np.isfinite(z).all():  # a temperature so small that only the likeliest characters remain
                z = np.where(y == y.max(), 0.0, -np.inf)
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


def open_task(cfg: CharLMConfig, meta: dict | None, where: str) -> CharLMTask:
    """The data of a run: fresh (``meta`` None: the text read, the vocabulary built from its training
    part) or a checkpoint's (its vocabulary and stream positions; the text must be unchanged)."""
    if cfg.data_dir:
        from ..data.corpus import open_prepared

        prepared = open_prepared(cfg.data_dir)
        _same_data_on_every_rank(prepared, cfg.data_dir)
        if meta is None:  # the split is the prepared data's
            cfg = dataclasses.replace(
                cfg, data_dir=os.path.abspath(cfg.data_dir), val_fraction=float(prepared.manifest["val_fraction"])
            )
            return CharLMTask(cfg, None, prepared=prepared)
        if prepared.manifest["text_sha256"] != meta.get("text_sha256"):
            raise UserError(
                f"the prepared data {cfg.data_dir!r} is not the data the run in {where} was started "
                "on; resume needs the same data"
            )
        task = CharLMTask(cfg, None, Vocab(prepared.vocab_chars), prepared=prepared)
        task.restore(meta, where)
        return task
    if meta is None:
        if cfg.text:
            cfg = dataclasses.replace(cfg, text=os.path.abspath(cfg.text))
        return CharLMTask(cfg, read_text(cfg.text or None))
    text = read_text(cfg.text or None)
    if text_sha256(text) != meta.get("text_sha256"):
        raise UserError(
            f"the text {cfg.text or BUILTIN_NAME!r} changed since the run in {where} was started; "
            "resume needs the same text"
        )
    try:
        vocab = Vocab(meta["vocab"])
    except (KeyError, TypeError) as exc:
        raise checkpoint.damaged(where, exc) from exc
    task = CharLMTask(cfg, text, vocab)
    task.restore(meta, where)
    return task


def _same_data_on_every_rank(prepared, where: str) -> None:
    """Under torchrun every rank maps its own copy of the prepared data (on its machine): their
    manifests must agree, or the ranks would train on different texts."""
    from .. import distributed

    m = prepared.manifest
    mine = (m["text_sha256"], m["train"]["sha256"], m["val"]["sha256"], m["vocab"])
    every = distributed.current().all_values(mine)
    differing = [rank for rank, theirs in enumerate(every) if theirs != every[0]]
    if differing:
        raise UserError(
            f"--data {where}: rank {differing[0]} has other prepared data than rank 0 (another "
            "manifest); give every process the same prepared directory"
        )


def load_run(run_dir: str | os.PathLike, which: str = "checkpoint", backend: str | None = None):
    """A saved charlm model (``extras["vocab"]``: its vocabulary), for sampling and evaluation."""
    loaded = runs.load_run(
        run_dir, which, "charlm", CharLMConfig, backend, "cross_entropy", {"vocab": ("vocab", Vocab)}
    )
    if len(loaded.extras["vocab"]) != loaded.spec.input_size:
        raise UserError(
            f"damaged checkpoint: {run_dir}/{which}.json: vocabulary size {len(loaded.extras['vocab'])} "
            f"does not match the model ({loaded.spec.input_size})"
        )
    return loaded


def evaluate_run(run_dir, text_path: str | None = None, which: str = "checkpoint", backend: str | None = None) -> dict:
    """nats/char and bits/char of a saved model on ``text_path`` (default: the run's validation split)."""
    loaded = load_run(run_dir, which, backend)
    trainer, vocab, cfg, meta = loaded.trainer, loaded.extras["vocab"], loaded.cfg, loaded.meta
    if text_path is None and cfg.data_dir:
        from ..data.corpus import open_prepared

        prepared = open_prepared(cfg.data_dir)
        if prepared.manifest["text_sha256"] != meta.get("text_sha256"):
            raise UserError(
                f"{cfg.data_dir!r} is not the prepared data {run_dir} was trained on; pass --text FILE "
                "to evaluate on a file"
            )
        ids, dropped, source = (
            prepared.val,
            prepared.manifest["val"]["dropped_unknown"],
            f"validation part of {cfg.data_dir}",
        )
        return _scores(trainer, ids, cfg.seq_len, source, dropped)
    if text_path is None:
        corpus = read_text(cfg.text or None)
        if text_sha256(corpus) != meta.get("text_sha256"):
            raise UserError(
                f"{cfg.text or BUILTIN_NAME!r} is not the text {run_dir} was trained on (it changed, or "
                "the checkpoint was edited); pass --text FILE to evaluate on a file"
            )
        _, val_text = split_train_val(corpus, cfg.val_fraction)
        text, source = val_text, f"validation split of {cfg.text or BUILTIN_NAME}"
    else:
        text, source = read_text(text_path), text_path
    ids, dropped = vocab.encode_known(text)
    if len(ids) < 2:
        raise UserError(f"{source} has fewer than 2 characters the model knows; nothing to evaluate")
    return _scores(trainer, ids, cfg.seq_len, source, dropped)


def _scores(trainer, ids, seq_len: int, source: str, dropped: int) -> dict:
    """nats/char and bits/char of ``trainer`` on the character ids ``ids`` read from ``source``."""
    nats = nats_per_char(trainer, ids, seq_len, progress=True)
    return {
        "text": source,
        "chars": int(len(ids)),
        "unknown_chars_skipped": int(dropped),
        "nats_per_char": nats,
        "bits_per_char": nats / LN2,
    }


# --------------------------------------------------------------------------- classic formats in


def import_run(
    weights_path: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    text: str | None = None,
    chars: str | None = None,
    rnn_name: str = "rnn",
    fc_name: str = "fc",
    backend: str = "numpy",
    force: bool = False,
    cell: str | None = None,
) -> dict:
    """Make a charlm run in ``out`` from classic weights (``fmt``: ``min-char-rnn`` or ``torch``),
    so ``sample``, ``eval``, ``export`` and ``train --resume`` (fine-tuning) work on it.

    The weights carry no vocabulary: it is ``chars`` (the characters in the order of the
    model's one-hot rows; min-char-rnn's ``chars`` list joined) or else the sorted
    characters of the training part of ``text``, rnnlab's own order.
    Long on purpose: every check of foreign weights against the text and vocabulary comes before
    anything is written, then the run is written in one place.
    """
    from .. import interchange

    runs.check_out_dir(Path(out))
    path = Path(weights_path)
    if not path.exists():
        raise UserError(f"weights file {str(path)!r} does not exist")
    arrays = interchange.load(path)
    readers = {
        "min-char-rnn": lambda: interchange.from_min_char_rnn(arrays, where=str(path)),
        "torch": lambda: interchange.from_torch_state_dict(
            arrays, "onehot", rnn_name, fc_name, where=str(path), cell=cell or interchange.cell_named_in(path)
        ),
    }
    if fmt not in readers:
        raise UserError(f"unknown format {fmt!r}; choose {' or '.join(readers)}")
    spec, params = readers[fmt]()
    if spec.input_size != spec.output_size:
        raise UserError(
            f"{path}: a character model reads and predicts the same {spec.input_size} characters, "
            f"but these weights read {spec.input_size} and predict {spec.output_size}"
        )
    dtype = "float64" if next(iter(params.values())).dtype == np.float64 else "float32"
    params = {k: v.astype(dtype) for k, v in params.items()}
    cfg = CharLMConfig(
        text=os.path.abspath(text) if text else "",
        cell=spec.cell,
        hidden_size=spec.hidden_size,
        layers=spec.num_layers,
        dtype=dtype,
        backend=backend,
    ).validate()
    corpus = read_text(cfg.text or None)
    if chars and len(set(chars)) != len(chars):
        raise UserError(
            f"--chars repeats a character ({len(chars)} given, {len(set(chars))} distinct); "
            "give each vocabulary character once, in row order"
        )
    vocab = Vocab(chars) if chars else Vocab.from_text(split_train_val(corpus, cfg.val_fraction)[0])
    if len(vocab) != spec.input_size:
        source = "--chars" if chars else f"the training text of {cfg.text or BUILTIN_NAME!r}"
        raise UserError(
            f"{path} models {spec.input_size} characters but {source} has {len(vocab)}; pass --chars "
            "with the model's characters in the order of its one-hot rows (min-char-rnn: "
            "''.join(chars)), or the --text it was trained on"
        )
    task = CharLMTask(cfg, corpus, vocab)
    out = Path(out)
    with runs.RunDir(out, resume=False, force=force) as run_dir:
        _, optimizer, state = runs.fresh_start(cfg, spec)  # the imported weights replace the initial ones
        trainer = runs.make_trainer(cfg, spec, params, optimizer, "cross_entropy", cfg.loss_reduction)
        state.carry = trainer.init_carry(cfg.batch_size)
        metrics = task.evaluate(trainer)
        run_dir.start_writing()
        run_dir.write_text("config.toml", to_toml(cfg, header=f"rnnlab charlm run imported from {path}"))
        config = dataclasses.asdict(cfg)
        train.save_checkpoint(run_dir, trainer, task, state, config)
        train.save_best(run_dir, trainer, task, state, config, metrics)
    return {
        "run_dir": str(out),
        "spec": spec.to_dict(),
        "vocab_size": len(vocab),
        "val_nats_per_char": metrics.get("val_nats_per_char"),
    }


# --------------------------------------------------------------------------- report


def report_facts(run_dir: Path, meta: dict, metrics: list[dict]):
    """Key metrics (validation nats/char and bits/char against the unigram and uniform baselines),
    the loss plot and samples before and after training, for ``rnnlab.html_report``."""
    facts = Facts(val_curve=("val_nats_per_char", "validation nats / char"))
    best = read_json(Path(run_dir) / "best.json")
    evaluated = [r for r in metrics if r.get("val_nats_per_char") is not None]
    scores = (best or {}).get("metrics") or (evaluated[-1] if evaluated else None)
    if scores and scores.get("val_nats_per_char") is not None:
        nats = scores["val_nats_per_char"]
        where = f"best, step {best['step']:,}" if best else "last evaluation"
        model = f"{nats:.3f} nats/char ({nats / LN2:.3f} bits)"
        unigram = scores.get("val_unigram_nats_per_char")
        if unigram:
            facts.headline.append(
                Headline(
                    f"validation loss ({where})",
                    model,
                    f"unigram: {unigram:.3f} nats/char ({unigram / LN2:.3f} bits)",
                    _relative(nats, unigram, "unigram"),
                    "better" if nats < unigram else "worse",
                )
            )
        vocab_size = len(meta.get("vocab", "")) or 1
        uniform = math.log(vocab_size)
        facts.headline.append(
            Headline(
                f"validation loss ({where})",
                model,
                f"uniform over {vocab_size} characters: {uniform:.3f} nats/char",
                _relative(nats, uniform, "uniform"),
                "better" if nats < uniform else "worse",
            )
        )
    facts.figures.append(
        (
            "Training loss (smoothed) and validation loss in nats/char; the dashed line is "
            "the unigram baseline (the training text's character frequencies)",
            "loss.png",
        )
    )
    validation = meta.get("validation")
    if validation:
        part = "all" if validation["chars"] >= validation["of"] else f"the first {validation['chars']:,} (--val-chars)"
        facts.texts.append(
            (
                "Validation",
                f"Each evaluation reads {part} of the {validation['of']:,} characters of "
                f"the validation part of {validation['source']}.",
            )
        )
    samples_path = Path(run_dir) / "samples.jsonl"
    samples = report.read_jsonl(samples_path, jsonfile.SAMPLE_ROW)
    if samples:
        chosen = [samples[0]] + ([samples[-1]] if len(samples) > 1 else [])
        for s in chosen:
            when = "before training (step 0)" if s["step"] == 0 else f"after {s['step']:,} steps"
            facts.texts.append((f"Sample {when}, temperature {s['temperature']:g}", s["text"]))
    return facts


def _relative(nats: float, baseline: float, name: str) -> str:
    if baseline <= 0:  # a one-character vocabulary: nothing to predict, no relative change
        return f"{nats - baseline:+.3f} nats/char against {name}"
    change = 100 * (nats - baseline) / baseline
    return f"{abs(change):.1f}% {'lower' if change < 0 else 'higher'} than {name}"


# --------------------------------------------------------------------------- the task, for the registry


def _demo_config(quick: bool) -> CharLMConfig:
    if quick:
        return CharLMConfig(
            hidden_size=32,
            seq_len=32,
            batch_size=16,
            max_steps=60,
            eval_every=30,
            eval_max_chars=4000,
            sample_length=80,
        )
    # The best settings found for about a minute of training (the demo's budget for it).
    return CharLMConfig(**PRESETS["fast-60s"].settings, eval_every=250, sample_length=300)


def _demo_intro(cfg: CharLMConfig) -> str:
    return (
        f"a {cfg.cell} language model (H={cfg.hidden_size}) on the built-in corpus, {cfg.max_steps} steps of "
        f"{cfg.batch_size}x{cfg.seq_len} characters ({cfg.backend} backend)"
    )


def _text_bytes(data) -> bytes:
    if not isinstance(data, str):
        raise UserError(f"charlm data= must be a Python string of text, got {type(data).__name__}")
    return data.encode("utf-8")


def _check_inputs(cfg: CharLMConfig) -> None:
    if cfg.text:
        read_text(cfg.text)


def _sample(model, length: int = 200, prime: str = "", temperature: float = 1.0, top_k: int = 0, seed: int = 0) -> str:
    return sample_text(model.trainer, model.vocab, int(length), temperature, top_k, prime, np.random.default_rng(seed))


TASK = TaskDefinition(
    name="charlm",
    config_cls=CharLMConfig,
    help="character-level language model",
    objective="val nats/char",
    budget_fields=("max_steps", "max_minutes"),
    open_task=open_task,
    load_run=load_run,
    report_facts=report_facts,
    evaluate=lambda run_dir, options: evaluate_run(run_dir, options.get("text_path"), "best"),
    sweep_space={**COMMON_SPACE, "hidden_size": {"choices": [64, 128, 256]}},
    demo=_demo_config,
    demo_intro=_demo_intro,
    demo_shows_texts=True,
    check_inputs=_check_inputs,
    api_data=ApiData("text", "data.txt", _text_bytes, "a Python string of text"),
    presets=PRESETS,
    onnx=dataclasses.replace(
        sequence_io("ids", "logits", ids=True),
        metadata=lambda meta, extras: {"rnnlab.vocab": json.dumps(meta.get("vocab"))},
    ),
    model_methods={"vocab": lambda model: model.loaded.extras["vocab"], "sample": _sample},
)
