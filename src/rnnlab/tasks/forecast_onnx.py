"""The forecast model as an ONNX graph: raw prices in, the next price out.

The task's part of ``rnnlab export --format onnx`` (``TASK.onnx`` in ``rnnlab.tasks.forecast``):
the window's prices (and candle rows) are scaled inside the graph exactly as ``Features`` scales
them, the recurrent core (built by ``rnnlab.onnx_export``) runs over them, and its last output
becomes a price again, shrunk toward persistence with the run's weight where it has one.
Inputs: ``prices`` ``[B, L]`` (and ``candles`` ``[B, L, C]``); outputs ``next_price`` ``[B]`` and
``outputs`` ``[B, T, O]``.  ``g`` is the graph builder of ``rnnlab.onnx_export`` (ops and constants).
"""

from __future__ import annotations

from ..cells import ModelSpec


def graph(g, core, spec: ModelSpec, params: dict, meta: dict, extras: dict) -> tuple:
    """Raw price windows (and candle rows) in, the next price out, scaling inside (see
    ``rnnlab.tasks.definition.OnnxIO``); ``extras["shrink_alpha"]``: the weight on the model
    against persistence (``--shrink auto``), or None."""
    alpha = extras.get("shrink_alpha")
    features = meta["features"]
    target, scaler = features["target"], features["scaler"]
    window = int(meta["config"]["window"])
    prices_in = "prices"
    inputs = [g.helper.make_tensor_value_info(prices_in, g.elem, ["B", window])]
    if target == "returns":
        logs = g.op("Log", [prices_in])
        later = g.op("Slice", [logs, g.ints([1]), g.ints([window]), g.ints([1])])
        earlier = g.op("Slice", [logs, g.ints([0]), g.ints([window - 1]), g.ints([1])])
        values = g.op("Div", [g.op("Sub", [later, earlier]), g.const(scaler["scale"])])
    else:
        low, high = scaler["low"], scaler["high"]
        values = g.op(
            "Sub", [g.op("Mul", [g.op("Sub", [prices_in, g.const(low)]), g.const(2.0 / (high - low))]), g.const(1.0)]
        )
    x = g.op("Unsqueeze", [values, g.ints([2])])  # [B, L', 1]
    scales = features.get("channel_scales") or []
    if scales:
        inputs.append(g.helper.make_tensor_value_info("candles", g.elem, ["B", window, len(scales)]))
        steps = window - 1 if target == "returns" else window
        rows = g.op("Slice", ["candles", g.ints([window - steps]), g.ints([window]), g.ints([1])])
        x = g.op("Concat", [x, g.op("Div", [rows, g.const(scales)])], axis=2)
    outputs, h_out, c_out = core(x)
    last = g.op("Gather", [outputs, g.ints(-1)], axis=1)  # [B, O] after the whole window
    mean = g.op("Gather", [last, g.ints(0)], axis=1)  # [B]
    last_price = g.op("Gather", [prices_in, g.ints(window - 1)], axis=1)  # [B]
    if target == "returns":
        if alpha is not None:  # persistence is a return of 0
            mean = g.op("Mul", [mean, g.const(alpha)])
        price = g.op("Mul", [last_price, g.op("Exp", [g.op("Mul", [mean, g.const(scaler["scale"])])])])
    else:
        low, high = scaler["low"], scaler["high"]
        if alpha is not None:
            persistence = g.op(
                "Sub",
                [g.op("Mul", [g.op("Sub", [last_price, g.const(low)]), g.const(2.0 / (high - low))]), g.const(1.0)],
            )
            mean = g.op("Add", [persistence, g.op("Mul", [g.op("Sub", [mean, persistence]), g.const(alpha)])])
        price = g.op(
            "Add", [g.op("Mul", [g.op("Add", [mean, g.const(1.0)]), g.const(0.5 * (high - low))]), g.const(low)]
        )
    g.op("Identity", [price], ["next_price"])
    g.op("Identity", [outputs], ["outputs"])
    out_info = [
        g.helper.make_tensor_value_info("next_price", g.elem, ["B"]),
        g.helper.make_tensor_value_info("outputs", g.elem, ["B", "T", spec.output_size]),
    ]
    return inputs, out_info, h_out, c_out
