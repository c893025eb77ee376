"""One process at a time on a piece of state: a search's checkpoint, a stage's outputs.

A `ProcessLock` is an advisory lock (``flock``) on a small file that also records who
holds it (its PID, for the refusal a second process gets, and the tracking run it has
open). The operating system drops the lock when its holder dies, kill -9 included, so a
lock that can be taken is never stale; the runs a dead holder left open carry the lock's
`owner` tag, by which the next holder closes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from nasflow.errors import NasflowError

#: The lock file a stage keeps in its output folder (git and DVC ignore it).
LOCK_NAME = ".nasflow.lock"


class ProcessLock:
    """An exclusive lock on `path`, held from `acquire` until `release` or the process ends.

    Args:
        path: The lock file (created with its folder if missing).
        what: What the lock protects, for the refusal, e.g. "the search checkpoint ...".
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def owner(self) -> str:
        """Who works under this lock, as a short tag for the runs it opens: the same for
        every process on this machine and path. Once this process holds the lock, a run
        with its owner tag that is still open was left by a process that died."""
        where = f"{socket.gethostname()}:{self.path.resolve()}"
        return hashlib.sha256(where.encode()).hexdigest()[:16]

    def acquire(self) -> ProcessLock:
        """Take the lock, or raise a NasflowError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd).get("pid", "unknown")
            os.close(fd)
            raise NasflowError(
                f"{self.what} is in use by another process (PID {holder}, lock {self.path}); "
                "wait for it to finish or stop it"
            ) from None
        self._fd = fd
        self.record()
        return self

    def record(self, **info: Any) -> None:
        """Write this process's pid and `info` (e.g. its run id) into the lock file."""
        assert self._fd is not None, "record needs the lock"
        data = json.dumps({"pid": os.getpid(), **info}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Let go of the lock (the file stays, saying who held it last)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # written half by a process that died mid-write
        return {}
    return data if isinstance(data, dict) else {}
