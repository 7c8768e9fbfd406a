"""Prepared corpora: a text of any size as memory-mapped character ids (``charlm prepare``).

``prepare`` reads its sources in chunks, three times (count, vocabulary, ids), so memory stays
bounded whatever their size: pass 1 counts characters (and skips files that are not UTF-8
text), which fixes the split; pass 2 collects the vocabulary of the training part; pass 3
writes ``train.bin`` and ``val.bin`` as ids of the smallest unsigned type that holds the
vocabulary, hashing each file as it is written, and ``manifest.json``.

The text is the one ``--text`` would read: a file's leading byte-order mark is dropped; a
directory is its regular files in sorted path order joined by a newline; ``.gz`` and ``.xz``
files are decompressed; ``-`` is standard input (spooled to a temporary file, since it is read
three times).  The split is ``split_train_val``'s; validation characters outside the training
vocabulary are dropped (and counted), as ``--text`` drops them.  So a run from the prepared
directory trains on the same ids as a run from the text, and ends bit-identical.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import lzma
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

FORMAT = "rnnlab-charlm-corpus"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20  # bytes read at a time
DTYPES = (np.uint8, np.uint16, np.uint32)


@dataclass
class Source:
    """One file of the corpus, read as UTF-8 text."""

    path: Path
    label: str  # as named in messages and the manifest

    def open(self):
        name = self.path.name.lower()
        if name.endswith(".gz"):
            return gzip.open(self.path, "rb")
        if name.endswith(".xz"):
            return lzma.open(self.path, "rb")
        return open(self.path, "rb")

    def chunks(self):
        """The file's text in pieces (a leading byte-order mark dropped); ValueError if it is not
        UTF-8 text (undecodable, or a NUL byte: binary)."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        first = True
        try:
            with self.open() as f:
                while True:
                    raw = f.read(CHUNK_BYTES)
                    if b"\x00" in raw:
                        raise ValueError("a NUL byte")
                    text = decoder.decode(raw, final=not raw)
                    if first and text:
                        text = text[1:] if text.startswith("\ufeff") else text
                        first = False
                    if text:
                        yield text
                    if not raw:
                        return
        except (UnicodeDecodeError, OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise ValueError(str(exc)) from exc


def find_sources(path: str, spool_dir: Path) -> list[Source]:
    """The files of ``path``: a file, a directory (its regular files in sorted path order) or
    ``-`` (standard input, spooled to ``spool_dir``)."""
    if path == "-":
        spooled = spool_dir / "stdin.txt"
        with open(spooled, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, CHUNK_BYTES)
        return [Source(spooled, "<standard input>")]
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"--text {path!r} does not exist; give a text file, a directory of them, or - for standard input"
        )
    if p.is_file():
        return [Source(p, str(p))]
    if not p.is_dir():
        raise UserError(f"--text {path!r} is not a regular file or a directory")
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    if not files:
        raise UserError(f"--text {path!r} is a directory with no files in it")
    return [Source(f, str(f)) for f in files]


