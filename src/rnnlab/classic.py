"""The vocabulary of the from-scratch char-RNN exercise, over rnnlab's NumPy backend.

For people who know the exercise (a ``DataReader`` and an ``RNN`` class with
``softmax``, ``loss``, ``forward``, ``backward``, ``sample``/``predict`` and
``train``): the same names and habits (batch 1, sequences of 25, Adagrad 0.1,
gradients clipped to [-5, 5], loss summed over the sequence, weights
N(0, 1) * 0.01), but every number comes from ``rnnlab.backends.numpy_backend``;
nothing here is a second implementation of the network.

    from rnnlab.classic import DataReader, RNN
    reader = DataReader("input.txt", seq_length=25)
    rnn = RNN(hidden_size=100, vocab_size=reader.vocab_size, seq_length=25, learning_rate=0.1)
    rnn.train(reader, threshold=45.0, print_every=500, max_iterations=20000)
    print(rnn.predict(reader, "The ", 200))

Weight names map to the canonical parameter dict (row-vector convention, so
each classic column-vector matrix is the transpose): ``Wax = layers.0.W.T``,
``Waa = layers.0.U.T``, ``Wya = readout.W.T``, ``ba = layers.0.b``,
``by = readout.b``.
"""

from __future__ import annotations

import math

import numpy as np

from .backends import numpy_backend as nb
from .cells import ModelSpec, init_params
from .data.text import Vocab, read_text
from .optim import Optimizer, clip_gradients_


class DataReader:
    """Walks a text in consecutive windows of ``seq_length`` (+1 for the targets)."""

    def __init__(self, path: str | None = None, seq_length: int = 25, text: str | None = None):
        self.data = text if text is not None else read_text(path)
        vocab = Vocab.from_text(self.data)
        self.vocab = vocab
        self.char_to_ix = dict(vocab.index)
        self.ix_to_char = dict(enumerate(vocab.chars))
        self.vocab_size = len(vocab)
        self.data_size = len(self.data)
        self.seq_length = seq_length
        self.ids = vocab.encode(self.data)
        self.pointer = 0
        if self.data_size < seq_length + 1:
            raise ValueError(
                f"text has {self.data_size} characters; seq_length {seq_length} needs at least {seq_length + 1}"
            )

    def next_batch(self) -> tuple[list[int], list[int]]:
        """(inputs, targets) as lists of ids; wraps to the start when the text runs out."""
        start = self.pointer
        inputs = self.ids[start : start + self.seq_length].tolist()
        targets = self.ids[start + 1 : start + self.seq_length + 1].tolist()
        self.pointer += self.seq_length
        if self.pointer + self.seq_length + 1 >= self.data_size:
            self.pointer = 0
        return inputs, targets

    def just_started(self) -> bool:
        return self.pointer == 0

    def reset_pointer(self) -> None:
        self.pointer = 0


