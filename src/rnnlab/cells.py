"""Backend-free model description: the cell table, parameter names, shapes and seeded init.

``CELL_TABLE`` has one row per cell (gate order, carry parts, the parameters of a layer,
the PyTorch module it maps to, the export formats that hold it); everything outside the
backends' step functions reads the row instead of comparing cell names.

Every backend reads and writes parameters as a flat ``dict[str, np.ndarray]``
whose names and shapes come from this module, so a checkpoint written by one
backend loads in any other.

Row-vector convention: ``x @ W`` with ``W`` of shape (in, G*H) and ``h @ U``
with ``U`` of shape (H, G*H), where G is the number of gates of the cell. Gate
blocks are fused along the last axis in a fixed order:

=================  =====  ===========================================  =========================
cell               G      gate order along the G*H axis                  PyTorch / Keras mapping
=================  =====  ===========================================  =========================
rnn                1      (tanh)                                         nn.RNN(nonlinearity=tanh)
gru                3      r, z, n   (Cho 2014: reset *before* U_n)       none built in
gru_reset_after    3      r, z, n   (reset applied *after* h @ U_n)      nn.GRU; Keras reset_after
lstm               4      i, f, g, o                                     nn.LSTM (same order)
mingru             2      z, h~     (no U: gates from x_t only)          none (a scan)
minlstm            3      f, i, h~  (no U)                               none (a scan)
=================  =====  ===========================================  =========================

The parallel-scan cells (Feng et al. 2024, "Were RNNs All We Needed?") read x_t only, so
their state is a linear recurrence h_t = a_t * h_{t-1} + b_t: minGRU a = 1 - z, b = z * h~;
minLSTM a = f / (f + i), b = i / (f + i) * h~.  ``mingru``/``minlstm`` pass the candidate
through the paper's g (x + 0.5 for x >= 0, sigmoid(x) below); ``*_linear`` leave it linear.

PyTorch stores ``weight_ih_l{k}`` as (G*H, in) with the same gate order, so
``W = weight_ih.T`` and ``U = weight_hh.T``.  ``gru_reset_after`` keeps the
recurrent bias separate (``b_U``, PyTorch's ``bias_hh``) because it sits
inside the reset product; the other cells need only one bias.

Parameter names, per layer ``k`` (0-based) and for the readout::

    embed.W          (input_size, E)  embedding only: ids -> rows of embed.W (E = embed_size)
    input.W          (input_size, H)  dense_relu only: x -> relu(x @ input.W + input.b)
    input.b          (H,)             dense_relu only
    layers.{k}.W     (in_k, G*H)   in_0 = input_size (vocabulary size for one-hot), E for an
                                   embedding, H for dense_relu; in_k = H above
    layers.{k}.U     (H, G*H)
    layers.{k}.b     (G*H,)
    layers.{k}.b_U   (G*H,)        gru_reset_after only
    layers.{k}.norm  (in_k,)       norm "rms" only: the gain of the RMS norm of layer k's input
                                   (none on raw input: one-hot or dense)
    readout.norm     (H,)          norm "rms" only: the gain of the RMS norm before the readout
    readout.W        (H, output_size)   absent with tie_weights: the readout is embed.W.T
    readout.b        (output_size,)
    decoder.position (decode_steps, H - H//2)    segment decoders only: one learned row per output
    decoder.channel  (decode_channels, H//2)    segment, one per channel (concatenated: layer 0's input)

With one-hot input, ``layers.0.W`` doubles as an embedding table: the
backends gather its rows instead of multiplying by one-hot vectors.  An
``embedding`` input puts a learned table of E-dimensional rows in front, which
dropout can act on (a one-hot row is not dropped) and the readout can share
(``tie_weights``, Press & Wolf 2017) when E = H.

A *segment decoder* (``decode_steps`` M > 0, SegRNN: Lin et al. 2023, arXiv:2308.11200) reads
``[B, N, F]`` inputs (a window cut into N segments of F values, each embedded by the Dense-ReLU
input stage) and returns ``[B, M, O]``: after the N encoder steps every layer's carry is the
start of M decoder rows, each fed one step of ``decoder.position[m]`` joined to
``decoder.channel[r % decode_channels]`` (row r of a batch is channel r mod C: rows are
window-major), then read out to O values.  All M rows run as one batched step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Cell:
    """One row of the cell table: everything outside a backend's step functions knows of a cell."""

    name: str
    gate_order: tuple[str, ...]  # gate blocks along the G*H axis of W, U and b
    carry: tuple[str, ...]  # the parts of the state each layer carries: ("h",) or ("h", "c")
    layer_params: tuple[str, ...]  # per layer: W (in, G*H), U (H, G*H), b and b_U (G*H,); no U = no recurrence
    torch_module: str | None  # the PyTorch module with the same equations and gate order
    no_torch_reason: str = ""  # why there is none
    exports: tuple[str, ...] = ()  # interchange formats that can hold it
    bias_init: tuple[tuple[str, float], ...] = ()  # gate -> initial bias under the default init
    onnx_op: str | None = None  # ONNX's own recurrent operator with the same equations, if any
    onnx_gate_order: tuple[int, ...] = ()  # that operator's gate blocks, as indices into gate_order
    onnx_attrs: tuple[tuple[str, int], ...] = ()  # and its attributes (GRU: where the reset gate acts)
    # Parallel-scan cells: how the gates make the recurrence h_t = a_t h_(t-1) + b_t ("update": minGRU,
    # a = 1 - z, b = z h~; "forget-input": minLSTM, a = f / (f + i), b = i / (f + i) h~), and whether the
    # candidate h~ is left linear instead of passed through the paper's g.
    scan: str | None = None
    linear_candidate: bool = False

    @property
    def gates(self) -> int:
        return len(self.gate_order)

    @property
    def parallel(self) -> bool:
        """Whether the cell is a parallel scan: gates from x_t only, trained over the whole sequence at once."""
        return self.scan is not None