def _joined(sources: list[Source], usable: list[bool]):
    """The corpus text in pieces: the usable sources joined by a newline."""
    first = True
    for source, ok in zip(sources, usable):
        if not ok:
            continue
        if not first:
            yield "\n"
        first = False
        yield from source.chunks()


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class _Writer:
    """Ids appended to a file, hashed as they are written."""

    def __init__(self, path: Path, dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.file = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        data = np.ascontiguousarray(ids, dtype=self.dtype).tobytes()
        self.file.write(data)
        self.sha256.update(data)
        self.count += len(ids)

    def close(self) -> dict:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {"file": self.path.name, "ids": self.count, "sha256": self.sha256.hexdigest()}


def prepare(text: str, out, val_fraction: float = 0.1, progress: bool = True) -> dict:
    """Prepare ``text`` (a file, a directory or ``-``) into ``out``; returns the manifest.  ``out``
    appears complete or not at all: a failure (a full disk, Ctrl-C) removes what was written."""
    out = Path(out)
    try:
        return _prepare(text, out, val_fraction, progress)
    except BaseException:
        staging = _staging_path(out)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _prepare(text: str, out: Path, val_fraction: float, progress: bool) -> dict:
    """``prepare``'s work, into a staging directory renamed to ``out`` at the end.

    Long on purpose: one streaming pass over a corpus of any size (read, count, write the ids, then
    the manifest), whose steps share the open files and counters.
    """
    from tqdm import tqdm

    from .text import split_train_val

    split_train_val("", val_fraction)  # the same check and message as a run's
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, not a directory")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {str(out)!r} is not empty; choose a new directory for the prepared data")
    show = progress and sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="rnnlab-prepare-") as tmp:
        sources = find_sources(text, Path(tmp))
        # Pass 1: which files are text, and how many characters there are.
        usable, total = [], 0
        with tqdm(total=len(sources), unit="file", desc="counting", disable=not show) as bar:
            for source in sources:
                try:
                    total += sum(len(piece) for piece in source.chunks())
                    usable.append(True)
                except ValueError:
                    usable.append(False)
                bar.update(1)
        kept = sum(usable)
        total += max(0, kept - 1)  # the newlines between files
        if not kept:
            raise UserError(f"--text {text!r} holds no UTF-8 text file ({len(sources)} file(s), none readable as text)")
        cut = total - int(round(total * val_fraction))
        if cut < 2 or (val_fraction > 0 and total - cut < 2):
            raise UserError(
                f"--text {text!r} has {total} characters: too few for a training part and a "
                f"validation part of --val-fraction {val_fraction:g}; give more text"
            )
        # Pass 2: the vocabulary of the training part.
        seen, position = set(), 0
        for piece in _joined(sources, usable):
            if position >= cut:
                break
            seen.update(piece[: cut - position])
            position += len(piece)
        chars = "".join(sorted(seen))
        if len(chars) < 2:
            raise UserError(
                f"--text {text!r} has only one distinct character ({chars!r}) in its training part: "
                "there is nothing to predict"
            )
        dtype = next(d for d in DTYPES if len(chars) - 1 <= np.iinfo(d).max)
        table = _code_points(chars)
        # Pass 3: ids, written and hashed; unigram counts of the training part. Everything is written
        # into a staging directory beside --out and renamed into place once complete, so a full
        # disk or a kill leaves no half-prepared --out (and the next run removes the staging one).
        staging = _staging_dir(out)
        writers = {"train": _Writer(staging / "train.bin", dtype), "val": _Writer(staging / "val.bin", dtype)}
        text_hash, counts, dropped, position = hashlib.sha256(), np.zeros(len(chars), np.int64), 0, 0
        with tqdm(total=total, unit="char", unit_scale=True, desc="writing ids", disable=not show) as bar:
            for piece in _joined(sources, usable):
                text_hash.update(piece.encode("utf-8"))
                cps = _code_points(piece)
                ids = np.searchsorted(table, cps)
                known = (ids < len(table)) & (table[np.minimum(ids, len(table) - 1)] == cps)
                split_at = min(max(cut - position, 0), len(piece))
                train_ids = ids[:split_at]
                if not known[:split_at].all():  # cannot happen: the vocabulary is the training part's
                    raise AssertionError("a training character outside the vocabulary")
                writers["train"].write(train_ids)
                counts += np.bincount(train_ids, minlength=len(chars))
                val_known = known[split_at:]
                dropped += int((~val_known).sum())
                writers["val"].write(ids[split_at:][val_known])
                position += len(piece)
                bar.update(len(piece))
        parts = {name: w.close() for name, w in writers.items()}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "vocab": chars,
        "dtype": np.dtype(dtype).name,
        "val_fraction": val_fraction,
        "split": "the first (1 - val_fraction) of the characters train, the rest validate "
        "(validation characters outside the training vocabulary dropped)",
        "chars": total,
        "text_sha256": text_hash.hexdigest(),
        "source": text,
        "files": len(sources),
        "files_skipped_not_text": len(sources) - kept,
        "train": parts["train"],
        "val": dict(parts["val"], dropped_unknown=dropped),
        "train_counts": counts.tolist(),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()  # empty, as checked at the start
    os.replace(staging, out)
    return manifest


def _staging_path(out: Path) -> Path:
    return out.parent / f".{out.name}.preparing"


def _staging_dir(out: Path) -> Path:
    """A fresh staging directory beside ``out`` (a leftover of a run that did not finish is removed)."""
    staging = _staging_path(out)
    if staging.exists():
        print(f"rnnlab: note: removing {staging}, left by a prepare that did not finish", file=sys.stderr)
        shutil.rmtree(staging)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    return staging


@dataclass
class Prepared:
    """A prepared directory, opened: its manifest and readers of its ids (``IdFile``)."""

    root: Path
    manifest: dict
    train: IdFile
    val: IdFile

    @property
    def vocab_chars(self) -> str:
        return self.manifest["vocab"]


