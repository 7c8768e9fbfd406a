"""Checkpoints: tensors in safetensors, everything else in JSON, saved as one unit.

A checkpoint ``<dir>/<stem>`` is two files:

* ``<stem>.safetensors``: named arrays (``params/…``, ``opt/…``, ``carry/…``);
* ``<stem>.json``: format name and version, step, model spec, config,
  optimizer counters, RNG states, data cursor, vocabulary, the SHA-256 of the
  tensor file (so a pair from different moments is detected).

Neither format can execute code on load (no pickle anywhere).

A crash at any instant leaves a loadable checkpoint, because the JSON decides
which tensors belong to it (by their hash) and is replaced last.  ``save``:

1. writes the tensors to ``<stem>.next.safetensors`` (temporary name, fsync, rename);
2. writes ``<stem>.json`` naming their hash (temporary name, fsync, rename): the commit;
3. renames ``<stem>.next.safetensors`` over ``<stem>.safetensors``.

Killed before 2, the old JSON still names the old tensors; killed between 2 and
3, the JSON names the ``.next`` file, where ``load`` finds them.  ``recover``
(run by the directory's one writer before it writes) finishes step 3 or drops
a stale ``.next`` file, and removes temporary files a crash left behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError
from .jsonfile import refuse_link

FORMAT = "rnnlab.checkpoint"
_UMASK = os.umask(0o022)
os.umask(_UMASK)
VERSION = 1
STEMS = ("checkpoint", "best")


def _no_fault(point: str, path: Path) -> None:
    pass


# Called at each point of a save where a crash would leave a different set of files on disk
# (after a write, an fsync, a rename).  Tests replace it to stop a save at every point in turn.
fault_point = _no_fault


def _fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output(path, flag: str = "--out") -> Path:
    """``path`` as a ``Path``, or a ``UserError`` when it is a directory (a file is to be written there)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a directory; give the path of the file to write inside it")
    return path


