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

from .cells import CELLS, INITS, NORMS

try:  # the standard library's TOML reader from Python 3.11; the same code as the tomli package
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from .backends import BACKENDS, backend_info, with_devices
from .errors import UserError
from .optim import CLIP_KINDS, OPTIMIZERS, SCHEDULES

BACKEND_NAMES = tuple(BACKENDS)  # the backend list is written once, in rnnlab.backends
DTYPES = ("float32", "float64")
PRUNERS = ("median", "hyperband", "none")  # sweeps: how bad trials are stopped early
GROUPS = ("data", "process", "model", "optimization", "budget", "reporting")


@dataclass(frozen=True)
class Setting:
    """Everything about one setting except its default: its help, its group in ``--help``, the
    values it takes, and whether ``--resume`` may change it.  The command line's flags, the
    TOML keys and the checks in ``validate`` are all made from these."""

    help: str
    group: str
    choices: tuple | None = None  # the registry of allowed values
    minimum: float | None = None  # numbers: the smallest allowed value ...
    above: bool = False  # ... which is itself excluded
    maximum: float | None = None  # numbers: the largest allowed value ...
    below: bool = False  # ... which is itself excluded
    resumable: bool = False  # --resume may change it (budgets and reporting, never model or data)
    metavar: str | None = None
    aliases: tuple = ()  # further flag names (old spellings stay accepted)

    def __post_init__(self):
        assert self.group in GROUPS, self.group


def setting(default, spec: Setting):
    """A config field with its ``Setting``."""
    return dataclasses.field(default=default, metadata={"setting": spec})


# Settings every task shares: each is described here once; a task gives only its default
# (and, where it says more, its own help).
SHARED = {
    "cell": Setting("recurrent cell", "model", choices=CELLS),
    "hidden_size": Setting("units in each recurrent layer", "model", minimum=1, metavar="N"),
    "layers": Setting("stacked recurrent layers", "model", minimum=1, metavar="N"),
    "residual": Setting(
        "each layer adds its input to its output where both are --hidden-size wide (deep stacks train better)", "model"
    ),
    "norm": Setting(
        "rms: RMS-normalise what each layer and the readout read (never the raw input)", "model", choices=NORMS
    ),
    "init": Setting(
        "default: one-hot rows N(0, 0.5^2), dense inputs N(0, 1/fan_in), orthogonal recurrent "
        "blocks, readout N(0, 1/H), LSTM forget bias 1; classic: every weight N(0,1)*0.01, as "
        "min-char-rnn",
        "model",
        choices=INITS,
    ),
    "dtype": Setting("floating-point type of parameters and math", "model", choices=DTYPES),
    "backend": Setting("engine that computes the model", "model", choices=BACKEND_NAMES),
    "device": Setting(
        "torch backend: auto (a GPU when present, else the CPU), cpu, cuda or cuda:N", "model", metavar="WHERE"
    ),
    "optimizer": Setting("update rule", "optimization", choices=OPTIMIZERS),
    "lr": Setting("learning rate (peak rate with a schedule)", "optimization", minimum=0, above=True, metavar="X"),
    "schedule": Setting("learning-rate schedule over the run", "optimization", choices=SCHEDULES),
    "warmup_steps": Setting("linear warm-up from 0 to --lr over N steps", "optimization", minimum=0, metavar="N"),
    "clip": Setting("global-norm or element clip", "optimization", choices=CLIP_KINDS),
    "clip_value": Setting(
        "largest gradient norm (--clip norm) or element (--clip value)",
        "optimization",
        minimum=0,
        above=True,
        metavar="X",
    ),
    "weight_decay": Setting(
        "decoupled weight decay, as AdamW: each step scales the weight matrices (not the "
        "biases) by 1 - lr * X (0 = off)",
        "optimization",
        minimum=0,
        metavar="X",
    ),
    "adam_beta2": Setting(
        "Adam's decay of its squared-gradient average (0.99 adapts faster, for short runs at a high rate)",
        "optimization",
        minimum=0,
        maximum=1,
        below=True,
        metavar="X",
    ),
    "ema_decay": Setting(
        "evaluate, sample and save an exponential moving average of the weights, updated every "
        "step with this decay (0 = off; 0.998 averages over about the last 500 steps); "
        "training itself continues on the raw weights",
        "optimization",
        minimum=0,
        maximum=1,
        below=True,
        resumable=True,
        metavar="D",
    ),
    "dropout": Setting(
        "dropout rate on the input of each recurrent layer (not a one-hot input) and on the "
        "readout's input, a fresh mask per element and step; off at evaluation (0 = off)",
        "optimization",
        minimum=0,
        maximum=1,
        below=True,
        metavar="P",
    ),
    "input_dropout": Setting(
        "--dropout also acts on the first layer's input features (an embedding, a dense layer's "
        "output or the input values; a one-hot input has none); --no-input-dropout keeps it between "
        "layers and before the readout only, and lets the NumPy and JAX backends fold an embedding into the "
        "first layer's input weights (a table lookup instead of three matrix products a step)",
        "optimization",
    ),
    "batch_size": Setting("rows per step", "optimization", minimum=1, metavar="B"),
    "max_minutes": Setting(
        "training minutes of this invocation (0 = no limit)", "budget", minimum=0, resumable=True, metavar="X"
    ),
    "seed": Setting("seed of the initial weights and the data", "budget", minimum=0, metavar="N"),
}


