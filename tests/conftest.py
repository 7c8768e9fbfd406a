import numpy as np
import pytest


def make_text(n_chars: int = 20000, seed: int = 0) -> str:
    """A deterministic pseudo-English text with learnable structure (words, punctuation, lines)."""
    rng = np.random.default_rng(seed)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "and",
        "dog",
        "ran",
        "to",
        "it",
        "was",
        "red",
        "big",
        "house",
        "of",
        "tree",
        "in",
        "garden",
        "light",
    ]
    out, size = [], 0
    while size < n_chars:
        sentence = " ".join(words[i] for i in rng.integers(0, len(words), rng.integers(3, 9)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?"]) + rng.choice([" ", "\n"])
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n_chars]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


SMALL = [
    "--hidden-size",
    "16",
    "--seq-len",
    "12",
    "--batch-size",
    "4",
    "--eval-every",
    "5",
    "--sample-length",
    "20",
    "--quiet",
]
