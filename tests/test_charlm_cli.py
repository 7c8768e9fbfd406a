"""End-to-end charlm through the command line, in process: runs, resume, and every bad input."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SMALL
from safetensors.numpy import load_file

from rnnlab.cli import main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, *args, match):
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def params_of(run_dir, stem="checkpoint"):
    return {k: v for k, v in load_file(str(run_dir / f"{stem}.safetensors")).items() if k.startswith("params/")}


def test_train_sample_eval(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys,
        "charlm",
        "train",
        "--text",
        text_file,
        "--out",
        out,
        "--max-steps",
        "60",
        "--eval-every",
        "30",
        "--hidden-size",
        "16",
        "--seq-len",
        "12",
        "--batch-size",
        "4",
    )
    assert code == 0
    for name in (
        "config.toml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "checkpoint.json",
        "best.safetensors",
        "best.json",
        "loss.png",
    ):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [30, 60]
    # Beats the unigram baseline (character frequencies), not only uniform guessing: it uses context.
    assert rows[-1]["val_nats_per_char"] < rows[-1]["val_unigram_nats_per_char"]
    assert rows[-1]["val_bits_per_char"] == pytest.approx(rows[-1]["val_nats_per_char"] / np.log(2))
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["format"] == "rnnlab.checkpoint" and meta["loop"]["step"] == 60
    assert meta["vocab"] == "".join(sorted(set(text_file.read_text()[:18000])))

    code, s1, _ = run_cli(capsys, "charlm", "sample", "--run", out, "--length", "50", "--seed", "3", "--prime", "The ")
    assert code == 0 and s1.startswith("The ") and len(s1.rstrip("\n")) == 54
    _, s2, _ = run_cli(capsys, "charlm", "sample", "--run", out, "--length", "50", "--seed", "3", "--prime", "The ")
    assert s1 == s2  # seeded
    _, g1, _ = run_cli(capsys, "charlm", "sample", "--run", out, "--length", "30", "--temperature", "0")
    _, g2, _ = run_cli(capsys, "charlm", "sample", "--run", out, "--length", "30", "--top-k", "1", "--seed", "9")
    assert g1 == g2  # argmax == top-1 sampling

    code, ev, _ = run_cli(capsys, "charlm", "eval", "--run", out, "--json")
    result = json.loads(ev)
    assert code == 0
    assert result["nats_per_char"] == pytest.approx(rows[-1]["val_nats_per_char"], rel=1e-6)
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / np.log(2))


@pytest.mark.parametrize(
    "cell,extra",
    [
        ("rnn", []),
        ("lstm", ["--dropout", "0.3", "--embed-size", "6"]),
        ("gru", ["--dropout", "0.2", "--embed-size", "16", "--tie-weights"]),
    ],
)
def test_resume_is_bit_exact(tmp_path, text_file, capsys, cell, extra):
    """With dropout too: the masks' generator is saved, so the resumed run draws the same masks."""
    common = ["charlm", "train", "--text", text_file, "--cell", cell, "--layers", "2", *SMALL, *extra]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_cli(capsys, *common, "--out", straight, "--max-steps", "30")[0] == 0
    assert run_cli(capsys, *common, "--out", split, "--max-steps", "15")[0] == 0
    assert run_cli(capsys, "charlm", "train", "--resume", "--out", split, "--max-steps", "30", "--quiet")[0] == 0
    a, b = params_of(straight), params_of(split)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    ta, tb = load_file(str(straight / "checkpoint.safetensors")), load_file(str(split / "checkpoint.safetensors"))
    for k in ta:  # optimizer state and carried hidden state too
        assert ta[k].tobytes() == tb[k].tobytes(), k


def test_min_char_rnn_preset(tmp_path, text_file, capsys):
    out = tmp_path / "classic"
    code, _, _ = run_cli(
        capsys,
        "charlm",
        "train",
        "--preset",
        "min-char-rnn",
        "--text",
        text_file,
        "--out",
        out,
        "--max-steps",
        "3",
        "--quiet",
    )
    assert code == 0
    meta = json.loads((out / "checkpoint.json").read_text())
    cfg = meta["config"]
    assert (
        cfg["hidden_size"],
        cfg["seq_len"],
        cfg["batch_size"],
        cfg["optimizer"],
        cfg["lr"],
        cfg["clip"],
        cfg["clip_value"],
        cfg["loss_reduction"],
        cfg["init"],
    ) == (100, 25, 1, "adagrad", 0.1, "value", 5.0, "sum", "classic")
    p = params_of(out)
    assert p["params/layers.0.U"].dtype == np.float64
    from rnnlab.cells import ModelSpec, init_params

    init = init_params(ModelSpec("rnn", 27, 100, 27), np.random.default_rng(0), "classic", np.float64)
    assert 0.009 < init["layers.0.U"].std() < 0.011 and not init["readout.b"].any()