def shared(name: str, default, **changes):
    """The shared setting ``name`` with this task's default (and any of its own wording)."""
    return setting(default, dataclasses.replace(SHARED[name], **changes))


@dataclass
class CharLMConfig:
    """Everything that defines a charlm run (data, model, optimizer, budget)."""

    LENGTH = "max_steps"  # the setting that says how long the run trains

    text: str = setting(
        "", Setting("UTF-8 text to train on (default: built-in corpus, Python's pydoc topics)", "data", metavar="FILE")
    )
    data_dir: str = setting(
        "",
        Setting(
            "a directory written by `rnnlab charlm prepare`: memory-mapped "
            "character ids, for corpora of any size (instead of --text)",
            "data",
            metavar="DIR",
            aliases=("--data",),
        ),
    )
    val_fraction: float = setting(
        0.1,
        Setting(
            "tail of the text held out for validation (with --data: fixed when the data was prepared)",
            "data",
            minimum=0,
            maximum=1,
            below=True,
            metavar="X",
        ),
    )
    cell: str = shared("cell", "gru_reset_after")
    hidden_size: int = shared("hidden_size", 256)
    layers: int = shared("layers", 1)
    residual: bool = shared("residual", False)
    norm: str = shared("norm", "none")
    embed_size: int = setting(
        0,
        Setting(
            "a learned embedding of N dimensions in front of the first layer (0 = one-hot input)",
            "model",
            minimum=0,
            metavar="N",
        ),
    )
    tie_weights: bool = setting(
        False, Setting("the readout shares the embedding table (needs --embed-size equal to --hidden-size)", "model")
    )
    seq_len: int = setting(64, Setting("truncated-BPTT length", "optimization", minimum=1, metavar="T"))
    batch_size: int = shared("batch_size", 32, help="parallel text streams")
    init: str = shared("init", "default")
    dtype: str = shared("dtype", "float32")
    backend: str = shared("backend", "numpy")
    device: str = shared("device", "auto")
    optimizer: str = shared("optimizer", "adam")
    lr: float = shared("lr", 3e-3)
    schedule: str = shared("schedule", "constant")
    warmup_steps: int = shared("warmup_steps", 0)
    clip: str = shared("clip", "norm")
    clip_value: float = shared("clip_value", 5.0)
    weight_decay: float = shared("weight_decay", 0.0)
    adam_beta2: float = shared("adam_beta2", 0.999)
    dropout: float = shared("dropout", 0.0)
    input_dropout: bool = shared("input_dropout", True)
    ema_decay: float = shared("ema_decay", 0.0)
    loss_reduction: str = setting(
        "mean",
        Setting(
            "mean per character, or summed over the sequence (min-char-rnn)", "optimization", choices=("mean", "sum")
        ),
    )
    max_steps: int = setting(
        1000, Setting("total steps (0 = no limit)", "budget", minimum=0, resumable=True, metavar="N")
    )
    max_minutes: float = shared("max_minutes", 0.0)
    fit_budget: bool = setting(
        False,
        Setting(
            "fit the step count to --max-minutes: measure the first steps' rate, then train the steps that fit, "
            "the schedule ending with the clock (replaces --max-steps; kept on --resume)",
            "budget",
        ),
    )
    target_loss: float = setting(
        0.0,
        Setting(
            "stop when the smoothed train loss (nats/char) is below X (0 = off)",
            "budget",
            minimum=0,
            resumable=True,
            metavar="X",
        ),
    )
    target_val_loss: float = setting(
        0.0,
        Setting(
            "stop at the first evaluation with validation loss <= X (0 = off)",
            "budget",
            minimum=0,
            resumable=True,
            metavar="X",
        ),
    )
    eval_every: int = setting(
        100,
        Setting("steps between validation, sample and checkpoint", "reporting", minimum=1, resumable=True, metavar="N"),
    )
    eval_max_chars: int = setting(
        1_000_000,
        Setting(
            "validation characters per evaluation: the first N of the validation part (0 = all)",
            "reporting",
            minimum=0,
            resumable=True,
            metavar="N",
            aliases=("--val-chars",),
        ),
    )
    sample_length: int = setting(
        200, Setting("characters of the sample at each evaluation", "reporting", minimum=0, resumable=True, metavar="N")
    )
    seed: int = shared("seed", 0)

    def validate(self) -> CharLMConfig:
        check_settings(self)
        if not (self.max_steps or self.max_minutes or self.target_loss or self.target_val_loss):
            raise UserError("no stopping rule: set --max-steps, --max-minutes, --target-loss or --target-val-loss")
        if self.fit_budget and not self.max_minutes:
            raise UserError("--fit-budget needs --max-minutes M: the clock the step count is fitted to")
        if self.schedule == "cosine" and self.max_steps == 0 and not self.fit_budget:
            raise UserError(
                "--schedule cosine needs --max-steps (the decay horizon) or --fit-budget with --max-minutes"
            )
        if self.text and self.data_dir:
            raise UserError(f"give --text or --data, not both (got --text {self.text} and --data {self.data_dir})")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise UserError(
                f"--tie-weights needs --embed-size equal to --hidden-size (the readout reads the "
                f"{self.hidden_size}-wide hidden state), got --embed-size {self.embed_size}; set "
                f"--embed-size {self.hidden_size} or drop --tie-weights"
            )
        return self


