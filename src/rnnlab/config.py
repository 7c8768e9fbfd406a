"""Run configurations as plain dataclasses, saved as TOML next to every run.

TOML has no null, so "no limit" is written as 0 (``max_minutes = 0``) and
"built-in corpus" as an empty string (``text = ""``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from .cells import CELLS, INITS

try:  # the standard library's TOML reader from Python 3.11; the same code as the tomli package
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
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
    device: str = "auto"           # torch backend: auto (a GPU when present), cpu, cuda, cuda:N
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
        check_ints(self, ("hidden_size", "layers", "seq_len", "batch_size", "eval_every"), minimum=1)
        check_ints(self, ("max_steps", "warmup_steps", "eval_max_chars", "sample_length", "seed"), minimum=0)
        check_positive(self, ("lr", "clip_value"))
        check_off_or_positive(self, ("max_minutes", "target_loss", "target_val_loss"))
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction!r}")
        check_device(self)
        check_choices(self, {**TRAINING_CHOICES, "backend": BACKEND_NAMES, "loss_reduction": ("mean", "sum")})
        if not (self.max_steps or self.max_minutes or self.target_loss or self.target_val_loss):
            raise UserError("no stopping rule: set --max-steps, --max-minutes, --target-loss or "
                            "--target-val-loss")
        if self.schedule == "cosine" and self.max_steps == 0:
            raise UserError("--schedule cosine needs --max-steps (the decay horizon)")
        return self


@dataclass
class DenoiseConfig:
    """Everything that defines a denoise run: the OU process, the model, the optimizer, the budget.

    The model is the classic exercise's Dense(H) - ReLU - GRU(H) - Dense(1); the
    training recipe (batch 256, Adam 3e-3 with cosine decay, 4000 steps, clip 1)
    reaches the Kalman predictor's MSE within 1% in seconds (see benchmarks/denoise.py).
    """

    mu: float = 1.0
    tau: float = 2.0
    sigma: float = 0.5
    dt: float = 0.1
    noise_var: float = 0.1         # variance of the observation noise (not a standard deviation)
    seq_len: int = 10              # OU steps per sequence; the predictor sees seq_len - 1 of them
    target: str = "predict"        # predict: x[t+1] from y[0..t];  filter: x[t] from y[0..t]
    cell: str = "gru"
    hidden_size: int = 12
    layers: int = 1
    init: str = "default"
    dtype: str = "float32"
    backend: str = "jax"
    device: str = "auto"           # torch backend: auto (a GPU when present), cpu, cuda, cuda:N
    optimizer: str = "adam"
    lr: float = 3e-3
    schedule: str = "cosine"
    warmup_steps: int = 0
    clip: str = "norm"
    clip_value: float = 1.0
    batch_size: int = 256          # fresh sequences per step
    steps: int = 4000
    max_minutes: float = 0.0       # wall-clock training budget of one invocation; 0 = none
    eval_every: int = 200
    val_sequences: int = 10_000    # fixed validation set, drawn once from the seed
    test_sequences: int = 100_000  # fresh test set for the final model-vs-Kalman comparison
    seed: int = 0

    def validate(self) -> "DenoiseConfig":
        check_ints(self, ("hidden_size", "layers", "batch_size", "steps", "eval_every", "val_sequences",
                          "test_sequences"), minimum=1)
        check_ints(self, ("warmup_steps", "seed"), minimum=0)
        if not isinstance(self.seq_len, int) or isinstance(self.seq_len, bool) or self.seq_len < 2:
            raise UserError(f"--seq-len must be an integer >= 2 (an input and a later target), got {self.seq_len!r}")
        check_positive(self, ("lr", "clip_value"))
        check_off_or_positive(self, ("max_minutes",))
        check_device(self)
        check_choices(self, {**TRAINING_CHOICES, "backend": BACKEND_NAMES, "target": ("predict", "filter")})
        self.process()  # tau, sigma, dt, noise_var > 0 and dt < tau
        return self

    def process(self):
        """The ``OUProcess`` of this run; its checks name the offending flag."""
        from .data.ou import OUProcess

        for name in ("mu", "tau", "sigma", "dt", "noise_var"):
            if not _is_number(getattr(self, name)):
                raise UserError(f"--{flag(name)} must be a number, got {getattr(self, name)!r}")
        return OUProcess(self.mu, self.tau, self.sigma, self.dt, self.noise_var)


@dataclass
class ForecastConfig:
    """Everything that defines a forecast run: the price series, the windows, the model, the budget.

    The defaults are the classic PyTorch exercise: an ``nn.RNN`` (tanh) over
    windows of prices scaled to [-1, 1], a linear readout of the last hidden
    state trained with MSE and Adam, the best epoch on validation kept.
    """

    csv: str = ""                  # OHLCV or Binance kline CSV; "" = the built-in generated series
    every: str = "20h"             # one point per bin: the first open in each bin
    start: str = ""                # first date of the selected range ("" = the file's first row)
    end: str = ""                  # end of the range, exclusive ("" = the file's last row)
    builtin_points: int = 3000     # length of the built-in series (used when csv = "")
    window: int = 20               # past prices seen per forecast
    target: str = "levels"         # levels: the next scaled price; returns: the next log-return
    loss_steps: str = "last"       # last: score only the forecast after the window; all: every step
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    cell: str = "rnn"
    hidden_size: int = 32
    layers: int = 1
    init: str = "default"
    dtype: str = "float32"
    backend: str = "torch"
    device: str = "auto"           # torch backend: auto (a GPU when present), cpu, cuda, cuda:N
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    clip: str = "norm"
    clip_value: float = 1.0
    batch_size: int = 32
    epochs: int = 50
    max_minutes: float = 0.0       # wall-clock training budget of one invocation; 0 = none
    seed: int = 0

    def validate(self) -> "ForecastConfig":
        check_ints(self, ("hidden_size", "layers", "batch_size", "epochs", "window"), minimum=1)
        check_ints(self, ("warmup_steps", "seed"), minimum=0)
        check_ints(self, ("builtin_points",), minimum=10)
        check_positive(self, ("lr", "clip_value"))
        check_off_or_positive(self, ("max_minutes",))
        check_device(self)
        check_choices(self, {**TRAINING_CHOICES, "backend": BACKEND_NAMES, "target": ("levels", "returns"),
                             "loss_steps": ("last", "all")})
        for name in ("csv", "every", "start", "end"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"--{flag(name)} must be text, got {getattr(self, name)!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < 1:
                raise UserError(f"--{flag(name)} must be a number between 0 and 1, got {value!r}")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError(f"--val-fraction {self.val_fraction:g} + --test-fraction {self.test_fraction:g} "
                            "leave less than 10% of the points to train on")
        if self.target == "returns" and self.window < 2:
            raise UserError(f"--target returns needs --window 2 or more (a window of N prices holds N-1 "
                            f"returns), got {self.window}")
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)


BACKEND_NAMES = ("numpy", "jax", "torch")
TRAINING_CHOICES = {"cell": CELLS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "clip": CLIP_KINDS,
                    "init": INITS, "dtype": ("float32", "float64")}


def check_ints(cfg, names, minimum: int) -> None:
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise UserError(f"--{flag(name)} must be {kind}, got {value!r}")


def check_positive(cfg, names) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not _is_number(value) or not value > 0 or not math.isfinite(value):
            raise UserError(f"--{flag(name)} must be a positive number, got {value!r}")


def check_off_or_positive(cfg, names) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not _is_number(value) or value < 0 or not math.isfinite(value):
            raise UserError(f"--{flag(name)} must be zero (off) or a positive number, got {value!r}")


def check_device(cfg) -> None:
    """``device`` names where the torch backend computes; the other backends choose for themselves."""
    device = cfg.device
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and cfg.backend != "torch":
        hint = ("the numpy backend runs on the CPU" if cfg.backend == "numpy" else
                "JAX picks its own device: install jax with CUDA support and leave --device at auto")
        raise UserError(f"--device {device} is for --backend torch; {hint}")


def check_choices(cfg, choices: dict) -> None:
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{flag(name)} must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}")


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
    """Flat dataclass -> TOML text, written by ``tomli_w`` (any string, a path with a newline or a
    control character included, reads back as it was)."""
    import tomli_w

    lines = [f"# {line}" for line in header.splitlines()] if header else []
    body = tomli_w.dumps({f.name: getattr(cfg, f.name) for f in fields(cfg)})
    return "\n".join(lines) + ("\n" if lines else "") + body


def read_toml(path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing or malformed file is a ``UserError`` naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a directory; give a .toml file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{what} {str(path)!r} does not exist") from exc
    except OSError as exc:
        raise UserError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {str(path)!r} is not valid TOML: {exc}") from exc


def from_toml(cls, path: Path):
    """Read a config written by ``to_toml`` (or by hand); unknown keys are an error."""
    return from_dict(cls, read_toml(path), where=str(path))


def from_dict(cls, data: dict, where: str = "config"):
    """A ``cls`` from a dict of field values (a TOML table, a checkpoint's config); unknown keys
    and values of the wrong type are a ``UserError`` naming ``where``, the key and the value."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a table of settings, got {type(data).__name__}")
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a quoted string"}.get(
                type(default), type(default).__name__)
            raise UserError(f"{where}: {name} (--{flag(name)}) must be {wanted}, got {value!r}")
        values[name] = value
    return dataclasses.replace(defaults, **values)