def test_target_loss_stops_early(tmp_path, text_file, capsys):
    code, stdout, _ = run_cli(
        capsys,
        "charlm",
        "train",
        "--text",
        text_file,
        "--out",
        tmp_path / "r",
        "--max-steps",
        "2000",
        "--target-loss",
        "2.9",
        *SMALL,
    )
    assert code == 0 and "under --target-loss" in stdout
    assert json.loads((tmp_path / "r" / "checkpoint.json").read_text())["loop"]["step"] < 2000


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"\x00\x01\x02binary", "looks binary"),
        (b"\xff\xfe caf\xe9", "not valid UTF-8"),
        (b"short text", "needs at least"),
    ],
)
def test_bad_text(tmp_path, capsys, content, match):
    path = tmp_path / "t.txt"
    if content is not None:
        path.write_bytes(content)
    assert_user_error(
        capsys, "charlm", "train", "--text", path, "--out", tmp_path / "r", "--seq-len", "50", "--quiet", match=match
    )
    assert not (tmp_path / "r" / "checkpoint.json").exists()


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--hidden-size", "0"),
        ("--layers", "-1"),
        ("--seq-len", "0"),
        ("--batch-size", "0"),
        ("--lr", "0"),
        ("--lr", "-0.1"),
        ("--lr", "nan"),
        ("--max-steps", "-5"),
        ("--dropout", "1"),
        ("--dropout", "-0.1"),
        ("--weight-decay", "-1"),
        ("--embed-size", "-2"),
    ],
)
def test_non_positive_numbers(tmp_path, capsys, flag, value):
    assert_user_error(capsys, "charlm", "train", "--out", tmp_path / "r", flag, value, match=flag)


@pytest.mark.parametrize(
    "task,args,match",
    [
        ("denoise", ["--embed-size", "16"], "--embed-size 16: denoise reads real values"),
        ("forecast", ["--tie-weights"], "--tie-weights: forecast has no embedding table"),
    ],
)
def test_a_charlm_only_flag_elsewhere_says_why(tmp_path, capsys, task, args, match):
    assert_user_error(capsys, task, "train", "--out", tmp_path / "r", *args, match=match)
    assert not (tmp_path / "r").exists()


def test_too_big_batch_for_text(tmp_path, text_file, capsys):
    assert_user_error(
        capsys,
        "charlm",
        "train",
        "--text",
        text_file,
        "--out",
        tmp_path / "r",
        "--batch-size",
        "4000",
        "--quiet",
        match="lower --batch-size",
    )


