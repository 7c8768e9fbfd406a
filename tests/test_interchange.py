"""Classic formats in and out: min-char-rnn weights and a plain PyTorch state_dict of
nn.RNN/nn.GRU/nn.LSTM + nn.Linear, checked against the modules themselves."""

import json

import numpy as np
import pytest
from test_charlm_cli import assert_user_error, params_of, run_cli

from rnnlab import interchange
from rnnlab.backends import numpy_backend as nb
from rnnlab.cells import ModelSpec, init_params
from rnnlab.errors import UserError


def model(cell, layers=2, input_kind="onehot", V=7, H=5, seed=0):
    spec = ModelSpec(cell, V, H, V, layers, input_kind)
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng, dtype=np.float64)
    for k, v in params.items():  # non-zero biases, so a bias mapped to the wrong place shows
        if v.ndim == 1:
            params[k] = rng.standard_normal(v.shape) * 0.3
    return spec, params


def test_min_char_rnn_round_trip_and_shapes():
    spec, params = model("rnn", layers=1)
    weights = interchange.to_min_char_rnn(spec, params)
    assert weights["Wxh"].shape == (5, 7) and weights["bh"].shape == (5, 1) and weights["by"].shape == (7, 1)
    spec2, params2 = interchange.from_min_char_rnn(weights)
    assert spec2 == spec
    for k in params:
        np.testing.assert_array_equal(params2[k], params[k])
    # The classic column-vector step gives the same hidden state as the backend.
    x = np.zeros((7, 1))
    x[3] = 1
    h = np.tanh(weights["Wxh"] @ x + weights["Whh"] @ np.zeros((5, 1)) + weights["bh"])
    _, y = nb.step(params, spec, nb.init_carry(spec, 1, np.float64), np.array([3]))
    np.testing.assert_allclose((weights["Why"] @ h + weights["by"])[:, 0], y[0], rtol=1e-12)


@pytest.mark.parametrize("cell,module", [("rnn", "RNN"), ("gru_reset_after", "GRU"), ("lstm", "LSTM")])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_loads_into_plain_torch_modules_and_agrees(tmp_path, cell, module, suffix):
    torch = pytest.importorskip("torch")
    spec, params = model(cell, layers=2, input_kind="dense", V=3)
    path = interchange.save(tmp_path / f"model{suffix}", interchange.to_torch_state_dict(spec, params))

    class Net(torch.nn.Module):  # what a user writes
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, module)(3, 5, num_layers=2, batch_first=True, dtype=torch.float64)
            self.fc = torch.nn.Linear(5, 3, dtype=torch.float64)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    net = Net()
    state = (
        torch.load(path, weights_only=True)
        if suffix == ".pt"
        else {k: torch.from_numpy(v) for k, v in interchange.load(path).items()}
    )
    net.load_state_dict(state)  # strict: every key and shape matches
    x = np.random.default_rng(1).standard_normal((4, 6, 3))
    with torch.no_grad():
        y_torch = net(torch.from_numpy(x)).numpy()
    y_ours, _ = nb.forward(params, spec, nb.init_carry(spec, 4, np.float64), x)
    np.testing.assert_allclose(y_torch, y_ours, rtol=1e-10, atol=1e-12)
    # And back: a state_dict of the module imports to the same parameters.
    spec2, params2 = interchange.from_torch_state_dict(net.state_dict(), input_kind="dense")
    assert spec2 == spec
    y_back, _ = nb.forward(params2, spec2, nb.init_carry(spec2, 4, np.float64), x)
    np.testing.assert_allclose(y_back, y_ours, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tied", [False, True])
def test_an_embedding_model_loads_into_embedding_gru_linear(tied):
    torch = pytest.importorskip("torch")
    spec = ModelSpec("gru_reset_after", 7, 5, 7, 2, "embedding", embed_size=5 if tied else 3, tie_weights=tied)
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    net = torch.nn.ModuleDict(
        {
            "embed": torch.nn.Embedding(7, spec.embed_size),
            "rnn": torch.nn.GRU(spec.embed_size, 5, num_layers=2, batch_first=True),
            "fc": torch.nn.Linear(5, 7),
        }
    ).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in interchange.to_torch_state_dict(spec, params).items()})
    ids = np.random.default_rng(1).integers(0, 7, (3, 4))
    with torch.no_grad():
        y_torch = net["fc"](net["rnn"](net["embed"](torch.from_numpy(ids)))[0]).numpy()
    y_ours, _ = nb.forward(params, spec, nb.init_carry(spec, 3, np.float64), ids)
    np.testing.assert_allclose(y_torch, y_ours, rtol=1e-10, atol=1e-12)