@dataclass
class DenoiseConfig:
    """Everything that defines a denoise run: the OU process, the model, the optimizer, the budget.

    The model is the classic exercise's Dense(H) - ReLU - GRU(H) - Dense(1); the
    training recipe (batch 256, Adam 3e-3 with cosine decay, 4000 steps, clip 1)
    reaches the Kalman predictor's MSE within 1% in seconds (see benchmarks/denoise.py).
    """

    LENGTH = "steps"
    # Settings of other tasks that make no sense here: a flag or key for them is refused with the reason.
    REFUSED = {
        "embed_size": "denoise reads real values, not character ids, so there is no embedding table; "
        "drop it (--layers and --hidden-size shape the model)",
        "tie_weights": "denoise has no embedding table to share with the readout; drop it",
    }

    mu: float = setting(1.0, Setting("long-run mean", "process", metavar="X"))
    tau: float = setting(2.0, Setting("relaxation time", "process", minimum=0, above=True, metavar="X"))
    sigma: float = setting(0.5, Setting("stationary standard deviation", "process", minimum=0, above=True, metavar="X"))
    dt: float = setting(0.1, Setting("time step (must be < tau)", "process", minimum=0, above=True, metavar="X"))
    noise_var: float = setting(
        0.1, Setting("variance (not std) of the observation noise", "process", minimum=0, above=True, metavar="X")
    )
    seq_len: int = setting(
        10, Setting("OU steps per sequence (an input and a later target at least)", "process", minimum=2, metavar="T")
    )
    target: str = setting(
        "predict",
        Setting(
            "predict: x[t+1] from y[0..t] (the exercise); filter: x[t] from y[0..t]",
            "model",
            choices=("predict", "filter"),
        ),
    )
    cell: str = shared("cell", "gru", help="recurrent cell (gru = Cho 2014, as in the exercise)")
    hidden_size: int = shared("hidden_size", 12)
    layers: int = shared("layers", 1)
    residual: bool = shared("residual", False)
    norm: str = shared("norm", "none")
    init: str = shared("init", "default")
    dtype: str = shared("dtype", "float32")
    backend: str = shared("backend", "numpy")
    device: str = shared("device", "auto")
    optimizer: str = shared("optimizer", "adam")
    lr: float = shared("lr", 3e-3)
    schedule: str = shared("schedule", "cosine")
    warmup_steps: int = shared("warmup_steps", 0)
    clip: str = shared("clip", "norm")
    clip_value: float = shared("clip_value", 1.0)
    weight_decay: float = shared("weight_decay", 0.0)
    adam_beta2: float = shared("adam_beta2", 0.999)
    dropout: float = shared("dropout", 0.0)
    input_dropout: bool = shared("input_dropout", True)
    ema_decay: float = shared("ema_decay", 0.0)
    batch_size: int = shared("batch_size", 256, help="fresh sequences per step")
    steps: int = setting(
        4000,
        Setting("total training steps", "budget", minimum=1, resumable=True, metavar="N", aliases=("--max-steps",)),
    )
    max_minutes: float = shared("max_minutes", 0.0)
    eval_every: int = setting(
        200, Setting("steps between validation and checkpoint", "reporting", minimum=1, resumable=True, metavar="N")
    )
    val_sequences: int = setting(
        10_000, Setting("fixed validation sequences, drawn once from the seed", "reporting", minimum=1, metavar="N")
    )
    test_sequences: int = setting(
        100_000,
        Setting(
            "fresh sequences for the final comparison with Kalman", "reporting", minimum=1, resumable=True, metavar="N"
        ),
    )
    seed: int = shared("seed", 0)

    def validate(self) -> DenoiseConfig:
        check_settings(self)
        self.process()  # dt < tau
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

    LENGTH = "epochs"
    # Settings of other tasks that make no sense here: a flag or key for them is refused with the reason.
    REFUSED = {
        "embed_size": "forecast reads real values, not character ids, so there is no embedding table; "
        "drop it (--layers and --hidden-size shape the model)",
        "tie_weights": "forecast has no embedding table to share with the readout; drop it",
    }

    csv: str = setting(
        "",
        Setting(
            "Binance kline or OHLCV CSV (default: the built-in generated series, a random walk with two cycles)",
            "data",
            metavar="FILE",
        ),
    )
    every: str = setting(
        "20h", Setting("one point per bin: the first open (e.g. 20h, 90min, 1d)", "data", metavar="DURATION")
    )
    start: str = setting("", Setting("first date of the range (default: the file's first row)", "data", metavar="DATE"))
    end: str = setting(
        "", Setting("end of the range, exclusive (default: the file's last row)", "data", metavar="DATE")
    )
    builtin_points: int = setting(3000, Setting("length of the built-in series", "data", minimum=10, metavar="N"))
    window: int = setting(20, Setting("past prices seen per forecast", "data", minimum=1, metavar="N"))
    features: str = setting(
        "open",
        Setting(
            "open: the window's opens; ohlc: also each completed bin's high, low "
            "and close (log-returns against its open); ohlcv: and the log change of "
            "its volume. A forecast is made when a bin opens, so a step sees its own "
            "open and the candle of the bin before",
            "data",
            choices=("open", "ohlc", "ohlcv"),
        ),
    )
    target: str = setting(
        "levels",
        Setting(
            "levels: the next price scaled to [-1, 1] (the exercise); returns: the "
            "next log-return, turned into a price",
            "data",
            choices=("levels", "returns"),
        ),
    )
    loss_steps: str = setting(
        "last",
        Setting(
            "last: score the forecast after the window (the exercise); all: also every one-step forecast inside it",
            "optimization",
            choices=("last", "all"),
        ),
    )
    val_fraction: float = setting(
        0.15,
        Setting(
            "share of the points for validation", "data", minimum=0, above=True, maximum=1, below=True, metavar="X"
        ),
    )
    test_fraction: float = setting(
        0.15,
        Setting(
            "share of the points for the test (0 = none: train and validate only; a backtest's origins fit this way)",
            "data",
            minimum=0,
            maximum=1,
            below=True,
            metavar="X",
        ),
    )
    train_length: int = setting(
        0,
        Setting(
            "keep only the last N points of the range before splitting (0 = all); "
            "in a backtest, a sliding window of N points before each origin",
            "data",
            minimum=0,
            metavar="N",
        ),
    )
    head: str = setting(
        "point",
        Setting(
            "point: one forecast, trained with MSE (the exercise); gaussian: a mean "
            "and a log-variance, trained with the Gaussian negative log-likelihood, "
            "giving 80 and 95 percent intervals",
            "model",
            choices=("point", "gaussian"),
        ),
    )
    intervals: str = setting(
        "calibrated",
        Setting(
            "with --head gaussian: calibrated: intervals from the quantiles "
            "of the standardized validation residuals (they keep heavy tails); "
            "normal: the Gaussian's own quantiles",
            "model",
            choices=("calibrated", "normal"),
        ),
    )
    shrink: str = setting(
        "off",
        Setting(
            "auto: fit one weight alpha in [0, 1] on validation and forecast "
            "persistence + alpha x (model - persistence); off: the model's own "
            "forecast",
            "model",
            choices=("off", "auto"),
        ),
    )
    ewma_lambda: float = setting(
        0.94,
        Setting(
            "decay of the random-walk baseline's volatility: an exponentially "
            "weighted mean of the squared log-returns before each forecast "
            "(RiskMetrics: 0.94); CRPS skill is measured against it",
            "reporting",
            minimum=0,
            above=True,
            maximum=1,
            below=True,
            resumable=True,
            metavar="X",
        ),
    )
    cell: str = shared("cell", "rnn", help="recurrent cell (rnn = nn.RNN, as in the exercise)")
    hidden_size: int = shared("hidden_size", 32)
    layers: int = shared("layers", 1)
    residual: bool = shared("residual", False)
    norm: str = shared("norm", "none")
    init: str = shared("init", "default")
    dtype: str = shared("dtype", "float32")
    backend: str = shared("backend", "numpy")
    device: str = shared("device", "auto")
    optimizer: str = shared("optimizer", "adam")
    lr: float = shared("lr", 1e-3)
    schedule: str = shared("schedule", "constant")
    warmup_steps: int = shared("warmup_steps", 0)
    clip: str = shared("clip", "norm")
    clip_value: float = shared("clip_value", 1.0)
    weight_decay: float = shared("weight_decay", 0.0)
    adam_beta2: float = shared("adam_beta2", 0.999)
    dropout: float = shared("dropout", 0.0)
    input_dropout: bool = shared("input_dropout", True)
    ema_decay: float = shared("ema_decay", 0.0)
    batch_size: int = shared("batch_size", 32, help="windows per step")
    epochs: int = setting(
        50, Setting("passes over the training windows", "budget", minimum=1, resumable=True, metavar="N")
    )
    max_minutes: float = shared("max_minutes", 0.0)
    seed: int = shared("seed", 0)

    def validate(self) -> ForecastConfig:
        check_settings(self)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError(
                f"--val-fraction {self.val_fraction:g} + --test-fraction {self.test_fraction:g} "
                "leave less than 10% of the points to train on"
            )
        if self.target == "returns" and self.window < 2:
            raise UserError(
                f"--target returns needs --window 2 or more (a window of N prices holds N-1 returns), got {self.window}"
            )
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)


