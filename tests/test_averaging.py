"""--ema-decay: the loop keeps a moving average of the weights, evaluates and saves with it, and
trains on the raw weights as if it were not there.  (Backends agree on it, and resume it on one
another, in test_backend_matrix.py; a bad value is refused in test_bad_inputs.py.)"""

import json

import numpy as np
import pytest
from conftest import make_text
from runfiles import run_cli

from rnnlab import averaging, checkpoint, runs
from rnnlab.config import CharLMConfig
from rnnlab.runner import train_run

DECAY = 0.6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(make_text(3000), encoding="utf-8")
    return str(path)


def tiny(corpus: str, **changes) -> CharLMConfig:
    settings = dict(
        text=corpus,
        hidden_size=8,
        seq_len=8,
        batch_size=2,
        max_steps=2,
        eval_every=1,
        eval_max_chars=0,
        sample_length=5,
        seed=2,
        lr=0.05,
    )
    return CharLMConfig(**{**settings, **changes})


def params_of(run_dir, group: str = "params") -> dict:
    return checkpoint.group(checkpoint.load(run_dir)[0], group)


@pytest.fixture(scope="module")
def runs_made(corpus, tmp_path_factory):
    """Raw runs of 1 and 2 steps, and the same 2 steps with --ema-decay (evaluated at every step)."""
    root = tmp_path_factory.mktemp("ema")
    for name, cfg in (
        ("raw1", tiny(corpus, max_steps=1)),
        ("raw2", tiny(corpus)),
        ("ema", tiny(corpus, ema_decay=DECAY)),
    ):
        summary = train_run(cfg, root / name, quiet=True)
    return root, summary


def test_the_average_follows_every_step_and_training_never_sees_it(runs_made):
    root, _ = runs_made
    p1, p2 = params_of(root / "raw1"), params_of(root / "raw2")
    # The raw weights are bit for bit those of the run without an average, though every
    # evaluation computed with the average in their place.
    ema_raw = params_of(root / "ema")
    assert all(np.array_equal(ema_raw[k], p2[k]) for k in p2)
    average = params_of(root / "ema", "average")
    assert set(average) == set(p2)
    for k in p2:
        # Debiased: (1-d)(d p1 + p2) / (1 - d^2); the initial weights have no share.
        want = (DECAY * p1[k] + p2[k]) / (1 + DECAY)
        np.testing.assert_allclose(average[k], want, rtol=1e-5, atol=1e-7, err_msg=k)
        assert not np.allclose(average[k], p2[k]), k  # a real average, not the last weights


def test_evaluation_samples_and_saved_models_use_the_average(runs_made, capsys):
    root, summary = runs_made
    ema_evals = [json.loads(line) for line in (root / "ema" / "metrics.jsonl").read_text().splitlines()]
    raw_evals = [json.loads(line) for line in (root / "raw2" / "metrics.jsonl").read_text().splitlines()]
    assert ema_evals[-1]["step"] == raw_evals[-1]["step"] == 2
    # Same raw weights, different evaluated weights: the scores differ.
    assert ema_evals[-1]["val_loss"] != pytest.approx(raw_evals[-1]["val_loss"], rel=1e-6)
    # What a user loads (sample, eval, export) is the average: its score is the one logged.
    code, out, err = run_cli(capsys, "charlm", "eval", "--run", root / "ema", "--json")
    assert code == 0, err
    assert json.loads(out)["nats_per_char"] == pytest.approx(ema_evals[-1]["val_loss"], rel=1e-9)
    spec, loaded, _ = runs.load_model(root / "ema", "checkpoint")
    average = params_of(root / "ema", "average")
    assert all(np.array_equal(loaded[k], average[k]) for k in average)
    # best.* holds the average it was scored with, and so does the trainer train_run returns.
    best = checkpoint.group(checkpoint.load(root / "ema", "best")[0], "params")
    best_step = min(ema_evals, key=lambda r: r["val_loss"])["step"]
    if best_step == 2:
        assert all(np.array_equal(best[k], average[k]) for k in average)
    assert all(np.array_equal(summary["trainer"].params[k], average[k]) for k in average)


def test_holding_restores_the_trainers_own_weights_exactly():
    class Holder:  # the one method holding() needs of a trainer, besides params
        def __init__(self):
            self.params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3) / 7}

        def load_params(self, params):
            for k, v in params.items():
                self.params[k][...] = v

    trainer = Holder()
    before = trainer.params["w"].copy()
    with averaging.holding(trainer, {"w": np.ones((2, 3), np.float32)}):
        assert (trainer.params["w"] == 1).all()
    assert np.array_equal(trainer.params["w"], before)
    with averaging.holding(trainer, None):
        assert np.array_equal(trainer.params["w"], before)


def test_a_resumed_run_continues_its_average_as_if_never_stopped(corpus, tmp_path):
    """Stopped after 2 of 4 steps and resumed, an --ema-decay run ends with the same average (and
    weights) as the run trained straight through: the average is restored, not restarted from the
    raw weights."""
    straight = train_run(tiny(corpus, max_steps=4, ema_decay=DECAY), tmp_path / "straight", quiet=True)
    train_run(tiny(corpus, max_steps=2, ema_decay=DECAY), tmp_path / "resumed", quiet=True)
    train_run(
        tiny(corpus, max_steps=4, ema_decay=DECAY),
        tmp_path / "resumed",
        resume=True,
        overrides={"max_steps": 4},
        quiet=True,
    )
    assert straight["step"] == 4
    for group in ("average", "params"):
        a, b = params_of(tmp_path / "straight", group), params_of(tmp_path / "resumed", group)
        assert a.keys() == b.keys() and a
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{group}/{k}")