def test_prime_outside_vocabulary(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    run_cli(capsys, "charlm", "train", "--text", text_file, "--out", out, "--max-steps", "2", *SMALL)
    assert_user_error(
        capsys, "charlm", "sample", "--run", out, "--prime", "Zebra€", match="not in the model's vocabulary"
    )


def test_existing_run_is_protected(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    args = ["charlm", "train", "--text", text_file, "--out", out, "--max-steps", "5", *SMALL]
    assert run_cli(capsys, *args)[0] == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    assert_user_error(capsys, *args, match="already holds a run")
    assert (out / "checkpoint.safetensors").read_bytes() == before
    assert_user_error(
        capsys,
        "charlm",
        "train",
        "--resume",
        "--out",
        out,
        "--hidden-size",
        "32",
        "--quiet",
        match="cannot change --hidden-size",
    )
    assert run_cli(capsys, *args, "--force", "--seed", "1")[0] == 0
    assert (out / "checkpoint.safetensors").read_bytes() != before
    assert_user_error(
        capsys, "charlm", "train", "--resume", "--out", tmp_path / "empty", "--quiet", match="no checkpoint"
    )


def test_damaged_checkpoints(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    run_cli(capsys, "charlm", "train", "--text", text_file, "--out", out, "--max-steps", "5", *SMALL)
    tensors = out / "checkpoint.safetensors"
    good = tensors.read_bytes()
    sample = ("charlm", "sample", "--run", out, "--length", "5")

    tensors.write_bytes(good[: len(good) // 2])  # truncated
    assert_user_error(capsys, *sample, match="does not match")
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    tensors.write_bytes(bytes(flipped))  # corrupt
    assert_user_error(capsys, *sample, match="does not match")
    import pickle

    tensors.write_bytes(pickle.dumps({"params": 1}))  # a pickle is never loaded
    assert_user_error(capsys, *sample, match="does not match")
    tensors.write_bytes(good)
    meta_path = out / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(meta_path.read_text()[:40])
    assert_user_error(capsys, *sample, match="is not valid JSON")
    meta_path.write_text(json.dumps({"some": "other tool"}))
    assert_user_error(capsys, *sample, match="not an rnnlab checkpoint")
    # A self-consistent file whose tensors are for another model shape.
    import hashlib

    from safetensors.numpy import save

    blob = save({"params/layers.0.W": np.zeros((3, 3), np.float32)})
    tensors.write_bytes(blob)
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    meta_path.write_text(json.dumps(meta))
    assert_user_error(capsys, *sample, match="damaged checkpoint")
    assert_user_error(capsys, "charlm", "eval", "--run", tmp_path / "nowhere", match="does not exist")


def test_non_finite_loss_keeps_last_good_checkpoint(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    line = assert_user_error(
        capsys,
        "charlm",
        "train",
        "--text",
        text_file,
        "--out",
        out,
        "--optimizer",
        "sgd",
        "--lr",
        "1e38",
        "--clip",
        "none",
        "--max-steps",
        "50",
        *SMALL,
        match="at step",
    )
    assert "last good checkpoint" in line
    meta = json.loads((out / "checkpoint.json").read_text())
    params = params_of(out)
    assert all(np.isfinite(v).all() for v in params.values())
    assert meta["loop"]["step"] < 50


def test_unknown_config_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("hidden_sise = 10\n")
    assert_user_error(capsys, "charlm", "train", "--config", cfg, "--out", tmp_path / "r", match="hidden_sise")


def test_config_file_reproduces_run(tmp_path, text_file, capsys):
    a = tmp_path / "a"
    run_cli(capsys, "charlm", "train", "--text", text_file, "--out", a, "--max-steps", "6", *SMALL)
    b = tmp_path / "b"
    assert run_cli(capsys, "charlm", "train", "--config", a / "config.toml", "--out", b, "--quiet")[0] == 0
    pa, pb = params_of(a), params_of(b)
    assert all(pa[k].tobytes() == pb[k].tobytes() for k in pa)


def test_ctrl_c_saves_and_resumes(tmp_path, text_file):
    out = tmp_path / "r"
    cmd = [
        sys.executable,
        "-m",
        "rnnlab",
        "charlm",
        "train",
        "--text",
        str(text_file),
        "--out",
        str(out),
        "--max-steps",
        "100000",
        "--hidden-size",
        "16",
        "--seq-len",
        "12",
        "--batch-size",
        "4",
        "--eval-every",
        "10",
        "--sample-length",
        "10",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout and "--resume" in stdout
    meta = json.loads((out / "checkpoint.json").read_text())
    steps = meta["loop"]["step"]
    assert 10 <= steps < 100000
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnlab",
            "charlm",
            "train",
            "--resume",
            "--out",
            str(out),
            "--max-steps",
            str(steps + 5),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "checkpoint.json").read_text())["loop"]["step"] == steps + 5


def test_target_val_loss_and_eval_on_other_text(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    code, stdout, _ = run_cli(
        capsys,
        "charlm",
        "train",
        "--text",
        text_file,
        "--out",
        out,
        "--max-steps",
        "2000",
        "--target-val-loss",
        "2.6",
        *SMALL,
    )
    assert code == 0 and "reached --target-val-loss" in stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_nats_per_char"] <= 2.6 < rows[0]["val_nats_per_char"]
    other = tmp_path / "other.txt"
    other.write_text("The cat sat on a mat. Zebra€!", encoding="utf-8")
    code, ev, _ = run_cli(capsys, "charlm", "eval", "--run", out, "--text", other, "--json")
    result = json.loads(ev)
    assert code == 0 and result["unknown_chars_skipped"] == 2 and result["chars"] == 27


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_run_resume_and_match_numpy(tmp_path, text_file, capsys, backend):
    """Dropout and an embedding on: the host-drawn masks make every backend train the same model."""
    common = [
        "charlm",
        "train",
        "--text",
        text_file,
        "--cell",
        "lstm",
        "--dtype",
        "float64",
        *SMALL,
        "--dropout",
        "0.25",
        "--embed-size",
        "6",
    ]
    straight, split, numpy_run = tmp_path / "js", tmp_path / "jr", tmp_path / "np"
    assert run_cli(capsys, *common, "--backend", backend, "--out", straight, "--max-steps", "20")[0] == 0
    assert run_cli(capsys, *common, "--backend", backend, "--out", split, "--max-steps", "10")[0] == 0
    assert run_cli(capsys, "charlm", "train", "--resume", "--out", split, "--max-steps", "20", "--quiet")[0] == 0
    assert run_cli(capsys, *common, "--backend", "numpy", "--out", numpy_run, "--max-steps", "20")[0] == 0
    a, b, c = params_of(straight), params_of(split), params_of(numpy_run)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
        assert np.linalg.norm(a[k] - c[k]) <= 1e-9 * np.linalg.norm(c[k]), k


def test_device_flag(tmp_path, text_file, capsys):
    out = tmp_path / "r"
    assert_user_error(capsys, "charlm", "train", "--out", out, "--device", "gpu", match="--device must be")
    assert_user_error(capsys, "charlm", "train", "--out", out, "--device", "cuda", match="--backend torch")
    if not __import__("torch").cuda.is_available():
        assert_user_error(
            capsys,
            "charlm",
            "train",
            "--text",
            text_file,
            "--out",
            out,
            "--backend",
            "torch",
            "--device",
            "cuda",
            "--max-steps",
            "2",
            *SMALL,
            match="no CUDA GPU",
        )
    args = ["charlm", "train", "--text", text_file, "--out", out, "--max-steps", "2", *SMALL]
    assert run_cli(capsys, *args, "--backend", "torch", "--device", "cpu")[0] == 0
    assert 'device = "cpu"' in (out / "config.toml").read_text()
    # Moving the run to another backend drops the torch device; sampling loads on this machine's device.
    assert (
        run_cli(
            capsys, "charlm", "train", "--resume", "--out", out, "--max-steps", "4", "--backend", "numpy", "--quiet"
        )[0]
        == 0
    )
    assert json.loads((out / "checkpoint.json").read_text())["config"]["device"] == "auto"
    assert run_cli(capsys, "charlm", "sample", "--run", out, "--length", "5", "--backend", "torch")[0] == 0


class _FixedLogits:
    """A trainer stand-in whose next-character logits never change, so sampling can be checked
    against the distribution it must draw from."""

    def __init__(self, logits):
        self.logits = np.asarray(logits, dtype=np.float64)

    def init_carry(self, batch_size):
        return [np.zeros((batch_size, 1))]

    def forward(self, carry, ids):
        return np.broadcast_to(self.logits, (*ids.shape, self.logits.size)).copy(), carry

    def step(self, carry, ids):
        return carry, np.broadcast_to(self.logits, (len(ids), self.logits.size)).copy()


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.5, 0), (2.0, 0), (1.0, 2), (0.7, 3)])
def test_sampling_draws_from_softmax_of_logits_over_temperature_within_top_k(temperature, top_k):
    from rnnlab.data.text import Vocab
    from rnnlab.tasks.charlm import sample_text

    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0])
    vocab = Vocab("\nabcd")
    n = 20000
    text = sample_text(_FixedLogits(logits), vocab, n, temperature, top_k, rng=np.random.default_rng(0))
    counts = np.array([text.count(c) for c in vocab.chars])
    z = logits / temperature
    if top_k:
        z = np.where(np.arange(z.size) < top_k, z, -np.inf)  # the logits are sorted: the first k are the top k
    expected = np.exp(z - z.max())
    expected /= expected.sum()
    assert counts[expected == 0].sum() == 0
    # Each frequency within 4 standard errors of its probability.
    np.testing.assert_array_less(np.abs(counts / n - expected), 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12)


def test_sampling_at_temperature_zero_is_argmax():
    from rnnlab.data.text import Vocab
    from rnnlab.tasks.charlm import sample_text

    text = sample_text(_FixedLogits([0.0, 3.0, 1.0]), Vocab("\nab"), 50, temperature=0.0, rng=np.random.default_rng(0))
    assert text == "a" * 50
