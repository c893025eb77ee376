"""Ctrl-C and SIGTERM as one exception that reaches the stage, wherever it lands.

Lightning catches `KeyboardInterrupt` inside `Trainer.fit` and exits with status 1, so a
stage interrupted while training (where a search spends almost all of its time) would
never hear of it. An entry point therefore turns both signals into `Interrupted`, which
derives from `BaseException` but not from `KeyboardInterrupt`: Lightning tears its run
down and re-raises it, the tracker marks the run KILLED, and the stage wrapper prints what
was kept and exits 130 (SIGINT) or 143 (SIGTERM), as a shell does for a killed command.

What was kept is the stage's to say: it calls `keep` once it knows (a search: its
checkpoint), and the wrapper prints the latest such note.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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


@contextmanager
def raising_on_signals() -> Iterator[None]:
    """While open, SIGINT and SIGTERM raise `Interrupted` in the main thread."""
    global _note
    _note = _NOTHING_KEPT
    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
