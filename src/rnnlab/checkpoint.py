"""Checkpoints: tensors in safetensors, everything else in JSON, both written atomically.

A checkpoint ``<dir>/<stem>`` is two files:

* ``<stem>.safetensors``: named arrays (``params/…``, ``opt/…``, ``carry/…``);
* ``<stem>.json``: format name and version, step, model spec, config,
  optimizer counters, RNG states, data cursor, vocabulary, the SHA-256 of the
  tensor file (so a pair from different moments is detected).

Neither format can execute code on load (no pickle anywhere).  Each file is
written to a temporary name, fsynced and renamed, so a crash leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError

FORMAT = "rnnlab.checkpoint"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; a run's files are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save(run_dir: Path, stem: str, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``<stem>.safetensors`` then ``<stem>.json`` (which names the tensor file's hash)."""
    from safetensors.numpy import save as st_save

    blob = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                   metadata={"format": FORMAT, "version": str(VERSION)})
    atomic_write_bytes(Path(run_dir) / f"{stem}.safetensors", blob)
    meta = dict(meta, format=FORMAT, version=VERSION, tensors_sha256=hashlib.sha256(blob).hexdigest())
    atomic_write_text(Path(run_dir) / f"{stem}.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")


def exists(run_dir: Path, stem: str = "checkpoint") -> bool:
    return (Path(run_dir) / f"{stem}.json").exists()


def load(run_dir: Path, stem: str = "checkpoint") -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, meta) of a checkpoint; any damage is a ``UserError`` that says which file."""
    from safetensors.numpy import load as st_load

    run_dir = Path(run_dir)
    meta_path, tensor_path = run_dir / f"{stem}.json", run_dir / f"{stem}.safetensors"
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist; pass --run with a directory "
                        "made by 'rnnlab ... train'")
    if not meta_path.exists():
        raise UserError(f"no checkpoint in {str(run_dir)!r} ({meta_path.name} is missing); "
                        "train first or check --run")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{meta_path} is corrupt ({exc}); restore it or train again") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not an rnnlab checkpoint (no format={FORMAT!r} field)")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise UserError(f"{meta_path} has format version {meta.get('version')!r}; this rnnlab reads "
                        f"version {VERSION} or older: upgrade rnnlab")
    if not tensor_path.exists():
        raise UserError(f"{tensor_path} is missing; the checkpoint is incomplete")
    blob = tensor_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
        raise UserError(f"{tensor_path} does not match {meta_path.name} (truncated, corrupt or from "
                        "another run); restore both files together")
    try:
        tensors = st_load(blob)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(f"{tensor_path} is corrupt ({exc})") from exc
    return tensors, meta


def group(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The tensors under ``prefix/``, with the prefix removed."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def carry_to_tensors(carry: list) -> dict[str, np.ndarray]:
    out = {}
    for k, c in enumerate(carry):
        if isinstance(c, tuple):
            out[f"carry/{k}/h"], out[f"carry/{k}/c"] = c
        else:
            out[f"carry/{k}/h"] = c
    return out


def carry_from_tensors(tensors: dict[str, np.ndarray], num_layers: int, lstm: bool) -> list:
    c = group(tensors, "carry")
    if lstm:
        return [(c[f"{k}/h"], c[f"{k}/c"]) for k in range(num_layers)]
    return [c[f"{k}/h"] for k in range(num_layers)]