class RNN:
    """One-layer tanh RNN language model with the exercise's interface."""

    def __init__(
        self,
        hidden_size: int = 100,
        vocab_size: int = 65,
        seq_length: int = 25,
        learning_rate: float = 0.1,
        seed: int = 0,
    ):
        self.hidden_size, self.vocab_size = hidden_size, vocab_size
        self.seq_length, self.learning_rate = seq_length, learning_rate
        self.spec = ModelSpec("rnn", vocab_size, hidden_size, vocab_size)
        self.params = init_params(self.spec, np.random.default_rng(seed), "classic", np.float64)
        self.optimizer = Optimizer("adagrad")
        self.rng = np.random.default_rng(seed + 1)

    # Classic names, as views of the canonical parameters (column-vector convention).
    Wax = property(lambda self: self.params["layers.0.W"].T)
    Waa = property(lambda self: self.params["layers.0.U"].T)
    Wya = property(lambda self: self.params["readout.W"].T)
    ba = property(lambda self: self.params["layers.0.b"][:, None])
    by = property(lambda self: self.params["readout.b"][:, None])

    @staticmethod
    def softmax(x: np.ndarray) -> np.ndarray:
        """Softmax over the last axis; the max is subtracted first so exp never overflows."""
        z = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return z / np.sum(z, axis=-1, keepdims=True)

    def _carry(self, a_prev) -> list:
        a = np.zeros(self.hidden_size) if a_prev is None else np.asarray(a_prev, np.float64).reshape(-1)
        return [a[None, :]]

    def forward(self, inputs, a_prev=None) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``[T, V]`` of each next character and hidden states ``[T, H]``.

        ``a_prev``: hidden state ``[H]`` before the first input (zeros if None).
        """
        ids = np.asarray(inputs, dtype=np.int64)[None, :]
        Y, _, (_, _, _, (_, top, _), _) = nb._forward(self.params, self.spec, self._carry(a_prev), ids)
        return self.softmax(Y[:, 0, :]), top[:, 0, :].copy()

    def loss(self, ys: np.ndarray, targets) -> float:
        """Cross-entropy summed over the sequence: -sum_t log ys[t, targets[t]]."""
        targets = np.asarray(targets)
        return float(-np.sum(np.log(ys[np.arange(len(targets)), targets])))

    def backward(self, inputs, targets, a_prev=None) -> tuple[dict, float, np.ndarray]:
        """Gradients of the summed loss (clipped to [-5, 5]), the loss, and the last hidden state."""
        ids = np.asarray(inputs, dtype=np.int64)[None, :]
        tgt = np.asarray(targets, dtype=np.int64)[None, :]
        mean_loss, grads, carry = nb.loss_and_grads(
            self.params, self.spec, self._carry(a_prev), ids, tgt, "cross_entropy", "sum"
        )
        clip_gradients_(grads, "value", 5.0)
        return grads, mean_loss * ids.shape[1], carry[0][0]

    def update_model(self, grads: dict) -> None:
        """Adagrad: memory += g^2; param -= lr * g / sqrt(memory + 1e-8)."""
        self.optimizer.update_(self.params, grads, self.learning_rate)

    def sample(self, a_prev, seed_ix: int, n: int) -> list[int]:
        """``n`` ids drawn one at a time, starting after ``seed_ix``."""
        carry, x, out = self._carry(a_prev), np.array([seed_ix]), []
        for _ in range(n):
            carry, y = nb.step(self.params, self.spec, carry, x)
            ix = int(self.rng.choice(self.vocab_size, p=self.softmax(y[0])))
            out.append(ix)
            x = np.array([ix])
        return out

    def predict(self, data_reader: DataReader, start: str, n: int) -> str:
        """``start`` followed by ``n`` sampled characters."""
        ids = data_reader.vocab.encode(start, "start text")
        _, hs = self.forward(ids[:-1]) if len(ids) > 1 else (None, np.zeros((1, self.hidden_size)))
        a = hs[-1] if len(ids) > 1 else None
        return start + data_reader.vocab.decode(self.sample(a, int(ids[-1]), n))

    def train(
        self,
        data_reader: DataReader,
        threshold: float = 0.01,
        print_every: int = 500,
        max_iterations: int | None = None,
        out=print,
    ) -> list[float]:
        """Train until the smoothed summed loss is under ``threshold`` (or ``max_iterations``).

        Prints a sample and the loss every ``print_every`` iterations; returns the
        smoothed loss after each iteration.
        """
        smooth_loss = -math.log(1.0 / self.vocab_size) * self.seq_length
        history, a_prev, iteration = [], None, 0
        while smooth_loss > threshold and (max_iterations is None or iteration < max_iterations):
            if data_reader.just_started():
                a_prev = None
            inputs, targets = data_reader.next_batch()
            grads, loss, a_prev = self.backward(inputs, targets, a_prev)
            self.update_model(grads)
            smooth_loss = smooth_loss * 0.999 + loss * 0.001
            history.append(smooth_loss)
            if print_every and iteration % print_every == 0:
                text = data_reader.vocab.decode(self.sample(a_prev, inputs[0], 200))
                out(f"----\n{text}\n----\niter {iteration}, loss {smooth_loss:.4f}")
            iteration += 1
        return history