PARALLEL = (("mingru", ("z", "h"), "update"), ("minlstm", ("f", "i", "h"), "forget-input"))
PARALLEL_REASON = (
    "no PyTorch module has its equations (the gates read x_t only and the state is a linear "
    "recurrence); rnnlab computes it as a scan"
)

CELL_TABLE = {
    c.name: c
    for c in (
        Cell(
            "rnn",
            ("h",),
            ("h",),
            ("W", "U", "b"),
            "nn.RNN",
            exports=("min-char-rnn", "torch"),
            onnx_op="RNN",
            onnx_gate_order=(0,),
        ),
        # ONNX's GRU orders its blocks z r h, its LSTM i o f c.
        Cell(
            "gru",
            ("r", "z", "n"),
            ("h",),
            ("W", "U", "b"),
            None,
            "Cho's GRU applies the reset gate before U_n; PyTorch's nn.GRU applies it after (use gru_reset_after)",
            onnx_op="GRU",
            onnx_gate_order=(1, 0, 2),
            onnx_attrs=(("linear_before_reset", 0),),
        ),
        Cell(
            "gru_reset_after",
            ("r", "z", "n"),
            ("h",),
            ("W", "U", "b", "b_U"),
            "nn.GRU",
            exports=("torch",),
            onnx_op="GRU",
            onnx_gate_order=(1, 0, 2),
            onnx_attrs=(("linear_before_reset", 1),),
        ),
        Cell(
            "lstm",
            ("i", "f", "g", "o"),
            ("h", "c"),
            ("W", "U", "b"),
            "nn.LSTM",
            exports=("torch",),
            bias_init=(("f", 1.0),),  # forget gate open at the start
            onnx_op="LSTM",
            onnx_gate_order=(0, 3, 1, 2),
        ),
        # Parallel-scan cells (Feng et al. 2024): gates from x_t only, so no U; "_linear" = no g on the candidate.
        *(
            Cell(name, gates, ("h",), ("W", "b"), None, PARALLEL_REASON, scan=scan, linear_candidate=linear)
            for base, gates, scan in PARALLEL
            for name, linear in ((base, False), (f"{base}_linear", True))
        ),
    )
}
CELLS = tuple(CELL_TABLE)
GATES = {name: c.gates for name, c in CELL_TABLE.items()}