@dataclass
class SeriesConfig:
    """Everything that defines a series run: the table, its windows and splits, the model, the budget.

    The model is SegRNN's (Lin et al. 2023): each channel of a window on its own through shared
    weights, the window less its last value, cut into segments that a Dense-ReLU embeds and a
    recurrent cell steps over, then every output segment decoded at once from the final state.
    """

    LENGTH = "epochs"
    REFUSED = {
        "embed_size": "series reads real values, not character ids, so there is no embedding table; drop it",
        "tie_weights": "series has no embedding table to share with the readout; drop it",
    }

    csv: str = setting(
        "",
        Setting(
            "CSV with a time column and numeric columns (Parquet too, with pyarrow); default: the built-in "
            "generated series (three hourly channels with daily and weekly cycles)",
            "data",
            metavar="FILE",
        ),
    )
    time_column: str = setting(
        "",
        Setting(
            "the time column (default: one named date, time, timestamp or datetime, else the first)",
            "data",
            metavar="NAME",
        ),
    )
    columns: str = setting(
        "", Setting("comma-separated columns to read (default: every column but the time)", "data", metavar="LIST")
    )
    targets: str = setting(
        "",
        Setting(
            "comma-separated columns to forecast (default: all of --columns, i.e. multivariate); the other "
            "columns are inputs only, read beside each target",
            "data",
            metavar="LIST",
        ),
    )
    start: str = setting("", Setting("first time of the range (default: the file's first row)", "data", metavar="DATE"))
    end: str = setting("", Setting("end of the range, exclusive (default: past the last row)", "data", metavar="DATE"))
    train_length: int = setting(
        0,
        Setting(
            "keep only the last N rows of the range before splitting (0 = all); in a backtest, a sliding "
            "window of N rows before each origin",
            "data",
            minimum=0,
            metavar="N",
        ),
    )
    split: str = setting(
        "fractions",
        Setting(
            "fractions: chronological by --val-fraction and --test-fraction; ett-hour: the papers' ETTh "
            "protocol (12/4/4 months of hours); each later part's windows look back into the one before",
            "data",
            choices=("fractions", "ett-hour"),
        ),
    )
    val_fraction: float = setting(
        0.1,
        Setting("share of the rows for validation", "data", minimum=0, above=True, maximum=1, below=True, metavar="X"),
    )
    test_fraction: float = setting(
        0.2,
        Setting(
            "share of the rows for the test (0 = none: train and validate only; a backtest's origins fit this way)",
            "data",
            minimum=0,
            maximum=1,
            below=True,
            metavar="X",
        ),
    )
    lookback: int = setting(96, Setting("past rows seen per forecast (L)", "data", minimum=1, metavar="L"))
    horizon: int = setting(96, Setting("rows forecast at once (H)", "data", minimum=1, metavar="H"))
    segment: int = setting(
        24,
        Setting(
            "rows per segment (W): the cell steps over L/W segments and decodes H/W; must divide both",
            "model",
            minimum=1,
            metavar="W",
        ),
    )
    normalize: str = setting(
        "last",
        Setting(
            "per window: last: subtract each channel's last value and add it back after (SegRNN); mean: its "
            "mean; revin: its mean, and divide by its standard deviation (RevIN); none: leave the window as scaled",
            "model",
            choices=("last", "mean", "revin", "none"),
        ),
    )
    season: int = setting(
        24,
        Setting(
            "period of the seasonal-naive baseline, in rows (24: a day of hours)", "reporting", minimum=1, metavar="N"
        ),
    )
    loss: str = setting(
        "mae",
        Setting(
            "training loss on the scaled values: mae (SegRNN's; robust to the series' jumps) or mse; the best "
            "epoch is chosen on validation MSE either way",
            "optimization",
            choices=("mae", "mse"),
        ),
    )
    cell: str = shared("cell", "gru_reset_after", help="recurrent cell (gru_reset_after = nn.GRU, as SegRNN)")
    hidden_size: int = shared("hidden_size", 128)
    layers: int = shared("layers", 1)
    residual: bool = shared("residual", False)
    norm: str = shared("norm", "none")
    init: str = shared("init", "default")
    dtype: str = shared("dtype", "float32")
    backend: str = shared("backend", "numpy")
    device: str = shared("device", "auto")
    optimizer: str = shared("optimizer", "adam")
    lr: float = shared("lr", 1e-3)
    schedule: str = shared("schedule", "cosine")
    warmup_steps: int = shared("warmup_steps", 0)
    clip: str = shared("clip", "norm")
    clip_value: float = shared("clip_value", 1.0)
    weight_decay: float = shared("weight_decay", 0.0)
    adam_beta2: float = shared("adam_beta2", 0.999)
    dropout: float = shared("dropout", 0.0)
    input_dropout: bool = shared("input_dropout", True)
    ema_decay: float = shared("ema_decay", 0.0)
    batch_size: int = shared("batch_size", 64, help="windows per step (each gives one row per target)")
    epochs: int = setting(
        10, Setting("passes over the training windows", "budget", minimum=1, resumable=True, metavar="N")
    )
    max_minutes: float = shared("max_minutes", 0.0)
    seed: int = shared("seed", 0)

    def validate(self) -> SeriesConfig:
        check_settings(self)
        if self.split == "fractions" and self.val_fraction + self.test_fraction >= 0.9:
            raise UserError(
                f"--val-fraction {self.val_fraction:g} + --test-fraction {self.test_fraction:g} "
                "leave less than 10% of the rows to train on"
            )
        for name in ("lookback", "horizon"):
            if getattr(self, name) % self.segment:
                value = getattr(self, name)
                fits = [w for w in range(1, value + 1) if self.lookback % w == 0 and self.horizon % w == 0]
                raise UserError(
                    f"--segment {self.segment} does not divide --{name} {value}; choose a --segment that divides "
                    f"--lookback {self.lookback} and --horizon {self.horizon}: {', '.join(map(str, fits))}"
                )
        if self.season > self.lookback:
            raise UserError(
                f"--season {self.season} is longer than --lookback {self.lookback}; the window must hold it"
            )
        return self

    @property
    def fractions(self) -> tuple[float, float, float]:
        return (1.0 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)

    def column_list(self, name: str) -> list[str] | None:
        """``columns`` or ``targets`` as a list, None for the default (every one)."""
        text = getattr(self, name).strip()
        return [c.strip() for c in text.split(",") if c.strip()] or None if text else None


