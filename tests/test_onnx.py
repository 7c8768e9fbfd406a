"""export --format onnx: every cell and task run in onnxruntime equals rnnlab's own forward, at two
batch sizes and two lengths from a non-zero state (float32 < 1e-4 relative; float64 < 1e-9 where
onnxruntime has float64 kernels: the parallel-scan cells), a stream fed in pieces equals one pass,
and a forecast graph turns raw prices into rnnlab's own next price."""

import json

import numpy as np
import pytest
from test_charlm_cli import run_cli

from rnnlab import onnx_export
from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import CELLS, ModelSpec, cell_info, init_params

ort = pytest.importorskip("onnxruntime")
SHAPES = [(1, 1), (3, 6)]  # (B, T)


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def random_model(spec, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng, dtype=np.dtype(dtype))
    for k, v in params.items():  # non-zero biases and gains: every term shows
        if v.ndim == 1:
            params[k] = (
                1.0 + 0.3 * rng.standard_normal(v.shape) if k.endswith("norm") else 0.3 * rng.standard_normal(v.shape)
            ).astype(dtype)
    return params


def random_state(spec, B, dtype, rng):
    parts = 2 if spec.cell == "lstm" else 1
    return [
        tuple(rng.standard_normal((B, spec.hidden_size)).astype(dtype) for _ in range(parts))
        if parts == 2
        else rng.standard_normal((B, spec.hidden_size)).astype(dtype)
        for _ in range(spec.num_layers)
    ]


def feeds_of(spec, carry):
    if spec.cell == "lstm":
        return {"state_h": np.stack([c[0] for c in carry]), "state_c": np.stack([c[1] for c in carry])}
    return {"state_h": np.stack(carry)}


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def check_against_numpy(spec, params, task, dtype, tol, rng):
    meta = {"task": task, "spec": {}, "config": {}, "vocab": "x" * spec.input_size}
    sess = session(onnx_export.build(spec, params, meta, dtype))
    for B, T in SHAPES:
        if task == "charlm":
            x = rng.integers(0, spec.input_size, (B, T))
            feeds = {"ids": x.astype(np.int64)}
        else:
            x = rng.standard_normal((B, T, spec.input_size)).astype(dtype)
            feeds = {"noisy": x}
        carry = random_state(spec, B, dtype, rng)
        y, new_carry = nb.forward(params, spec, carry, x)
        out = sess.run(None, {**feeds, **feeds_of(spec, carry)})
        assert rel(out[0], y) < tol, (spec.cell, dtype, B, T)
        expected_state = feeds_of(spec, new_carry)
        for name, got in zip(("state_h", "state_c"), out[1:]):
            assert rel(got, expected_state[name]) < tol, (spec.cell, name)


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_equals_numpy_in_float32(cell):
    spec = ModelSpec(cell, 11, 6, 11, num_layers=2, input_kind="onehot")
    check_against_numpy(spec, random_model(spec, "float32"), "charlm", "float32", 1e-4, np.random.default_rng(1))


@pytest.mark.parametrize("cell", [c for c in CELLS if cell_info(c).parallel])
def test_parallel_cells_equal_numpy_in_float64(cell):
    spec = ModelSpec(cell, 11, 6, 11, num_layers=2, input_kind="onehot")
    check_against_numpy(spec, random_model(spec, "float64"), "charlm", "float64", 1e-9, np.random.default_rng(2))


@pytest.mark.parametrize(
    "cell, options",
    [
        ("gru_reset_after", dict(input_kind="embedding", embed_size=4, residual=True, norm="rms")),
        ("lstm", dict(input_kind="embedding", embed_size=6, tie_weights=True, num_layers=3, residual=True)),
        ("minlstm", dict(input_kind="embedding", embed_size=5, norm="rms", residual=True, num_layers=3)),
    ],
)
def test_stack_options_equal_numpy(cell, options):
    options = {"num_layers": 2, **options}
    spec = ModelSpec(cell, 9, 6, 9, **options)
    check_against_numpy(spec, random_model(spec, "float32"), "charlm", "float32", 1e-4, np.random.default_rng(3))