def cell_info(name: str) -> Cell:
    """The table row of cell ``name``."""
    if name not in CELL_TABLE:
        raise UserError(f"unknown cell {name!r}; choose one of {', '.join(CELLS)}")
    return CELL_TABLE[name]


def cell_of_torch_module(module: str) -> str:
    """The cell the table maps a PyTorch module (``nn.GRU``) to."""
    for c in CELL_TABLE.values():
        if c.torch_module == module:
            return c.name
    raise UserError(f"no rnnlab cell maps to {module}")


INPUT_KINDS = ("onehot", "embedding", "dense", "dense_relu")
ID_INPUTS = ("onehot", "embedding")  # inputs that are token ids [B, T], not values [B, T, F]
READOUTS = ("linear",)
INITS = ("default", "classic")
NORMS = ("none", "rms")
RMS_EPS = 1e-6  # inside the square root of every RMS norm, on every backend


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a recurrent model: cell, sizes, how inputs enter and outputs leave."""

    cell: str
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    input_kind: str = "onehot"
    readout: str = "linear"
    embed_size: int = 0  # rows of the embedding table (input_kind "embedding" only)
    tie_weights: bool = False  # the readout is the embedding table transposed (needs E = H)
    residual: bool = False  # a layer whose input is H wide adds its input to its output
    norm: str = "none"  # "rms": RMS-normalise what each layer (and the readout) reads
    decode_steps: int = 0  # segment decoder: output segments M (0: a sequence model, one output per step)
    decode_channels: int = 0  # segment decoder: channels with an embedding (rows r -> channel r mod C)

    def __post_init__(self):
        if self.cell not in GATES:
            raise UserError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.input_kind not in INPUT_KINDS:
            raise UserError(f"unknown input kind {self.input_kind!r}; choose one of {', '.join(INPUT_KINDS)}")
        if self.readout not in READOUTS:
            raise UserError(f"unknown readout {self.readout!r}; choose one of {', '.join(READOUTS)}")
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.input_kind == "embedding":
            if not isinstance(self.embed_size, (int, np.integer)) or self.embed_size < 1:
                raise UserError(f"an embedding input needs --embed-size of at least 1, got {self.embed_size!r}")
        elif self.embed_size:
            raise UserError(
                f"--embed-size {self.embed_size}: a {self.input_kind} input has no embedding table "
                "(it reads values, not ids); leave --embed-size at 0"
            )
        if self.residual and not any(has_residual(self, k) for k in range(min(int(self.num_layers), 2))):
            raise UserError(
                f"--residual adds a layer's input to its output where both are {self.hidden_size} wide, "
                f"and no layer here has such an input (one layer over {self.input_kind} input of width "
                f"{layer_input_size(self, 0)}); use --layers 2 or more, or drop --residual"
            )
        self._check_decoder()
        if self.tie_weights:
            if self.input_kind != "embedding":
                raise UserError("--tie-weights shares the embedding table with the readout: it needs --embed-size")
            if self.embed_size != self.hidden_size or self.input_size != self.output_size:
                raise UserError(
                    f"--tie-weights needs --embed-size equal to --hidden-size (the readout reads the "
                    f"{self.hidden_size}-wide hidden state), got --embed-size {self.embed_size}; set "
                    f"--embed-size {self.hidden_size} or drop --tie-weights"
                )

    def _check_decoder(self) -> None:
        steps, channels = self.decode_steps, self.decode_channels
        for name, value in (("decode_steps", steps), ("decode_channels", channels)):
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise UserError(f"{name} must be a non-negative integer, got {value!r}")
        if bool(steps) != bool(channels):
            raise UserError(f"a segment decoder needs decode_steps and decode_channels, got {steps} and {channels}")
        if steps and self.input_kind != "dense_relu":
            raise UserError(f"a segment decoder embeds segments with a dense_relu input, not {self.input_kind}")
        if steps and self.hidden_size < 2:
            raise UserError("a segment decoder needs --hidden-size of at least 2 (position and channel halves)")

    @property
    def decodes(self) -> bool:
        """Whether this is a segment decoder (outputs ``[B, decode_steps, O]``, not one per input step)."""
        return self.decode_steps > 0

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    @property
    def cell_info(self) -> Cell:
        return CELL_TABLE[self.cell]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every parameter of ``spec``, in a fixed order."""
    H, G = spec.hidden_size, spec.gates
    shapes: dict[str, tuple[int, ...]] = {}
    if spec.input_kind == "embedding":
        shapes["embed.W"] = (spec.input_size, spec.embed_size)
    if spec.input_kind == "dense_relu":
        shapes["input.W"] = (spec.input_size, H)
        shapes["input.b"] = (H,)
    for k in range(spec.num_layers):
        per_param = {"W": (layer_input_size(spec, k), G * H), "U": (H, G * H), "b": (G * H,), "b_U": (G * H,)}
        for name in spec.cell_info.layer_params:
            shapes[f"layers.{k}.{name}"] = per_param[name]
        if has_norm(spec, k):
            shapes[f"layers.{k}.norm"] = (layer_input_size(spec, k),)
    if spec.norm != "none":
        shapes["readout.norm"] = (H,)
    if not spec.tie_weights:
        shapes["readout.W"] = (H, spec.output_size)
    shapes["readout.b"] = (spec.output_size,)
    if spec.decodes:
        position, channel = decoder_widths(spec)
        shapes["decoder.position"] = (spec.decode_steps, position)
        shapes["decoder.channel"] = (spec.decode_channels, channel)
    return shapes