CONFIGS = (CharLMConfig, DenoiseConfig, ForecastConfig, SeriesConfig)


def settings_of(config_cls) -> dict[str, tuple[Setting, object]]:
    """field name -> (its Setting, its default), in the config's field order."""
    return {f.name: (f.metadata["setting"], f.default) for f in fields(config_cls)}


def choices_of(config_cls) -> dict[str, tuple]:
    """Every field of ``config_cls`` with a fixed set of values, and those values."""
    return {name: spec.choices for name, (spec, _) in settings_of(config_cls).items() if spec.choices is not None}


def resumable_fields(config_cls) -> set[str]:
    """The fields ``--resume`` may change."""
    return {name for name, (spec, _) in settings_of(config_cls).items() if spec.resumable}


def training_length(cfg) -> int:
    """How long ``cfg``'s run trains, in its own unit (``type(cfg).LENGTH``: steps or epochs)."""
    return getattr(cfg, type(cfg).LENGTH)


def describe_range(spec: Setting, kind: type) -> str:
    """'a positive integer', 'a number between 0 and 1', ... for messages and flag errors."""
    noun = "an integer" if kind is int else "a number"
    if kind is int and spec.minimum == 0 and spec.maximum is None:
        return "a non-negative integer"
    if kind is int and spec.minimum == 1 and spec.maximum is None:
        return "a positive integer"
    if kind is float and spec.minimum == 0 and spec.maximum is None:
        return "a positive number" if spec.above else "zero (off) or a positive number"
    if spec.minimum is not None and spec.maximum is not None:
        if spec.above or spec.below:
            return (
                f"{noun} {'>' if spec.above else '>='} {spec.minimum:g} and "
                f"{'<' if spec.below else '<='} {spec.maximum:g}"
            )
        return f"{noun} between {spec.minimum:g} and {spec.maximum:g}"
    if spec.minimum is not None:
        return f"{noun} {'>' if spec.above else '>='} {spec.minimum:g}"
    return f"{'an integer' if kind is int else 'a finite number'}"


