"""What the stages record about a run, independent of where it goes.

`Tracker` itself records nothing (``tracking=none``); `MlflowTracker` records to MLflow.
Stages talk only to this interface, so they never import mlflow.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nasflow.errors import NasflowError
from nasflow.registry import TRACKERS, Component

if TYPE_CHECKING:
    from torch import nn

    from nasflow.loop import Candidate
    from nasflow.records import Task
    from nasflow.search_spaces.base import Graph


#: The tag naming the lock a stage held when it opened a run (`ProcessLock.owner`).
OWNER_TAG = "nasflow.owner"


class TrackingError(NasflowError):
    """The tracking store failed after the start (unreachable, full, locked): the run
    stops cleanly, keeping what finished, and says how to continue."""


class Tracker(Component):
    """A tracker that keeps nothing (``tracking=none``); subclasses send runs somewhere."""

    registry = TRACKERS
    name = "none"
    #: Whether `log_artifact` keeps the files it is given: a caller draws a plot only
    #: for a tracker that keeps it (a heat map takes longer than a tiny search's epoch).
    keeps_artifacts = False

    @contextmanager
    def run(
        self,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        resume_run_id: str | None = None,
    ) -> Iterator[str | None]:
        """Open a run for a stage, or reopen `resume_run_id` (a resumed search) where it
        still exists; yields the run's id (None when nothing is tracked)."""
        yield None

    def close_stale(self, owner: str, keep: str | None = None) -> None:
        """Mark KILLED every run still open that was opened under `owner` (its `OWNER_TAG`),
        but `keep` (a run about to be resumed). The caller holds that lock, so no live
        process has such a run: a process that died (kill -9) left it open."""

    def start_candidate(self, task: Task) -> None:
        """A candidate has started (its first job is submitted): open its record, so that
        it shows as running and its epochs can be recorded as they come."""

    def log_epoch(self, task: Task, record: Mapping[str, float]) -> None:
        """Record one finished epoch of a running candidate (`record` has its "epoch")."""

    def log_candidate(self, candidate: Candidate, graphs: Sequence[Graph] = ()) -> None:
        """Record an evaluated candidate under the open search run, with its diagram."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metrics on the open run."""

    def log_dict(self, data: Any, filename: str) -> None:
        """Store `data` as a JSON artifact of the open run."""

    def log_artifact(self, path: str) -> None:
        """Store a file as an artifact of the open run."""

    def log_model(self, network: nn.Module, example: Any) -> None:
        """Store a trained network as a model of the open run."""

    def log_onnx_model(self, path: str, example: Any, output: Any) -> None:
        """Store an exported ONNX file as a model of the open run, its signature read
        from `example` (inputs) and `output` (what the model gives for them)."""

    def lightning_logger(self) -> Any:
        """A Lightning logger writing to the open run, or False."""
        return False


def git_commit() -> str:
    """The commit of the working tree, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists flattened to ``a.b.0.c -> value``, for run parameters."""
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, list | tuple):
        items = enumerate(data)  # type: ignore[assignment]
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