def decoder_widths(spec: ModelSpec) -> tuple[int, int]:
    """Widths of a segment decoder's position and channel rows; together layer 0's input width."""
    width = layer_input_size(spec, 0)
    return width - width // 2, width // 2


def has_norm(spec: ModelSpec, k: int) -> bool:
    """Whether layer ``k`` normalises what it reads: only what the model computed (an embedding, a
    dense layer, a hidden state), never raw inputs (a one-hot row, or values whose scale is data)."""
    return spec.norm != "none" and not (k == 0 and spec.input_kind in ("onehot", "dense"))


def has_residual(spec: ModelSpec, k: int) -> bool:
    """Whether layer ``k`` adds its input to its output: only where both are H wide and the input
    is features (layer 0 over one-hot ids or a narrower embedding has none)."""
    return (
        spec.residual and layer_input_size(spec, k) == spec.hidden_size and not (k == 0 and spec.input_kind == "onehot")
    )


def layer_input_size(spec: ModelSpec, k: int) -> int:
    """Width of what recurrent layer ``k`` reads: the input (or its embedding, or its dense layer)
    for layer 0, the hidden state of the layer below for the others."""
    if k > 0 or spec.input_kind == "dense_relu":
        return spec.hidden_size
    return spec.embed_size if spec.input_kind == "embedding" else spec.input_size


def readout_weight(params: dict, spec: ModelSpec):
    """The readout matrix (H, O): ``readout.W``, or with tied weights the embedding table transposed."""
    return params["embed.W"].T if spec.tie_weights else params["readout.W"]


def params_dtype(params: dict):
    """The floating-point type of a parameter set (every parameter has the same)."""
    return np.asarray(params["readout.b"]).dtype


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))  # sign fix makes the draw uniform over O(n)


