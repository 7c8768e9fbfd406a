"""Text data for character language models: reading, vocabulary, batch streams.

Batches come from B parallel contiguous streams (the training text cut into B
equal pieces); consecutive batches continue each stream, so the hidden state
can be carried across batches (truncated BPTT).  A pass ends when a stream
has fewer than T+1 characters left; the next pass starts from the stream
beginnings with a fresh (zero) state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

BUILTIN_NAME = "<built-in: pydoc_data.topics>"
# Memory a text costs while training: the decoded string (up to 4 bytes a character), its ids,
# the streams and the validation part; measured at about 16 bytes a character, with headroom.
BYTES_PER_CHAR = 20


def builtin_corpus() -> str:
    """Python's own documentation topics (``pydoc_data.topics``), read at run time.

    About 460k characters of English prose and code that ship with every
    CPython, so the demo and tests need no download.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip pydoc_data
        raise UserError(
            "this Python has no pydoc_data module for the built-in corpus; pass --text FILE with a UTF-8 text file"
        ) from exc
    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(path: str | os.PathLike | None) -> str:
    """The whole text of a UTF-8 file (or the built-in corpus for ``None``), validated."""
    if path is None:
        return builtin_corpus()
    import stat

    from ..memory import gib, memory_bytes

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"text file {path!r} does not exist; pass --text with a UTF-8 text file")
    if os.path.isdir(path):
        raise UserError(f"text path {path!r} is a directory; pass --text with a UTF-8 text file")
    try:
        # Opened without blocking, so a FIFO nobody writes to is refused instead of waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"cannot read text file {path!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UserError(
                f"text path {path!r} is not a regular file (a pipe, device or socket); "
                "pass --text with a UTF-8 text file"
            )
        limit = memory_bytes() // BYTES_PER_CHAR
        if info.st_size > limit:
            raise UserError(
                f"text file {path!r} is {gib(info.st_size)}; training from a text holds about "
                f"{BYTES_PER_CHAR} bytes per character in memory, so this machine takes texts up to "
                f"{gib(limit)}: train on a part of it (e.g. head -c 100M FILE > part.txt)"
            )
        try:
            raw = f.read()
        except OSError as exc:
            raise UserError(f"cannot read text file {path!r}: {exc.strerror}") from exc
    if not raw:
        raise UserError(f"text file {path!r} is empty; give a file with some text in it")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") and _decodes(raw, "utf-16"):
        raise UserError(
            f"text file {path!r} is UTF-16 (it starts with a UTF-16 byte-order mark); convert it "
            "to UTF-8, e.g. iconv -f utf-16 -t utf-8"
        )
    nul_at = raw.find(b"\x00")
    if nul_at >= 0:
        raise UserError(f"text file {path!r} looks binary (NUL byte at offset {nul_at}); give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"text file {path!r} is not valid UTF-8 (bad byte at offset {exc.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from exc
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM is not part of the text
    if not text:
        raise UserError(f"text file {path!r} is empty; give a file with some text in it")
    return text


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


class Vocab:
    """Characters <-> integer ids; built from the training split, sorted by code point."""

    def __init__(self, chars: str):
        self.chars = "".join(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        if len(self.index) != len(self.chars):
            raise UserError("vocabulary has repeated characters; the checkpoint is damaged")

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        return sorted(set(text) - set(self.index))

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """ids [len(text)] (int32); unknown characters are a ``UserError`` naming them."""
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            raise UserError(
                f"{what} has {len(missing)} character(s) not in the model's vocabulary "
                f"({shown}); use only characters seen in training"
            )
        return np.fromiter((self.index[c] for c in text), dtype=np.int32, count=len(text))

    def encode_known(self, text: str) -> tuple[np.ndarray, int]:
        """ids of the characters in the vocabulary, and how many were dropped."""
        ids = [self.index[c] for c in text if c in self.index]
        return np.asarray(ids, dtype=np.int32), len(text) - len(ids)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split_train_val(text: str, val_fraction: float) -> tuple[str, str]:
    """Chronological split: the first (1 - val_fraction) for training, the rest for validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cut = len(text) - int(round(len(text) * val_fraction))
    return text[:cut], text[cut:]


@dataclass
class StreamBatcher:
    """B contiguous streams over ``ids``; ``next()`` gives inputs/targets [B, T] and whether
    the carry must be reset (first batch of a pass).  ``position``/``passes`` are the cursor."""

    ids: np.ndarray
    batch_size: int
    seq_len: int
    position: int = 0
    passes: int = 0
    rows: tuple | None = None  # (start, stop): the only rows read from a prepared corpus (a torchrun rank's)

    def __post_init__(self):
        self.stream_len = len(self.ids) // self.batch_size
        if self.stream_len < self.seq_len + 1:
            need = self.batch_size * (self.seq_len + 1)
            raise UserError(
                f"training text has {len(self.ids)} characters, but batch_size "
                f"{self.batch_size} x (seq_len {self.seq_len} + 1) = {need} are needed; "
                "lower --batch-size or --seq-len, or give more text"
            )
        # A prepared corpus (rnnlab.data.corpus.IdFile) is read row by row; text ids are an array.
        self.streams = (
            None
            if hasattr(self.ids, "read")
            else self.ids[: self.batch_size * self.stream_len].reshape(self.batch_size, self.stream_len)
        )

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        T = self.seq_len
        if self.position + T + 1 > self.stream_len:
            self.position = 0
            self.passes += 1
        reset = self.position == 0
        if self.streams is None:
            start, stop = self.rows or (0, self.batch_size)
            chunk = np.zeros((self.batch_size, T + 1), np.int32)  # rows of other ranks stay unread
            for b in range(start, stop):
                chunk[b] = self.ids.read(b * self.stream_len + self.position, T + 1)
        else:
            chunk = self.streams[:, self.position : self.position + T + 1]
        self.position += T
        return chunk[:, :-1], chunk[:, 1:], reset

    def state(self) -> dict:
        return {"position": self.position, "passes": self.passes}

    def load_state(self, state: dict) -> None:
        """Continue from a saved cursor; one outside this text's streams is a ``ValueError``."""
        position, passes = state["position"], state["passes"]
        for name, value in (("position", position), ("passes", passes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"the data cursor's {name} is {value!r}, not a whole number >= 0")
        if position > self.stream_len:
            raise ValueError(f"the data cursor is at {position} of streams {self.stream_len} characters long")
        self.position, self.passes = position, passes


def eval_chunks(ids: np.ndarray, num_streams: int, seq_len: int):
    """Split ``ids`` into up to ``num_streams`` equal streams and yield (inputs, targets) chunks
    [S, <=T] covering every stream once; the caller carries the state across chunks."""
    S = max(1, min(num_streams, (len(ids) - 1) // max(1, seq_len)))
    L = (len(ids) - 1) // S  # each stream needs L inputs plus one trailing target
    if L < 1:
        return
    for start in range(0, L, seq_len):
        stop = min(L, start + seq_len)
        # Read chunk by chunk, never the whole split at once: ``ids`` may be a memory map of a
        # prepared corpus larger than memory (``--val-chars 0`` evaluates all of its validation part).
        block = np.stack([ids[s * L + start : s * L + stop + 1] for s in range(S)]).astype(np.int32, copy=False)
        yield block[:, :-1], block[:, 1:]
