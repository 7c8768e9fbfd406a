"""The exercise-style API: same numbers as a naive column-vector min-char-rnn loop."""

import numpy as np
import pytest
from conftest import make_text

from rnnlab.classic import RNN, DataReader


def naive_loss_and_grads(Wxh, Whh, Why, bh, by, inputs, targets, hprev):
    """The textbook column-vector forward and BPTT, one character at a time."""
    V = Wxh.shape[1]
    xs, hs, ps = {}, {-1: hprev.copy()}, {}
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((V, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] ** 2) * dh
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, dWxh, dWhh, dWhy, dbh, dby


def test_backward_matches_naive_column_vector_loop():
    reader = DataReader(text=make_text(2000), seq_length=25)
    rnn = RNN(hidden_size=16, vocab_size=reader.vocab_size, seq_length=25)
    rnn.params["layers.0.U"] *= 30  # larger weights: a non-trivial recurrence, still no clipping
    inputs, targets = reader.next_batch()
    hprev = np.random.default_rng(0).standard_normal(16) * 0.5
    grads, loss, h_last = rnn.backward(inputs, targets, hprev)
    ref = naive_loss_and_grads(rnn.Wax, rnn.Waa, rnn.Wya, rnn.ba, rnn.by, inputs, targets, hprev[:, None])
    assert loss == pytest.approx(ref[0], rel=1e-12)
    ref = [ref[0]] + [np.clip(g, -5, 5) for g in ref[1:]]  # the exercise clips every gradient to [-5, 5]
    np.testing.assert_allclose(grads["layers.0.W"].T, ref[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["layers.0.U"].T, ref[2], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["readout.W"].T, ref[3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["layers.0.b"], ref[4][:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["readout.b"], ref[5][:, 0], rtol=1e-9, atol=1e-12)
    ys, hs = rnn.forward(inputs, hprev)
    assert rnn.loss(ys, targets) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(hs[-1], h_last)


def test_softmax_is_stable_and_normalised():
    p = RNN.softmax(np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0])


def test_train_lowers_loss_and_predict_continues_text():
    reader = DataReader(text=make_text(5000), seq_length=25)
    rnn = RNN(hidden_size=32, vocab_size=reader.vocab_size, seq_length=25, learning_rate=0.1)
    printed = []
    history = rnn.train(reader, threshold=0.0, print_every=500, max_iterations=1500, out=printed.append)
    assert len(history) == 1500 and len(printed) == 3
    assert history[-1] < history[0] - 5  # smoothed summed loss, per 25 characters
    text = rnn.predict(reader, "The ", 50)
    assert text.startswith("The ") and len(text) == 54
    assert set(text) <= set(reader.char_to_ix)


def test_data_reader_wraps_and_signals_restart():
    reader = DataReader(text="abcdefghijklmnopqrstuvwxyz" * 2, seq_length=10)
    assert reader.just_started()
    x, y = reader.next_batch()
    assert [reader.ix_to_char[i] for i in x] == list("abcdefghij")
    assert [reader.ix_to_char[i] for i in y] == list("bcdefghijk")
    for _ in range(3):
        reader.next_batch()
        assert not reader.just_started()
    reader.next_batch()
    assert reader.just_started()  # pointer 50: 50 + 10 + 1 >= 52, so it wraps
