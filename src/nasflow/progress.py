"""Per-epoch progress from wherever a candidate trains to the search that waits for it.

A training estimator calls `report_epoch` after each epoch; the executor that runs the
candidate decides where the record goes (`reporting`): the loop's callback in this
process, or a queue back to the driver from a Ray worker. Outside an executor nothing is
listening and the call does nothing, so estimators need not know how they are run.
Standard library only: a Ray worker imports it before anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Sink = Callable[[dict[str, Any]], None]

_sink: ContextVar[Sink | None] = ContextVar("nasflow_progress_sink", default=None)


def report_epoch(record: dict[str, Any]) -> None:
    """Pass one finished epoch's metrics (with its "epoch", from 0) to whoever listens."""
    sink = _sink.get()
    if sink is not None:
        sink(dict(record))


@contextmanager
def reporting(sink: Sink) -> Iterator[None]:
    """Send the epochs reported inside the block to `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
