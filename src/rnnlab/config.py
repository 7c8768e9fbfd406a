"""Run configurations as plain dataclasses, saved as TOML next to every run.

TOML has no null, so "no limit" is written as 0 (``max_minutes = 0``) and
"built-in corpus" as an empty string (``text = ""``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .cells import CELLS, INITS
from .errors import UserError
from .optim import CLIP_KINDS, OPTIMIZERS, SCHEDULES


@dataclass
class CharLMConfig:
    """Everything that defines a charlm run (data, model, optimizer, budget)."""

    text: str = ""                 # UTF-8 file; "" = the built-in corpus
    val_fraction: float = 0.1
    cell: str = "gru_reset_after"
    hidden_size: int = 256
    layers: int = 1
    seq_len: int = 64
    batch_size: int = 32
    init: str = "default"
    dtype: str = "float32"
    backend: str = "numpy"
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    clip: str = "norm"
    clip_value: float = 5.0
    loss_reduction: str = "mean"   # "sum" over the sequence is the min-char-rnn objective
    max_steps: int = 1000          # 0 = no step limit
    max_minutes: float = 0.0       # wall-clock training budget of one invocation; 0 = none
    target_loss: float = 0.0       # stop once the smoothed train loss (nats/char) is below; 0 = off
    target_val_loss: float = 0.0   # stop at the first eval with validation loss at or below; 0 = off
    eval_every: int = 100
    eval_max_chars: int = 0        # cap on validation characters per eval; 0 = all
    sample_length: int = 200
    seed: int = 0

    def validate(self) -> "CharLMConfig":
        positive_ints = ("hidden_size", "layers", "seq_len", "batch_size", "eval_every")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"--{flag(name)} must be a positive integer, got {value!r}")
        for name in ("max_steps", "warmup_steps", "eval_max_chars", "sample_length", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"--{flag(name)} must be a non-negative integer, got {value!r}")
        for name in ("lr", "clip_value"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0 or not math.isfinite(value):
                raise UserError(f"--{flag(name)} must be a positive number, got {value!r}")
        for name in ("max_minutes", "target_loss", "target_val_loss"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or not math.isfinite(value):
                raise UserError(f"--{flag(name)} must be zero (off) or a positive number, got {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction!r}")
        choices = {"cell": CELLS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "clip": CLIP_KINDS,
                   "init": INITS, "dtype": ("float32", "float64"), "backend": ("numpy", "jax"),
                   "loss_reduction": ("mean", "sum")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{flag(name)} must be one of {', '.join(allowed)}, "
                                f"got {getattr(self, name)!r}")
        if not (self.max_steps or self.max_minutes or self.target_loss or self.target_val_loss):
            raise UserError("no stopping rule: set --max-steps, --max-minutes, --target-loss or "
                            "--target-val-loss")
        if self.schedule == "cosine" and self.max_steps == 0:
            raise UserError("--schedule cosine needs --max-steps (the decay horizon)")
        return self


PRESETS = {
    # The from-scratch exercise (Karpathy's min-char-rnn): batch 1, loss summed over
    # 25 steps, Adagrad 0.1, element-wise clip at 5, weights N(0,1)*0.01, float64.
    "min-char-rnn": dict(cell="rnn", hidden_size=100, layers=1, seq_len=25, batch_size=1,
                         optimizer="adagrad", lr=0.1, clip="value", clip_value=5.0,
                         loss_reduction="sum", init="classic", dtype="float64", schedule="constant",
                         warmup_steps=0),
}


def flag(field_name: str) -> str:
    return field_name.replace("_", "-")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_toml(cfg, header: str = "") -> str:
    """Flat dataclass -> TOML text (strings, ints, floats, bools only)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            raise TypeError(f"{f.name}: cannot write {type(value).__name__} to TOML")
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"


def from_toml(cls, path: Path):
    """Read a config written by ``to_toml`` (or by hand); unknown keys are an error."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"config file {str(path)!r} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    return from_dict(cls, data, where=str(path))


def from_dict(cls, data: dict, where: str = "config"):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    return dataclasses.replace(cls(), **values)
