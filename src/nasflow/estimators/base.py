"""How a candidate's performance is estimated, and the record an estimate produces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from nasflow.search_spaces.base import Architecture

Status = Literal["ok", "failed"]


@dataclass
class Evaluation:
    """What one estimate of one architecture found.

    Attributes:
        status: "ok", or "failed" when training raised, diverged or ran out of memory.
        score: The search signal, higher is better (validation accuracy); None if failed.
        metrics: Final metrics by name, e.g. val_acc, val_loss, train_loss.
        history: Per-epoch metrics, one dict per epoch with an "epoch" key.
        params: Trainable parameters of the built network.
        flops: Floating-point operations of one forward pass of one image.
        seconds: Wall time of the estimate.
        error: Why it failed, one line.
    """

    status: Status
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    params: int | None = None
    flops: int | None = None
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


class Estimator(ABC):
    """Estimates how well an architecture performs; the strategies never see how."""

    @abstractmethod
    def evaluate(self, arch: Architecture, seed: int) -> Evaluation:
        """Estimate `arch`, drawing any randomness from `seed`. Never raises for a bad
        candidate: failures come back as ``Evaluation(status="failed")``."""