def in_range(spec: Setting, value) -> bool:
    if spec.minimum is not None and not (value > spec.minimum if spec.above else value >= spec.minimum):
        return False
    if spec.maximum is not None and not (value < spec.maximum if spec.below else value <= spec.maximum):
        return False
    return True


def check_settings(cfg) -> None:
    """Each field's own rule (type, range, choices), from its ``Setting``; then the device."""
    for name, (spec, default) in settings_of(type(cfg)).items():
        value = getattr(cfg, name)
        if spec.choices is not None:
            if value not in spec.choices:
                raise UserError(f"--{flag(name)} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
        elif isinstance(default, bool) or isinstance(default, str):
            if type(value) is not type(default):
                raise UserError(
                    f"--{flag(name)} must be {'true or false' if isinstance(default, bool) else 'text'}, got {value!r}"
                )
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool) or not in_range(spec, value):
                raise UserError(f"--{flag(name)} must be {describe_range(spec, int)}, got {value!r}")
        elif isinstance(default, float):
            if not _is_number(value) or not math.isfinite(value) or not in_range(spec, value):
                raise UserError(f"--{flag(name)} must be {describe_range(spec, float)}, got {value!r}")
    check_device(cfg)


def check_device(cfg) -> None:
    """``device`` names where a backend that takes one computes; the others choose for themselves."""
    device = cfg.device
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    backend = backend_info(cfg.backend)
    if device.startswith("cuda") and not backend.takes_device:
        takers = " or ".join(f"--backend {name}" for name in with_devices())
        raise UserError(f"--device {device} is for {takers}; {backend.device_note}")