def test_refusals_say_why():
    with pytest.raises(UserError, match="Cho"):
        interchange.to_torch_state_dict(*model("gru"))
    for cell in ("mingru", "minlstm_linear"):
        with pytest.raises(UserError, match="no PyTorch module has its equations"):
            interchange.to_torch_state_dict(*model(cell))
    with pytest.raises(UserError, match="one tanh rnn layer"):
        interchange.to_min_char_rnn(*model("lstm"))
    with pytest.raises(UserError, match="lacks Why"):
        interchange.from_min_char_rnn({"Wxh": np.zeros((2, 3)), "Whh": np.zeros((2, 2)), "bh": 0, "by": 0})
    with pytest.raises(UserError, match="lacks rnn.weight_ih_l0"):
        interchange.from_torch_state_dict({"lstm.weight_ih_l0": np.zeros((8, 3))})
    with pytest.raises(UserError, match="format"):
        interchange.save("model.h5", {})


def test_export_command(tmp_path, capsys, text_file):
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "charlm",
            "train",
            "--text",
            text_file,
            "--cell",
            "rnn",
            "--hidden-size",
            "6",
            "--max-steps",
            "2",
            "--eval-every",
            "2",
            "--out",
            out,
            "--quiet",
        )[0]
        == 0
    )
    code, stdout, err = run_cli(capsys, "export", "--run", out, "--format", "min-char-rnn", "--out", tmp_path / "w.npz")
    assert code == 0, err
    assert "Wxh (6," in stdout
    saved = {k[len("params/") :]: v for k, v in params_of(out).items()}
    spec, params = interchange.from_min_char_rnn(interchange.load(tmp_path / "w.npz"))
    assert spec.hidden_size == 6
    assert params.keys() == saved.keys()
    for name in saved:  # the exported arrays are the run's parameters, exactly
        np.testing.assert_array_equal(params[name], saved[name])
    assert run_cli(capsys, "export", "--run", out, "--format", "torch", "--out", tmp_path / "w.safetensors")[0] == 0
    state = interchange.load(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(state["rnn.weight_hh_l0"], saved["layers.0.U"].T)
    np.testing.assert_array_equal(state["rnn.weight_ih_l0"], saved["layers.0.W"].T)
    np.testing.assert_array_equal(state["rnn.bias_ih_l0"] + state["rnn.bias_hh_l0"], saved["layers.0.b"])
    np.testing.assert_array_equal(state["fc.weight"], saved["readout.W"].T)
    assert_user_error(capsys, "export", "--run", out, "--format", "torch", "--out", tmp_path / "w.h5", match="format")
    assert_user_error(
        capsys,
        "export",
        "--run",
        tmp_path / "none",
        "--format",
        "torch",
        "--out",
        tmp_path / "x.pt",
        match="does not exist",
    )


def test_import_command_round_trips_an_exported_run(tmp_path, capsys, text_file):
    """export -> import gives a run whose eval equals the original's, and it fine-tunes."""
    out = tmp_path / "run"
    assert (
        run_cli(
            capsys,
            "charlm",
            "train",
            "--text",
            text_file,
            "--cell",
            "lstm",
            "--hidden-size",
            "6",
            "--max-steps",
            "3",
            "--eval-every",
            "3",
            "--out",
            out,
            "--quiet",
        )[0]
        == 0
    )
    assert run_cli(capsys, "export", "--run", out, "--format", "torch", "--out", tmp_path / "w.pt")[0] == 0
    code, stdout, err = run_cli(
        capsys,
        "import",
        "--weights",
        tmp_path / "w.pt",
        "--format",
        "torch",
        "--text",
        text_file,
        "--out",
        tmp_path / "imported",
    )
    assert code == 0, err
    assert "imported a lstm model (H=6" in stdout
    original = run_cli(capsys, "charlm", "eval", "--run", out, "--json")[1]
    imported = run_cli(capsys, "charlm", "eval", "--run", tmp_path / "imported", "--json")[1]
    assert json.loads(imported)["nats_per_char"] == pytest.approx(json.loads(original)["nats_per_char"], rel=1e-6)
    assert run_cli(capsys, "charlm", "sample", "--run", tmp_path / "imported", "--length", "5")[0] == 0
    before = params_of(tmp_path / "imported")
    code, _, err = run_cli(
        capsys,
        "charlm",
        "train",
        "--resume",
        "--max-steps",
        "20",
        "--eval-every",
        "20",
        "--out",
        tmp_path / "imported",
        "--quiet",
    )
    assert code == 0, err
    # Fine-tuning moves the imported weights and lowers their validation loss.
    rows = [json.loads(line) for line in (tmp_path / "imported" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20
    after = params_of(tmp_path / "imported")
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    tuned = json.loads(run_cli(capsys, "charlm", "eval", "--run", tmp_path / "imported", "--json")[1])
    assert tuned["nats_per_char"] < json.loads(imported)["nats_per_char"]


def test_import_min_char_rnn_with_its_own_character_order(tmp_path, capsys, text_file):
    """min-char-rnn orders its vocabulary by set() iteration; --chars gives that order, and the
    imported model then predicts exactly what the classic column-vector code predicts."""
    text = text_file.read_text(encoding="utf-8")
    chars = "".join(sorted(set(text[: int(len(text) * 0.9)]), reverse=True))  # any order but ours
    V, H = len(chars), 8
    rng = np.random.default_rng(3)
    weights = {
        "Wxh": rng.standard_normal((H, V)) * 0.1,
        "Whh": rng.standard_normal((H, H)) * 0.1,
        "Why": rng.standard_normal((V, H)) * 0.1,
        "bh": rng.standard_normal((H, 1)) * 0.1,
        "by": rng.standard_normal((V, 1)) * 0.1,
    }
    np.savez(tmp_path / "classic.npz", **weights)
    assert (
        run_cli(
            capsys,
            "import",
            "--weights",
            tmp_path / "classic.npz",
            "--format",
            "min-char-rnn",
            "--text",
            text_file,
            "--chars",
            chars,
            "--out",
            tmp_path / "mcr",
        )[0]
        == 0
    )
    from rnnlab.tasks import charlm

    loaded = charlm.load_run(tmp_path / "mcr")
    trainer, vocab, cfg = loaded.trainer, loaded.extras["vocab"], loaded.cfg
    assert vocab.chars == chars and cfg.dtype == "float64"
    h, loss = np.zeros((H, 1)), 0.0
    for a, b in zip(text[:40], text[1:41]):  # the classic loss, one character at a time
        x = np.zeros((V, 1))
        x[chars.index(a)] = 1
        h = np.tanh(weights["Wxh"] @ x + weights["Whh"] @ h + weights["bh"])
        y = weights["Why"] @ h + weights["by"]
        loss += float(np.log(np.exp(y - y.max()).sum()) - (y[chars.index(b), 0] - y.max()))
    ids = vocab.encode(text[:41])
    logits, _ = trainer.forward(trainer.init_carry(1), ids[None, :40])
    ours = charlm.log_softmax_nll(logits, ids[None, 1:41])
    assert ours == pytest.approx(loss, rel=1e-12)


def test_import_refusals(tmp_path, capsys, text_file):
    rng = np.random.default_rng(0)
    weights = {
        "Wxh": rng.standard_normal((4, 3)),
        "Whh": np.eye(4),
        "Why": rng.standard_normal((3, 4)),
        "bh": np.zeros((4, 1)),
        "by": np.zeros((3, 1)),
    }
    np.savez(tmp_path / "w.npz", **weights)
    base = ["import", "--weights", tmp_path / "w.npz", "--format", "min-char-rnn", "--text", text_file]
    assert_user_error(capsys, *base, "--out", tmp_path / "a", match="models 3 characters")
    assert_user_error(capsys, *base, "--chars", "aab", "--out", tmp_path / "a", match="repeats a character")
    assert_user_error(capsys, *base, "--chars", "abc", "--out", tmp_path / "a", match="not in the model's vocabulary")
    assert_user_error(
        capsys,
        "import",
        "--weights",
        tmp_path / "none.npz",
        "--format",
        "torch",
        "--out",
        tmp_path / "b",
        match="does not exist",
    )
    assert_user_error(capsys, *base[:4], "torch", "--out", tmp_path / "c", match="lacks rnn.weight_ih_l0")