def atomic_write_output(path, data: bytes, flag: str = "--out") -> None:
    """Write a file the user named (``--out`` of ``export``) atomically, treating every format alike:
    a directory there is refused; a link is followed, as ``cp`` does, and its target replaced
    atomically beside it; an error names the user's path, not the temporary file."""
    path = check_output(path, flag)
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part.

    The temporary file has a name of its own (``.<name>.<random>.tmp``), so two
    processes never write into one; a full disk or any other failure leaves the old
    file as it was and removes the temporary one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            fault_point("written", Path(tmp))
            os.fsync(f.fileno())
        fault_point("synced", Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; a run's files are ordinary files
        os.replace(tmp, path)
        fault_point("renamed", path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def open_no_link(path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (``O_NOFOLLOW``: no check-then-open race)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line to a log (metrics.jsonl, samples.jsonl).  A crash may cut the last line
    short; readers skip a last line without its newline, and a resumed run cuts the log back to
    the length its checkpoint recorded.  A link in the log's place is refused."""
    fd = open_no_link(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
    fault_point("appended", Path(path))


def log_sizes(run_dir: Path, names) -> dict[str, int]:
    """Byte length of each log in ``names`` (0 when absent), recorded in a checkpoint."""
    return {name: (Path(run_dir) / name).stat().st_size if (Path(run_dir) / name).exists() else 0 for name in names}


def cut_logs(run_dir: Path, sizes: dict) -> None:
    """Cut each log back to the length a checkpoint recorded: what was appended after the
    checkpoint is written again, identically, when the run continues from it."""
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"the length recorded for {name} is {size!r}, not a whole number >= 0")
        path = Path(run_dir) / name
        refuse_link(path)
        if path.exists() and path.stat().st_size > int(size):
            fd = open_no_link(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, int(size))
            finally:
                os.close(fd)


def save(run_dir: Path, stem: str, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Save the checkpoint ``<stem>``: tensors first, then the JSON that commits them (see above)."""
    from safetensors.numpy import save as st_save

    run_dir = Path(run_dir)
    blob = st_save(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"format": FORMAT, "version": str(VERSION)}
    )
    staged, final = run_dir / f"{stem}.next.safetensors", run_dir / f"{stem}.safetensors"
    atomic_write_bytes(staged, blob)
    meta = dict(meta, format=FORMAT, version=VERSION, tensors_sha256=hashlib.sha256(blob).hexdigest())
    atomic_write_text(run_dir / f"{stem}.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    os.replace(staged, final)
    fault_point("renamed", final)
    _fsync_dir(run_dir)


def exists(run_dir: Path, stem: str = "checkpoint") -> bool:
    return (Path(run_dir) / f"{stem}.json").exists()


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def recover(run_dir: Path) -> list[str]:
    """Finish or undo a save a crash cut short, and remove temporary files it left; only the
    directory's writer (holding its lock) may call this.  Returns what was done, for a note."""
    run_dir = Path(run_dir)
    done = []
    for stem in STEMS:
        staged, final, meta_path = (
            run_dir / f"{stem}.next.safetensors",
            run_dir / f"{stem}.safetensors",
            run_dir / f"{stem}.json",
        )
        if not staged.exists():
            continue
        from . import jsonfile

        try:
            wanted = jsonfile.read(meta_path, jsonfile.Obj()).get("tensors_sha256")
        except (OSError, UserError):
            wanted = None
        if wanted is not None and _sha256_of(staged) == wanted:
            os.replace(staged, final)
            done.append(f"completed the interrupted save of {final.name}")
        else:
            staged.unlink()
            done.append(f"removed the unfinished {staged.name}")
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink()
        done.append(f"removed the temporary file {tmp.name}")
    if done:
        _fsync_dir(run_dir)
    return done


def _matching_tensors(run_dir: Path, stem: str, sha256) -> bytes | None:
    """The tensor file the JSON names by hash: the committed one, or the staged one of a save cut
    short between its commit and its last rename."""
    for path in (run_dir / f"{stem}.safetensors", run_dir / f"{stem}.next.safetensors"):
        try:
            blob = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        if hashlib.sha256(blob).hexdigest() == sha256:
            return blob
    return None


def load_meta(run_dir: Path, stem: str = "checkpoint") -> dict:
    """The meta JSON of a checkpoint, checked (its tensors not read); damage is a ``UserError``."""
    run_dir = Path(run_dir)
    meta_path = run_dir / f"{stem}.json"
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise UserError(
            f"run directory {str(run_dir)!r} {what}; pass --run with a directory made by 'rnnlab ... train'"
        )
    refuse_link(meta_path)
    if not meta_path.exists():
        raise UserError(f"no checkpoint in {str(run_dir)!r} ({meta_path.name} is missing); train first or check --run")
    from . import jsonfile

    meta = jsonfile.read(meta_path, jsonfile.Obj())
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not an rnnlab checkpoint (no format={FORMAT!r} field)")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{meta_path} is damaged: its format version is {version!r}, not a whole number >= 1")
    if version > VERSION:
        raise UserError(
            f"{meta_path} has format version {version}; this rnnlab reads version {VERSION} or older: upgrade rnnlab"
        )
    try:
        jsonfile.check(meta, jsonfile.CHECKPOINT)
    except jsonfile.Damaged as exc:
        raise UserError(f"damaged checkpoint: {meta_path}: {exc}; restore it from a copy or start a new run") from None
    return meta


def load(run_dir: Path, stem: str = "checkpoint") -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, meta) of a checkpoint; any damage is a ``UserError`` that says which file."""
    from safetensors.numpy import load as st_load

    meta = load_meta(run_dir, stem)
    run_dir = Path(run_dir)
    meta_path, tensor_path = run_dir / f"{stem}.json", run_dir / f"{stem}.safetensors"
    refuse_link(tensor_path)
    refuse_link(run_dir / f"{stem}.next.safetensors")
    blob = _matching_tensors(run_dir, stem, meta.get("tensors_sha256"))
    if blob is None:
        if not tensor_path.exists():
            raise UserError(f"{tensor_path} is missing; the checkpoint is incomplete")
        raise UserError(
            f"{tensor_path} does not match {meta_path.name} (truncated, corrupt or from "
            "another run): damaged checkpoint; restore both files together"
        )
    try:
        tensors = st_load(blob)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(f"{tensor_path} is corrupt ({exc})") from exc
    return tensors, meta


def damaged(where, exc: BaseException) -> UserError:
    """The one-line error for a checkpoint whose JSON lacks a field or holds a wrong value."""
    what = f"lacks field {exc}" if isinstance(exc, KeyError) else f"holds a bad value ({exc})"
    return UserError(f"damaged checkpoint: {where} {what}; restore it from a copy or start a new run")


def group(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The tensors under ``prefix/``, with the prefix removed."""
    p = prefix + "/"
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def carry_to_tensors(carry: list, parts: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``carry/<layer>/<part>`` arrays of a carry whose layers hold ``parts`` (the cell table's
    ``carry``: ``("h",)`` or ``("h", "c")``; a one-part layer is a bare array)."""
    out = {}
    for k, c in enumerate(carry):
        for part, array in zip(parts, c if len(parts) > 1 else (c,)):
            out[f"carry/{k}/{part}"] = array
    return out


def carry_from_tensors(tensors: dict[str, np.ndarray], num_layers: int, parts: tuple[str, ...]) -> list:
    c = group(tensors, "carry")
    if len(parts) > 1:
        return [tuple(c[f"{k}/{part}"] for part in parts) for k in range(num_layers)]
    return [c[f"{k}/{parts[0]}"] for k in range(num_layers)]