@dataclass(frozen=True)
class Preset:
    """Named charlm settings a run starts from (flags given beside it win)."""

    about: str  # what it is, for --help
    settings: dict
    measured: str = ""  # for a budget preset: its step count and what it did in the budget, where
    budget_seconds: int = 0  # for a budget preset: the training time its step count was sized for

    @property
    def assumed_chars_per_s(self) -> float:
        """The training speed a budget preset's step count assumes (0 for other presets)."""
        s = self.settings
        return s["max_steps"] * s["batch_size"] * s["seq_len"] / self.budget_seconds if self.budget_seconds else 0.0

    def assumption(self) -> str:
        """One line: the step count, the speed it assumes, and what to do on a slower machine."""
        if not self.budget_seconds:
            return ""
        return (
            f"{self.settings['max_steps']:,} steps, which fit {self.budget_seconds} s at "
            f"{self.assumed_chars_per_s:,.0f} chars/s; on a slower machine add --fit-budget "
            f"--max-minutes {self.budget_seconds / 60:g} to fit the steps to the clock"
        )


# A budget preset fixes its step count rather than a time limit: a cosine schedule needs its
# horizon, and --resume is exact only when the horizon does not move.  The counts are what one
# 2-core x86_64 machine did in the budget (benchmarks/frontier.py); on another machine a preset
# trains for the same steps, in more or less time.
PRESETS = {
    # The from-scratch exercise (Karpathy's min-char-rnn): batch 1, loss summed over
    # 25 steps, Adagrad 0.1, element-wise clip at 5, weights N(0,1)*0.01, float64.
    "min-char-rnn": Preset(
        "the classic from-scratch exercise exactly (H=100, T=25, B=1, Adagrad 0.1, clip 5, summed loss)",
        dict(
            cell="rnn",
            hidden_size=100,
            layers=1,
            seq_len=25,
            batch_size=1,
            optimizer="adagrad",
            lr=0.1,
            clip="value",
            clip_value=5.0,
            loss_reduction="sum",
            init="classic",
            dtype="float64",
            schedule="constant",
            warmup_steps=0,
        ),
    ),
    **{
        name: Preset(
            about,
            settings,
            f"{settings['max_steps']:,} steps, about {seconds} s of training on a 2-core "
            f"x86_64 machine; tinyshakespeare validation {val}",
            seconds,
        )
        for name, about, seconds, val, settings in (
            (
                "fast-60s",
                "the best classic-cell run found for one minute on 2 cores",
                60,
                "1.563 nats/char",
                dict(
                    cell="gru_reset_after",
                    hidden_size=256,
                    layers=1,
                    embed_size=64,
                    dropout=0.0,
                    batch_size=32,
                    seq_len=64,
                    lr=4e-3,
                    ema_decay=0.99,
                    schedule="cosine",
                    max_steps=1030,
                ),
            ),
            (
                "best-300s",
                "the best classic-cell run found for five minutes on 2 cores",
                300,
                "1.452 nats/char with numba's kernels (seed 0; 1.448 seed 1), 1.449 / 1.447 without",
                dict(
                    cell="gru_reset_after",
                    hidden_size=256,
                    layers=1,
                    embed_size=128,
                    dropout=0.05,
                    input_dropout=False,
                    batch_size=64,
                    seq_len=64,
                    lr=1.01e-2,
                    adam_beta2=0.99,
                    weight_decay=0.25,
                    warmup_steps=150,
                    ema_decay=0.995,
                    schedule="cosine",
                    max_steps=3400,
                ),
            ),
            (
                "fast-60s-parallel",
                "the best parallel-scan-cell run found for one minute",
                60,
                "1.862 nats/char after 740 steps, which took 51 s (the count since scaled to the budget)",
                dict(
                    cell="mingru",
                    hidden_size=384,
                    layers=2,
                    embed_size=64,
                    dropout=0.0,
                    batch_size=32,
                    seq_len=64,
                    lr=3e-3,
                    schedule="cosine",
                    max_steps=870,
                ),
            ),
            (
                "best-300s-parallel",
                "the best parallel-scan-cell run found for five minutes",
                300,
                "1.663 nats/char after 3,700 steps, which took 207 s (the count since scaled to the budget)",
                dict(
                    cell="mingru",
                    hidden_size=384,
                    layers=2,
                    embed_size=64,
                    dropout=0.0,
                    batch_size=32,
                    seq_len=64,
                    lr=3e-3,
                    schedule="cosine",
                    max_steps=5350,
                ),
            ),
        )
    },
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
    for name in unknown:
        if name in getattr(cls, "REFUSED", {}):
            raise UserError(f"{where}: {name}: {cls.REFUSED[name]}")
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a quoted string"}.get(
                type(default), type(default).__name__
            )
            raise UserError(f"{where}: {name} (--{flag(name)}) must be {wanted}, got {value!r}")
        values[name] = value
    return dataclasses.replace(defaults, **values)
