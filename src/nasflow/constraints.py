"""Hardware constraints, checked before any training.

A constraint bounds a cheap measure of a proposal: its parameters, its FLOPs (torch's
counter) or its latency (measured for real on the target, `nasflow.measure.latency_ms`),
written as ``params<=50000`` or ``latency_ms<5`` in ``search.constraints`` (quoted on the
command line: ``'search.constraints=["params<=5e4"]'``). These measures need only the
built network, so the search loop's `Screen` takes them as soon as the strategy proposes:
an infeasible proposal is recorded as filtered, with the reason, and the strategy forgets
it, without a second of training. A feasible one trains, and its cheap measures join its
evaluation, where the objectives (`nasflow.pareto`) read them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nasflow.errors import NasflowError
from nasflow.records import Evaluation

#: The measures a proposal has before training.
CHEAP = ("params", "flops", "latency_ms")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_PATTERN = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``name op bound``: a cheap measure and the bound a feasible proposal keeps to."""

    name: str
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.bound:g}"


def parse_constraints(
    spec: Sequence[Any] | None, key: str = "search.constraints"
) -> list[Constraint]:
    """The constraints `spec` lists, or a NasflowError naming the first bad one."""
    found = []
    for entry in spec or ():
        match = _PATTERN.match(str(entry))
        if match is None:
            raise NasflowError(
                f"{key} has {entry!r}; write each constraint as measure<=bound (or <, >=, >), "
                f"e.g. '{key}=[\"params<=5e4\"]'"
            )
        name, op, bound = match.groups()
        if name not in CHEAP:
            raise NasflowError(
                f"{key} bounds {name!r}, which is not measured before training; choose from "
                f"{', '.join(CHEAP)}"
            )
        try:
            number = float(bound.replace("_", ""))
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise NasflowError(f"{key} has {entry!r}: the bound {bound!r} is not a number")
        found.append(Constraint(name, op, number))
    return found


@dataclass
class Screen:
    """A proposal's cheap measures, taken before training, and the constraints they meet.

    Args:
        measure: The measures of an architecture by name (`needed` of them at least),
            e.g. `nasflow.measure.cheap_measures` of its built network.
        constraints: What a feasible proposal keeps to.
        needed: The measures to take: those the constraints and the objectives name.

    Measures are kept per architecture, and saved with the search (`state_dict`): a
    latency measured again after a resume could fall on the other side of a bound.
    """

    measure: Callable[[Any, Sequence[str]], dict[str, float]]
    constraints: Sequence[Constraint] = ()
    needed: Sequence[str] = ()
    known: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Every proposal filtered out, in order: its proposal index, architecture, measures
    #: and the reason (the search stage writes them to filtered.jsonl).
    filtered: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, proposal: int, arch: Any, reason: str) -> None:
        """Record that proposal `proposal`, `arch`, is filtered out for `reason`."""
        self.filtered.append(
            {
                "proposal": proposal,
                "id": arch.id,
                "description": arch.describe(),
                "architecture": arch.to_json(),
                "status": "filtered",
                "reason": reason,
                **self.known.get(arch.id, {}),
            }
        )

    def measures(self, arch: Any) -> dict[str, float]:
        key = arch.id
        if key not in self.known:
            self.known[key] = {k: float(v) for k, v in self.measure(arch, self.needed).items()}
        return self.known[key]

    def reason(self, arch: Any) -> str | None:
        """Why `arch` is infeasible (the first constraint it breaks), or None."""
        if not self.constraints:
            return None
        try:
            measures = self.measures(arch)
        except Exception as error:  # a proposal that cannot even be built
            return f"its network could not be built to measure it ({type(error).__name__}: {error})"
        for constraint in self.constraints:
            value = measures[constraint.name]
            if not constraint.holds(value):
                return f"{constraint.name} {value:,.6g} breaks {constraint}"
        return None

    def annotate(self, arch: Any, evaluation: Evaluation) -> None:
        """Add the proposal's cheap measures to its evaluation: latency to the metrics,
        parameters and FLOPs where the estimator left them out."""
        if not self.needed:
            return
        try:
            measures = self.measures(arch)
        except Exception:  # it failed to build for the estimator too; nothing to add
            return
        for name, value in measures.items():
            if name in ("params", "flops"):
                if getattr(evaluation, name) is None:
                    setattr(evaluation, name, int(value))
            else:
                evaluation.metrics.setdefault(name, value)

    def state_dict(self) -> dict[str, Any]:
        return {
            "known": {key: dict(values) for key, values in self.known.items()},
            "filtered": [dict(record) for record in self.filtered],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.known = {key: dict(values) for key, values in state.get("known", {}).items()}
        self.filtered = [dict(record) for record in state.get("filtered", [])]
