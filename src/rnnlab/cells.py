"""Backend-free model description: parameter names, shapes and seeded init.

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
=================  =====  ===========================================  =========================

PyTorch stores ``weight_ih_l{k}`` as (G*H, in) with the same gate order, so
``W = weight_ih.T`` and ``U = weight_hh.T``.  ``gru_reset_after`` keeps the
recurrent bias separate (``b_U``, PyTorch's ``bias_hh``) because it sits
inside the reset product; the other cells need only one bias.

Parameter names, per layer ``k`` (0-based) and for the readout::

    input.W          (input_size, H)  dense_relu only: x -> relu(x @ input.W + input.b)
    input.b          (H,)             dense_relu only
    layers.{k}.W     (in_k, G*H)   in_0 = input_size (vocabulary size for one-hot), H for dense_relu
    layers.{k}.U     (H, G*H)
    layers.{k}.b     (G*H,)
    layers.{k}.b_U   (G*H,)        gru_reset_after only
    readout.W        (H, output_size)
    readout.b        (output_size,)

With one-hot input, ``layers.0.W`` doubles as an embedding table: the
backends gather its rows instead of multiplying by one-hot vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserError

GATES = {"rnn": 1, "gru": 3, "gru_reset_after": 3, "lstm": 4}
CELLS = tuple(GATES)
INPUT_KINDS = ("onehot", "dense", "dense_relu")
READOUTS = ("linear",)
INITS = ("default", "classic")


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

    @property
    def gates(self) -> int:
        return GATES[self.cell]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every parameter of ``spec``, in a fixed order."""
    H, G = spec.hidden_size, spec.gates
    shapes: dict[str, tuple[int, ...]] = {}
    if spec.input_kind == "dense_relu":
        shapes["input.W"] = (spec.input_size, H)
        shapes["input.b"] = (H,)
    for k in range(spec.num_layers):
        fan_in = spec.input_size if k == 0 and spec.input_kind != "dense_relu" else H
        shapes[f"layers.{k}.W"] = (fan_in, G * H)
        shapes[f"layers.{k}.U"] = (H, G * H)
        shapes[f"layers.{k}.b"] = (G * H,)
        if spec.cell == "gru_reset_after":
            shapes[f"layers.{k}.b_U"] = (G * H,)
    shapes["readout.W"] = (H, spec.output_size)
    shapes["readout.b"] = (spec.output_size,)
    return shapes


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))  # sign fix makes the draw uniform over O(n)


def init_params(spec: ModelSpec, rng: np.random.Generator, init: str = "default",
                dtype=np.float32) -> dict[str, np.ndarray]:
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
        if is_bias:
            value = np.zeros(shape)
            if spec.cell == "lstm" and init == "default" and name.endswith(".b"):
                value[H:2 * H] = 1.0  # forget gate open at the start
        elif init == "classic":
            value = rng.standard_normal(shape) * 0.01
        elif name.endswith(".U"):
            value = np.concatenate([_orthogonal(rng, H) for _ in range(G)], axis=1)
        elif name == "layers.0.W" and spec.input_kind == "onehot":
            value = rng.standard_normal(shape) * 0.5
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
        raise UserError(f"{where} do not match a {spec.cell} model: missing {missing or 'none'}, "
                        f"unexpected {extra or 'none'}")
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise UserError(f"{where}: {name} has shape {tuple(params[name].shape)}, expected {shape}")


def count_params(spec: ModelSpec) -> int:
    """Number of parameters of ``spec``, by formula (exact Python ints: no array is built, so an
    absurd size is counted, not allocated)."""
    H, G = int(spec.hidden_size), spec.gates
    total = (int(spec.input_size) * H + H) if spec.input_kind == "dense_relu" else 0
    first_in = H if spec.input_kind == "dense_relu" else int(spec.input_size)
    per_layer_biases = G * H * (2 if spec.cell == "gru_reset_after" else 1)
    total += (first_in + H) * G * H + per_layer_biases
    total += (int(spec.num_layers) - 1) * (2 * H * G * H + per_layer_biases)
    return total + H * int(spec.output_size) + int(spec.output_size)


# Training holds the parameters, their gradients and up to two optimizer moments: four copies.
TRAINING_COPIES = 4


def check_fits(spec: ModelSpec, dtype, where: str = "the model") -> None:
    """Refuse, before anything is allocated, a model whose training state cannot fit in memory."""
    from .memory import gib, memory_bytes

    count = count_params(spec)
    need = count * np.dtype(dtype).itemsize * TRAINING_COPIES
    have = memory_bytes()
    if need > have:
        raise UserError(f"{where} has {count:,} parameters: training it needs about {gib(need)} for parameters, "
                        f"gradients and optimizer state, but this machine has {gib(have)}; lower --hidden-size "
                        "or --layers")
