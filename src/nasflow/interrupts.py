"""Ctrl-C and SIGTERM as one exception that reaches the stage, wherever it lands.

Lightning catches `KeyboardInterrupt` inside `Trainer.fit` and exits with status 1, so a
stage interrupted while training (where a search spends almost all of its time) would
never hear of it. An entry point therefore turns both signals into `Interrupted`, which
derives from `BaseException` but not from `KeyboardInterrupt`: Lightning tears its run
down and re-raises it, the tracker marks the run KILLED, and the stage wrapper prints what
was kept and exits 130 (SIGINT) or 143 (SIGTERM), as a shell does for a killed command.

What was kept is the stage's to say: it calls `keep` once it knows (a search: its
checkpoint), and the wrapper prints the latest such note.

A write that must not be cut in half (a tracking store's transaction: cut, it would keep
the SQLite store locked while the run is marked KILLED) runs `deferred`: a signal that
arrives meanwhile takes effect when the write is done.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_NOTHING_KEPT = "nothing was written; run the stage again to start it afresh"
_note = _NOTHING_KEPT


class Interrupted(BaseException):
    """The process received SIGINT or SIGTERM.

    Attributes:
        signum: The signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum

    @property
    def message(self) -> str:
        """One line: which signal, what was kept and how to continue."""
        return f"interrupted ({signal.Signals(self.signum).name}); {_note}"


def keep(note: str) -> None:
    """Say what an interruption from now on leaves behind and how to go on, e.g. "the
    checkpoint ... keeps 12 finished candidates; run the search again to resume"."""
    global _note
    _note = note


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], Any]) -> Iterator[None]:
    """While open, `handler` takes SIGINT and SIGTERM; then the handlers before it again."""
    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            # None: a handler set outside Python; the default is what it would be.
            signal.signal(sig, signal.SIG_DFL if before is None else before)


@contextmanager
def raising_on_signals() -> Iterator[None]:
    """While open, SIGINT and SIGTERM raise `Interrupted` in the main thread."""
    global _note
    _note = _NOTHING_KEPT
    with _handled_by(_raise):
        yield


_deferring = False


@contextmanager
def deferred() -> Iterator[None]:
    """While open, SIGINT and SIGTERM wait: each one that arrives is delivered again, to
    the handler it would have met, when the block ends (so a write inside ends first).
    Only the main thread takes signals; elsewhere, and inside another `deferred`, this
    changes nothing."""
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    _deferring = True
    try:
        with _handled_by(lambda signum, _: pending.append(signum)):
            yield
    finally:
        _deferring = False
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