def open_prepared(root) -> Prepared:
    """Check ``root``'s manifest against its files (format, version, sizes; not the data: see
    ``verify``) and open them."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise UserError(f"--data {str(root)!r} is not a directory; make one with `rnnlab charlm prepare`")
    if not path.exists():
        raise UserError(
            f"--data {str(root)!r} is not prepared data (no {MANIFEST}); make it with "
            "`rnnlab charlm prepare --text FILE --out DIR`"
        )
    from .. import jsonfile

    manifest = jsonfile.read(path, jsonfile.Obj())
    try:
        if manifest.get("format") != FORMAT:
            raise UserError(f"{path} is not an rnnlab prepared corpus (format {manifest.get('format')!r})")
        if manifest.get("version") != VERSION:
            raise UserError(
                f"{path} has format version {manifest.get('version')!r}; this rnnlab reads version "
                f"{VERSION}: prepare the text again"
            )
        try:
            jsonfile.check(manifest, jsonfile.MANIFEST)
        except jsonfile.Damaged as exc:
            raise UserError(f"{path} is damaged: {exc}; prepare the text again") from None
        dtype = np.dtype(manifest["dtype"])
        maps = {}
        for name in ("train", "val"):
            part = manifest[name]
            file_name = part["file"]
            if not isinstance(file_name, str) or Path(file_name).name != file_name or file_name in ("", ".", ".."):
                raise UserError(
                    f"{root / MANIFEST} is damaged: its {name} file is {file_name!r}, not a plain file name inside "
                    f"{root}; prepare the text again"
                )
            file = root / file_name
            jsonfile.refuse_link(file)
            size = file.stat().st_size if file.exists() else None
            expected = int(part["ids"]) * dtype.itemsize
            if size != expected:
                have = "is missing" if size is None else f"has {size:,} bytes"
                raise UserError(
                    f"{file} {have}, but {MANIFEST} says {expected:,} ({part['ids']:,} ids of "
                    f"{dtype.name}); the directory is damaged: prepare the text again"
                )
            maps[name] = IdFile(file, dtype, int(part["ids"]), len(manifest["vocab"]))
        if not len(maps["train"]):
            raise UserError(f"{path}: the training part is empty; prepare more text")
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}); prepare the text again") from exc
    return Prepared(root, manifest, maps["train"], maps["val"])


class IdFile:
    """The ids of a prepared file, read on demand with positioned reads (``os.pread``).

    Not a memory map: measured here, touching one id of a mapped file mapped about a megabyte
    around it (32 MB resident after one batch of 32 streams, ``madvise(MADV_RANDOM)`` or not),
    so a map's resident memory grows with the corpus while a run reads a few kilobytes a step.
    Reading exactly the rows a batch needs keeps it flat.  Slices give int32 arrays.
    """

    def __init__(self, path: Path, dtype, count: int, vocab_size: int | None = None):
        self.path, self.dtype, self.size = Path(path), np.dtype(dtype), int(count)
        self.vocab_size = vocab_size  # every id read is checked to be below it
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.size

    def read(self, start: int, count: int) -> np.ndarray:
        """``count`` ids from ``start`` (clipped to the file), as int32."""
        start, stop = max(0, int(start)), min(self.size, int(start) + int(count))
        if stop <= start:
            return np.zeros(0, np.int32)
        size = self.dtype.itemsize
        raw = os.pread(self._fd, (stop - start) * size, start * size)
        ids = np.frombuffer(raw, dtype=self.dtype).astype(np.int32)
        if self.vocab_size is not None and ids.size and int(ids.max()) >= self.vocab_size:
            at = start + int(np.argmax(ids >= self.vocab_size))
            raise UserError(
                f"{self.path} holds id {int(ids.max())} (at position {at:,}), beyond its vocabulary of "
                f"{self.vocab_size} characters: the prepared data is damaged; prepare the text again"
            )
        return ids

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.size)
            return self.read(start, stop - start)
        if isinstance(key, (int, np.integer)):
            return self.read(int(key) % self.size, 1)[0]
        raise TypeError("IdFile takes a contiguous slice or one index")

    def __array__(self, dtype=None, copy=None):
        ids = self.read(0, self.size)
        return ids if dtype is None else ids.astype(dtype)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None


def verify(root) -> dict:
    """Re-hash both id files against the manifest, and check every id is inside the vocabulary;
    a mismatch is a ``UserError``."""
    prepared = open_prepared(root)
    out = {}
    for name in ("train", "val"):
        part = prepared.manifest[name]
        digest = hashlib.sha256()
        ids = getattr(prepared, name)
        for start in range(0, len(ids), CHUNK_BYTES):  # the ids, checked as they are read
            ids.read(start, CHUNK_BYTES)
        with open(Path(root) / part["file"], "rb") as f:
            for block in iter(lambda: f.read(CHUNK_BYTES * 8), b""):
                digest.update(block)
        if digest.hexdigest() != part["sha256"]:
            raise UserError(
                f"{Path(root) / part['file']} does not match its checksum in {MANIFEST}: the file "
                "changed or is damaged; prepare the text again"
            )
        out[name] = part["ids"]
    return out
