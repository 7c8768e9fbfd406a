"""``rnnlab export --format onnx``: any run's model as an ONNX graph, built with ``onnx.helper``.

The graph is written directly rather than traced from a framework, so it is the same for a
run trained on any backend, its time axis stays dynamic, and each piece is a standard
operator (opset ``OPSET``):

* classic cells use ONNX's own recurrent operators: ``rnn`` is ``RNN`` (tanh), ``gru`` is
  ``GRU`` with ``linear_before_reset=0`` (Cho's reset before U), ``gru_reset_after`` is
  ``GRU`` with ``linear_before_reset=1`` (PyTorch's), ``lstm`` is ``LSTM``; rnnlab's gate
  blocks are reordered to ONNX's (z r h; i o f c) and its row-vector matrices transposed;
* the parallel-scan cells compute their gates for the whole sequence with one ``MatMul``
  and the recurrence h_t = a_t h_{t-1} + b_t with a ``Scan``;
* embedding tables and one-hot inputs are ``Gather``s, RMS norm and residual adds plain
  arithmetic, dropout absent (it is off at inference).

Inputs and outputs (batch-first; B and T dynamic): the task's inputs and outputs, which its
definition builds around the core (``TaskDefinition.onnx``: ``ids`` int64 ``[B, T]`` for a
language model, ``noisy`` ``[B, T, 1]`` for the denoiser, raw ``prices`` ``[B, L]`` in and the
next price out for the forecaster, scaling inside), with ``state_h`` ``[layers, B, H]`` (and
``state_c`` for LSTM) in and ``state_h_out`` (``state_c_out``) out, so a stream can be fed in
pieces.  The run's task, settings and spec (and what the task adds) are in the model's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cells import RMS_EPS, Cell, ModelSpec, has_norm, has_residual, readout_weight
from .errors import UserError

OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise UserError("--format onnx needs the onnx package: pip install 'rnnlab[onnx]'") from exc
    return onnx


class _Graph:
    """Nodes and constants of one graph, with fresh names."""

    def __init__(self, dtype):
        onnx = _onnx()
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.dtype = np.dtype(dtype)
        self.elem = onnx.helper.np_dtype_to_tensor_dtype(self.dtype)
        self.int64 = onnx.TensorProto.INT64
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, array, base: str = "const", dtype=None) -> str:
        name = self.name(base)
        value = np.asarray(array, dtype=dtype or self.dtype)
        self.initializers.append(self.numpy_helper.from_array(value, name))
        return name

    def ints(self, values, base: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), base, np.int64)

    def op(self, op_type: str, inputs: list, outputs: int | list = 1, **attrs):
        names = [self.name(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        # Every node named: onnxruntime 1.18-1.20 fuses unnamed nodes into duplicate names and refuses the graph.
        node_name = self.name(f"{op_type.lower()}_node")
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=node_name, **attrs))
        return names[0] if len(names) == 1 else names


# --------------------------------------------------------------------------- the model in model units


def _rms_norm(g: _Graph, x: str, gain: np.ndarray) -> str:
    mean_square = g.op("ReduceMean", [g.op("Mul", [x, x])], axes=[-1], keepdims=1)
    rms = g.op("Sqrt", [g.op("Add", [mean_square, g.const(RMS_EPS)])])
    return g.op("Mul", [g.op("Div", [x, rms]), g.const(gain, "norm_gain")])


def _gate_blocks(matrix: np.ndarray, cell: Cell, H: int) -> np.ndarray:
    """The last axis's G blocks of H, in ONNX's gate order (the table's ``onnx_gate_order``)."""
    blocks = [matrix[..., i * H : (i + 1) * H] for i in cell.onnx_gate_order]
    return np.concatenate(blocks, axis=-1)


def _classic_layer(g: _Graph, spec: ModelSpec, p: dict, x: str, h0: str, c0: str | None):
    """One classic layer on time-major ``x`` [T, B, F]: (outputs [T, B, H], h_T [1, B, H], c_T)."""
    H, cell = spec.hidden_size, spec.cell_info
    W = g.const(_gate_blocks(p["W"], cell, H).T[None], "W")  # [1, G*H, F]
    R = g.const(_gate_blocks(p["U"], cell, H).T[None], "R")  # [1, G*H, H]
    b_u = p.get("b_U", np.zeros_like(p["b"]))
    B = g.const(np.concatenate([_gate_blocks(p["b"], cell, H), _gate_blocks(b_u, cell, H)])[None], "B")
    carries_c = len(cell.carry) > 1  # LSTM: a cell state in and out
    inputs = [x, W, R, B, "", h0] + ([c0] if carries_c else [])
    outs = g.op(cell.onnx_op, inputs, 3 if carries_c else 2, hidden_size=H, **dict(cell.onnx_attrs))
    y = g.op("Squeeze", [outs[0], g.ints([1])])  # [T, 1, B, H] -> [T, B, H]
    return y, outs[1], (outs[2] if carries_c else None)


def _scan_body(g: _Graph):
    """The body of the linear recurrence: (h, a_t, b_t) -> (h', h')."""
    helper = g.helper
    nodes = [
        helper.make_node("Mul", ["a_t", "h_prev"], ["ah"]),
        helper.make_node("Add", ["ah", "b_t"], ["h_next"]),
        helper.make_node("Identity", ["h_next"], ["h_out"]),
    ]
    value = [helper.make_tensor_value_info(n, g.elem, None) for n in ("h_prev", "a_t", "b_t")]
    outs = [helper.make_tensor_value_info(n, g.elem, None) for n in ("h_next", "h_out")]
    return helper.make_graph(nodes, "linear_recurrence", value, outs)


def _candidate(g: _Graph, x: str, cell: Cell) -> str:
    if cell.linear_candidate:
        return x
    # g(x) = max(x, 0) + sigmoid(min(x, 0)): x + 1/2 above zero, sigmoid(x) below (as every backend).
    return g.op("Add", [g.op("Relu", [x]), g.op("Sigmoid", [g.op("Min", [x, g.const(0.0)])])])


def _parallel_layer(g: _Graph, spec: ModelSpec, p: dict, x: str, h0: str):
    """A parallel-scan layer on time-major ``x``: gates in one MatMul, the recurrence in a Scan."""
    H, cell = spec.hidden_size, spec.cell_info
    A = g.op("Add", [g.op("MatMul", [x, g.const(p["W"], "W")]), g.const(p["b"], "b")])
    if cell.scan == "update":  # minGRU: a = 1 - z, b = z h~
        pre_z, pre_h = g.op("Split", [A, g.ints([H, H])], 2, axis=2)
        z = g.op("Sigmoid", [pre_z])
        a, b = g.op("Sub", [g.const(1.0), z]), g.op("Mul", [z, _candidate(g, pre_h, cell)])
    else:
        pre_f, pre_i, pre_h = g.op("Split", [A, g.ints([H, H, H])], 3, axis=2)
        f, i = g.op("Sigmoid", [pre_f]), g.op("Sigmoid", [pre_i])
        total = g.op("Add", [f, i])
        a = g.op("Div", [f, total])
        b = g.op("Mul", [g.op("Div", [i, total]), _candidate(g, pre_h, cell)])
    h_start = g.op("Squeeze", [h0, g.ints([0])])  # [1, B, H] -> [B, H]
    h_last, y = g.op("Scan", [h_start, a, b], 2, num_scan_inputs=2, body=_scan_body(g))
    return y, g.op("Unsqueeze", [h_last, g.ints([0])]), None


def _stack(g: _Graph, spec: ModelSpec, params: dict, x: str, h0s: list, c0s: list):
    """The recurrent layers on time-major ``x`` (what layer 0 reads) from per-layer starts ``[1, B, H]``:
    (top stream, last h per layer, last c per layer)."""
    last_h, last_c = [], []
    for k in range(spec.num_layers):
        p = {key[len(f"layers.{k}.") :]: v for key, v in params.items() if key.startswith(f"layers.{k}.")}
        read = _rms_norm(g, x, p["norm"]) if has_norm(spec, k) else x
        if spec.cell_info.onnx_op:
            y, h, c = _classic_layer(g, spec, p, read, h0s[k], c0s[k])
        else:
            y, h, c = _parallel_layer(g, spec, p, read, h0s[k])
        last_h.append(h)
        last_c.append(c)
        x = g.op("Add", [y, x]) if has_residual(spec, k) else y
    return x, last_h, last_c


def _decoder(g: _Graph, spec: ModelSpec, params: dict, rows: str, last_h: list, last_c: list) -> str:
    """A segment decoder's step (``rnnlab.cells``): decoder row m * B + r starts from row r's final
    carry and reads position m joined to channel r % C; returns its top stream ``[1, M * B, H]``."""
    M, C = spec.decode_steps, spec.decode_channels
    batch = g.op("Slice", [g.op("Shape", [rows]), g.ints([0]), g.ints([1])])  # [1]: B, the rows
    position, channel = params["decoder.position"], params["decoder.channel"]
    P, Q = position.shape[1], channel.shape[1]
    pos = g.op(
        "Expand", [g.const(position[:, None, :], "position"), g.op("Concat", [g.ints([M]), batch, g.ints([P])], axis=0)]
    )
    windows = g.op("Div", [batch, g.ints([C])])
    chan = g.op("Expand", [g.const(channel[None], "channel"), g.op("Concat", [windows, g.ints([C, Q])], axis=0)])
    chan = g.op("Reshape", [chan, g.ints([1, -1, Q])])  # [1, B, Q]: row r reads channel r % C
    chan = g.op("Expand", [chan, g.op("Concat", [g.ints([M]), batch, g.ints([Q])], axis=0)])
    x = g.op(
        "Concat",
        [g.op("Reshape", [pos, g.ints([1, -1, P])]), g.op("Reshape", [chan, g.ints([1, -1, Q])])],
        axis=2,
    )
    repeat = g.ints([1, M, 1])
    h0s = [g.op("Tile", [h, repeat]) for h in last_h]
    c0s = [g.op("Tile", [c, repeat]) if c else None for c in last_c]
    top, _, _ = _stack(g, spec, params, x, h0s, c0s)
    return top


def model_graph(g: _Graph, spec: ModelSpec, params: dict, inputs: str, state_h: str, state_c: str | None):
    """The model on batch-first ``inputs`` (ids [B, T] or values [B, T, F]): (outputs [B, T, O]
    ([B, M, O] for a segment decoder), state_h_out, state_c_out)."""
    params = {k: np.asarray(v, dtype=g.dtype) for k, v in params.items()}
    if spec.input_kind in ("onehot", "embedding"):
        ids = g.op("Transpose", [inputs], perm=[1, 0])  # [T, B]
        table = np.eye(spec.input_size, dtype=g.dtype) if spec.input_kind == "onehot" else params["embed.W"]
        x = g.op("Gather", [g.const(table, "table"), ids], axis=0)  # [T, B, V or E]
    else:
        x = g.op("Transpose", [inputs], perm=[1, 0, 2])
        if spec.input_kind == "dense_relu":
            x = g.op(
                "Relu", [g.op("Add", [g.op("MatMul", [x, g.const(params["input.W"])]), g.const(params["input.b"])])]
            )
    h0s, c0s = [], []
    for k in range(spec.num_layers):
        where = [g.ints([k]), g.ints([k + 1]), g.ints([0])]
        h0s.append(g.op("Slice", [state_h, *where]))  # [1, B, H]
        c0s.append(g.op("Slice", [state_c, *where]) if state_c else None)
    x, last_h, last_c = _stack(g, spec, params, x, h0s, c0s)
    if spec.decodes:
        x = _decoder(g, spec, params, inputs, last_h, last_c)
    top = _rms_norm(g, x, params["readout.norm"]) if spec.norm != "none" else x
    y = g.op(
        "Add",
        [
            g.op("MatMul", [top, g.const(readout_weight(params, spec), "readout_W")]),
            g.const(params["readout.b"], "readout_b"),
        ],
    )
    if spec.decodes:  # [1, M * B, O] -> [M, B, O], time-major as the rest
        y = g.op("Reshape", [y, g.ints([spec.decode_steps, -1, spec.output_size])])
    outputs = g.op("Transpose", [y], perm=[1, 0, 2])
    h_out = g.op("Concat", last_h, axis=0) if len(last_h) > 1 else g.op("Identity", last_h)
    c_out = None
    if state_c:
        c_out = g.op("Concat", last_c, axis=0) if len(last_c) > 1 else g.op("Identity", last_c)
    return outputs, h_out, c_out


def build(spec: ModelSpec, params: dict, meta: dict, dtype="float32", extras: dict | None = None):
    """The ``onnx.ModelProto`` of a run's model (``meta``: its checkpoint JSON), with its task's
    inputs and outputs around the recurrent core (``TaskDefinition.onnx``); ``extras``: what the
    task's graph reads beyond the weights (``OnnxIO.extras``; forecast: its shrink weight)."""
    from .tasks import entry

    onnx = _onnx()
    g = _Graph(dtype)
    helper = g.helper
    task = entry(meta.get("task"))
    extras = extras or {}
    layers, H = spec.num_layers, spec.hidden_size
    carries_c = len(spec.cell_info.carry) > 1  # LSTM's cell state
    stateful = task.onnx.state
    states = []
    if stateful:
        states = [helper.make_tensor_value_info("state_h", g.elem, [layers, "B", H])]
        if carries_c:
            states.append(helper.make_tensor_value_info("state_c", g.elem, [layers, "B", H]))

    def core(x: str):
        if stateful:
            return model_graph(g, spec, params, x, "state_h", "state_c" if carries_c else None)
        batch = g.op("Slice", [g.op("Shape", [x]), g.ints([0]), g.ints([1])])
        shape = g.op("Concat", [g.ints([layers]), batch, g.ints([H])], axis=0)
        zero = helper.make_tensor("zero", g.elem, [1], [0.0])
        zeros = g.op("ConstantOfShape", [shape], value=zero)
        return model_graph(g, spec, params, x, zeros, zeros if carries_c else None)

    inputs, outputs, h_out, c_out = task.onnx.graph(g, core, spec, params, meta, extras)
    if stateful:
        g.op("Identity", [h_out], ["state_h_out"])
        outputs.append(helper.make_tensor_value_info("state_h_out", g.elem, [layers, "B", H]))
        if c_out:
            g.op("Identity", [c_out], ["state_c_out"])
            outputs.append(helper.make_tensor_value_info("state_c_out", g.elem, [layers, "B", H]))
    graph = helper.make_graph(g.nodes, f"rnnlab_{task.name}", inputs + states, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnnlab")
    model.ir_version = min(model.ir_version, 10)  # runtimes of 2024 on read IR 10
    info = {
        "rnnlab.task": task.name,
        "rnnlab.spec": json.dumps(meta.get("spec")),
        "rnnlab.config": json.dumps(meta.get("config")),
        "rnnlab.opset": str(OPSET),
        **task.onnx.metadata(meta, extras),
    }
    helper.set_model_props(model, info)
    onnx.checker.check_model(model)
    return model


def export_run(run_dir, out, which: str = "checkpoint", dtype: str = "float32") -> Path:
    """Write ``run_dir``'s model (``which``) as ONNX to ``out``; returns the path."""
    from . import checkpoint, runs
    from .tasks import entry

    spec, params, meta = runs.load_model(run_dir, which)
    model = build(spec, params, meta, dtype, entry(meta.get("task")).onnx.extras(run_dir, which, meta))
    out = Path(out)
    checkpoint.atomic_write_output(out, model.SerializeToString())
    return out