@pytest.mark.parametrize("cell", ["gru", "mingru"])
def test_dense_relu_input_of_denoise_equals_numpy(cell):
    spec = ModelSpec(cell, 1, 5, 1, num_layers=1, input_kind="dense_relu")
    check_against_numpy(spec, random_model(spec, "float32"), "denoise", "float32", 1e-4, np.random.default_rng(4))


def test_a_stream_fed_in_pieces_equals_one_pass():
    spec = ModelSpec("lstm", 7, 5, 7, num_layers=2)
    params = random_model(spec, "float32")
    sess = session(onnx_export.build(spec, params, {"task": "charlm", "vocab": "abcdefg"}, "float32"))
    ids = np.random.default_rng(5).integers(0, 7, (2, 9)).astype(np.int64)
    zero = {"state_h": np.zeros((2, 2, 5), np.float32), "state_c": np.zeros((2, 2, 5), np.float32)}
    whole = sess.run(None, {"ids": ids, **zero})
    first = sess.run(None, {"ids": ids[:, :4], **zero})
    second = sess.run(None, {"ids": ids[:, 4:], "state_h": first[1], "state_c": first[2]})
    np.testing.assert_allclose(np.concatenate([first[0], second[0]], axis=1), whole[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second[1], whole[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "flags",
    [
        ["--target", "levels"],
        ["--target", "returns", "--shrink", "auto", "--head", "gaussian"],
        ["--target", "levels", "--shrink", "auto", "--cell", "mingru", "--layers", "2"],
    ],
)
def test_forecast_graph_takes_raw_prices_and_gives_rnnlabs_next_price(tmp_path, capsys, flags):
    from rnnlab.tasks import forecast

    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "forecast",
        "train",
        "--backend",
        "numpy",
        "--builtin-points",
        "400",
        "--window",
        "8",
        "--hidden-size",
        "6",
        "--epochs",
        "3",
        "--out",
        out,
        "--quiet",
        *flags,
    )
    assert code == 0, err
    path = tmp_path / "fc.onnx"
    assert run_cli(capsys, "export", "--run", out, "--best", "--format", "onnx", "--out", path)[0] == 0
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rnnlab.task"] == "forecast" and json.loads(props["rnnlab.features"])["target"] in flags
    loaded = forecast.load_run(out, "best")
    alpha = loaded.extras["calibration"].alpha
    assert (alpha is not None) == ("auto" in flags) and json.loads(props["rnnlab.calibration_alpha"]) == alpha
    series = forecast.load_series(loaded.cfg)
    sess = session(model)
    for points in (np.arange(300, 301), np.arange(350, 357)):
        f = forecast.forecast_points(loaded, series, points)
        zero = np.zeros((loaded.spec.num_layers, len(points), 6), np.float32)
        got = sess.run(["next_price"], {"prices": f.price_windows.astype(np.float32), "state_h": zero})[0]
        assert rel(got, f.point) < 1e-4


def test_charlm_export_from_the_command_line_carries_the_vocabulary(tmp_path, capsys, text_file):
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "charlm",
            "train",
            "--text",
            text_file,
            "--out",
            out,
            "--max-steps",
            "2",
            "--hidden-size",
            "8",
            "--seq-len",
            "8",
            "--batch-size",
            "2",
            "--backend",
            "numpy",
            "--quiet",
        )[0]
        == 0
    )
    path = tmp_path / "lm.onnx"
    code, text, err = run_cli(capsys, "export", "--run", out, "--format", "onnx", "--out", path)
    assert code == 0 and "opset 17" in text, err
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads((out / "checkpoint.json").read_text())
    assert json.loads(props["rnnlab.vocab"]) == meta["vocab"]
    # The README's recipe, word for word, against rnnlab's own model.
    import rnnlab

    sess = ort.InferenceSession(str(path))
    info = sess.get_modelmeta().custom_metadata_map
    vocab, spec = json.loads(info["rnnlab.vocab"]), json.loads(info["rnnlab.spec"])
    text = "".join(vocab[i % len(vocab)] for i in (3, 1, 4, 1, 5))
    ids = np.array([[vocab.index(c) for c in text]], np.int64)
    state = np.zeros((spec["num_layers"], 1, spec["hidden_size"]), np.float32)
    logits, state = sess.run(None, {"ids": ids, "state_h": state})
    _, expected = rnnlab.load(out, which="checkpoint")(ids)
    assert rel(logits, np.asarray(expected)) < 1e-4
