"""The NumPy backend's batch split: row blocks computed in threads of their own and summed are
the whole batch's loss, gradients and carry (float64, so equal to rounding)."""

import threading

import numpy as np
import pytest
from test_numpy_gradcheck import float64_params_and_carry

from rnnlab import blas, threads
from rnnlab.backends import numpy_backend as nb
from rnnlab.carry import parts
from rnnlab.cells import ModelSpec
from rnnlab.dropout import dropout_masks
from rnnlab.optim import Optimizer


def test_split_rows_even_blocks_of_whole_units_or_none():
    def bounds(*args):
        return [(s.start, s.stop) for s in nb.split_rows(*args)]

    assert bounds(64, 2) == [(0, 32), (32, 64)]
    assert bounds(64, 1) == [(0, 64)]
    assert bounds(31, 2) == [(0, 31)]  # blocks under MIN_SPLIT_ROWS rows
    assert bounds(33, 4) == [(0, 16), (16, 33)]  # as many blocks as MIN_SPLIT_ROWS allows
    assert bounds(42, 2, 7) == [(0, 21), (21, 42)]  # three windows of 7 channel rows each
    assert bounds(56, 2, 7) == [(0, 28), (28, 56)]
    assert bounds(48, 2, 32) == [(0, 48)]  # one window: nothing to split
    assert bounds(45, 2, 7) == [(0, 45)]  # not whole windows: left whole


def _problem(kind: str, rows: int, rng):
    """(spec, params, carry, inputs, targets, loss) of a small float64 model of each shape."""
    if kind == "decoder":
        spec = ModelSpec("lstm", 3, 5, 3, 2, "dense_relu", decode_steps=2, decode_channels=3)
        inputs, targets = rng.standard_normal((rows, 4, 3)), rng.standard_normal((rows, 2, 3))
        loss = "mae"
    else:
        cell = {"gru": "gru_reset_after", "lstm": "lstm", "rnn": "rnn"}[kind]
        spec = ModelSpec(cell, 7, 6, 7, 2, "embedding", embed_size=4, norm="rms", residual=True)
        ids = rng.integers(0, 7, (rows, 6))
        inputs, targets, loss = ids, rng.integers(0, 7, (rows, 6)), "cross_entropy"
    params, carry = float64_params_and_carry(spec, rows, rng)
    return spec, params, carry, inputs, targets, loss


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn", "decoder"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_split_step_equals_the_whole_batch(kind, reduction, monkeypatch):
    monkeypatch.setattr(nb, "MIN_SPLIT_ROWS", 1)
    pinned = []
    monkeypatch.setattr(blas, "one_blas_thread_here", lambda: pinned.append(threading.current_thread().name))
    rng = np.random.default_rng(0)
    rows = 12
    spec, params, carry, inputs, targets, loss = _problem(kind, rows, rng)
    masks = dropout_masks(spec, 0.3, np.random.default_rng(1), rows, inputs.shape[1], np.float64)

    def trainer(split_threads):
        tr = nb.Trainer(spec, {k: v.copy() for k, v in params.items()}, Optimizer("adam"), loss, reduction, "norm", 1.0)
        tr.split_threads = split_threads
        return tr

    whole, split = trainer(1), trainer(3)
    if kind == "decoder":  # blocks of whole windows (3 channel rows each): 4 windows -> 1 + 2 + 1
        assert [(s.start, s.stop) for s in nb.split_rows(rows, 3, 3)] == [(0, 3), (3, 9), (9, 12)]
    expected = whole._loss_and_grads(carry, inputs, targets, masks)
    got = split._loss_and_grads(carry, inputs, targets, masks)
    assert len(pinned) == 3 and all(name.startswith("rnnlab-split") for name in pinned)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-12)
    assert got[1].keys() == expected[1].keys()
    for name in expected[1]:
        np.testing.assert_allclose(got[1][name], expected[1][name], rtol=1e-10, atol=1e-12, err_msg=name)
    for a, b in zip(got[2], expected[2]):
        for pa, pb in zip(parts(a), parts(b)):
            np.testing.assert_allclose(pa, pb, rtol=1e-12)
    # A whole training step: the same update.
    whole.train_step(carry, inputs, targets, 1e-2, masks)
    split.train_step(carry, inputs, targets, 1e-2, masks)
    for name in params:
        np.testing.assert_allclose(split.params[name], whole.params[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_split_threads_follow_the_request_the_model_and_the_cpus(monkeypatch):
    for name in threads.THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(threads, "busy_cpus", lambda: 3)  # the load is not asked: a run is reproducible
    big = threads.SMALL_MODEL_PARAMS
    assert threads.batch_split_threads(big) == 4 and threads.batch_split_threads(big, 2) == 2
    assert threads.batch_split_threads(big - 1) == 1
    monkeypatch.setenv("RNNLAB_THREADS", "1")
    assert threads.batch_split_threads(big) == 1


def test_a_trainer_splits_only_where_the_blas_can_be_pinned(monkeypatch):
    spec = ModelSpec("gru_reset_after", 65, 256, 65, input_kind="embedding", embed_size=64)
    params = {k: v for k, v in float64_params_and_carry(spec, 1, np.random.default_rng(0))[0].items()}
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    for name in threads.THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(blas, "can_pin_threads", lambda: False)
    assert nb.Trainer(spec, params, Optimizer("adam"), "cross_entropy", "mean", "norm", 1.0).split_threads == 1
    monkeypatch.setattr(blas, "can_pin_threads", lambda: True)
    assert nb.Trainer(spec, params, Optimizer("adam"), "cross_entropy", "mean", "norm", 1.0).split_threads == 2