def init_params(
    spec: ModelSpec, rng: np.random.Generator, init: str = "default", dtype=np.float32
) -> dict[str, np.ndarray]:
    """Seeded initial parameters for ``spec``.

    ``default``: one-hot embedding rows N(0, 0.5^2) (the scale of an embedding
    fed through a dense layer; raw one-hot input through a 1/sqrt(in) init
    starts far too small), dense input weights N(0, 1/fan_in), orthogonal
    recurrent blocks, zero biases except LSTM forget gates at 1, readout
    N(0, 1/H).
    ``classic``: every weight N(0, 1) * 0.01 and zero biases, as in the
    from-scratch min-char-rnn exercise.
    """
    if init not in INITS:
        raise UserError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    H, G = spec.hidden_size, spec.gates
    params: dict[str, np.ndarray] = {}
    for name, shape in param_shapes(spec).items():
        is_bias = name.endswith(".b") or name.endswith(".b_U")  # includes input.b
        if name.endswith(".norm"):
            value = np.ones(shape)
        elif is_bias:
            value = np.zeros(shape)
            if init == "default" and name.startswith("layers.") and name.endswith(".b"):
                order = spec.cell_info.gate_order
                for gate, bias in spec.cell_info.bias_init:
                    value[order.index(gate) * H : (order.index(gate) + 1) * H] = bias
        elif init == "classic":
            value = rng.standard_normal(shape) * 0.01
        elif name.endswith(".U"):
            value = np.concatenate([_orthogonal(rng, H) for _ in range(G)], axis=1)
        elif name == "layers.0.W" and spec.input_kind == "onehot":
            value = rng.standard_normal(shape) * 0.5
        elif name == "embed.W":  # tied: it is also the readout, whose init is N(0, 1/H)
            value = rng.standard_normal(shape) / (np.sqrt(shape[1]) if spec.tie_weights else 1.0)
        elif name.startswith("decoder."):  # learned rows the size of the embedded segments
            value = rng.standard_normal(shape)
        elif name == "input.W":  # He init: the ReLU halves the variance
            value = rng.standard_normal(shape) * np.sqrt(2.0 / shape[0])
        else:
            value = rng.standard_normal(shape) / np.sqrt(shape[0])
        params[name] = value.astype(dtype)
    return params


def check_params(spec: ModelSpec, params: dict[str, np.ndarray], where: str = "parameters") -> None:
    """Raise ``UserError`` unless ``params`` has exactly the names and shapes of ``spec``."""
    expected = param_shapes(spec)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise UserError(
            f"{where} do not match a {spec.cell} model: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise UserError(f"{where}: {name} has shape {tuple(params[name].shape)}, expected {shape}")


def count_params(spec: ModelSpec) -> int:
    """Number of parameters of ``spec``, by formula (exact Python ints: no array is built, so an
    absurd size is counted, not allocated)."""
    H, G = int(spec.hidden_size), spec.gates
    layer = spec.cell_info.layer_params
    total = (int(spec.input_size) * H + H) if spec.input_kind == "dense_relu" else 0
    if spec.input_kind == "embedding":
        total += int(spec.input_size) * int(spec.embed_size)
    biases = G * H * sum(name in layer for name in ("b", "b_U"))
    recurrent = H * G * H if "U" in layer else 0
    total += int(layer_input_size(spec, 0)) * G * H + recurrent + biases
    total += (int(spec.num_layers) - 1) * (H * G * H + recurrent + biases)
    readout = 0 if spec.tie_weights else H * int(spec.output_size)
    norms = 0
    if spec.norm != "none":  # layers above the first, the readout, and the first unless one-hot
        norms = int(spec.num_layers) * H + (int(layer_input_size(spec, 0)) - H if has_norm(spec, 0) else -H) + H
    position, channel = decoder_widths(spec)
    decoder = int(spec.decode_steps) * position + int(spec.decode_channels) * channel
    return total + readout + int(spec.output_size) + norms + decoder


# Training holds the parameters, their gradients and up to two optimizer moments: four copies.
TRAINING_COPIES = 4


def check_fits(spec: ModelSpec, dtype, where: str = "the model") -> None:
    """Refuse, before anything is allocated, a model whose training state cannot fit in memory."""
    from .memory import gib, memory_bytes

    count = count_params(spec)
    need = count * np.dtype(dtype).itemsize * TRAINING_COPIES
    have = memory_bytes()
    if need > have:
        raise UserError(
            f"{where} has {count:,} parameters: training it needs about {gib(need)} for parameters, "
            f"gradients and optimizer state, but this machine has {gib(have)}; lower --hidden-size "
            "or --layers"
        )
