"""One writer per run directory: an advisory lock that dies with its holder.

The lock is a POSIX record lock (``fcntl.lockf``) on ``<run>/.rnnlab.lock``.  The
kernel drops it when the holding process exits for any reason (``kill -9``
included), so a crash never leaves a run stuck; on NFS the lock goes through the
server's lock manager, so it also holds between machines sharing a filesystem.
The file itself stays (deleting it would let two processes lock two different
files of the same name); it names the holder, so a refused writer can say who.

POSIX locks belong to a process, not to a file handle: a second lock taken by
the same process would succeed, and closing either handle would drop both.  A
per-process table refuses the second one instead.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".rnnlab.lock"
MAX_RECORD = 4096  # bytes of the holder record kept to put back (a record is about 200)

_held: dict[tuple[int, int], RunLock] = {}  # (device, inode) of lock files this process holds


def _holder_text(path: Path) -> str:
    from . import jsonfile

    schema = jsonfile.Obj(required={"pid": jsonfile.Whole(0), "host": str, "command": str, "since": str})
    try:
        info = jsonfile.read(path, schema)
        return f"process {info['pid']} on {info['host']} ({info['command']}, since {info['since']})"
    except (OSError, UserError):
        return "another process"


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for this process, or raises
    ``UserError`` naming the process that holds it."""

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    def acquire(self) -> RunLock:
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # its holder's record would overwrite the link's target
                    raise UserError(
                        f"{self.path} is a symbolic link; rnnlab does not follow links inside a run directory: "
                        "remove it (the lock file is made again)"
                    ) from None
                raise
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key in _held:
                os.close(fd)  # closing drops nothing: this process's lock lives on the other handle
                raise UserError(
                    f"{str(self.run_dir)!r} is being written by this same process; "
                    "one run directory takes one writer at a time"
                )
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    raise UserError(
                        f"{str(self.run_dir)!r} is being written by {_holder_text(self.path)}; "
                        "wait for it to finish (or stop it), or choose another --out"
                    ) from None
                raise
            # Locked, but the file may have been replaced between open and lock: lock the current one.
            try:
                same = os.stat(self.path).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd, self._key = fd, key
        _held[key] = self
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(["rnnlab", *sys.argv[1:]])[:200] if sys.argv else "rnnlab",
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        # The record of the last writer, put back if this command is refused before it writes
        # (``keep_record``), so a refused command leaves the run byte-identical.
        self._previous = os.pread(fd, MAX_RECORD, 0)
        self._keep = False
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        return self

    def keep_record(self) -> None:
        """This command is writing the run: its record stays after it ends."""
        self._keep = True

    def release(self) -> None:
        if self._fd is None:
            return
        if not self._keep:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, self._previous, 0)
        _held.pop(self._key, None)
        os.close(self._fd)  # closing drops the lock
        self._fd = self._key = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
