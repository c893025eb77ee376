"""Several objectives at once: what they are, and the Pareto front of what a search found.

An objective names a measure of an evaluated candidate and whether more or less of it is
better: ``val_acc:max``, ``params:min``. Written in config as ``search.objectives``, a
list of such strings (``[val_acc:max, params:min]`` on the command line) or of one-key
mappings (``- val_acc: max`` in YAML).

The front is the set of candidates no other candidate beats on every objective at once
(non-dominated); the hypervolume is the volume of objective space the front dominates
up to a reference point, one number that grows whenever the front improves anywhere.
The arithmetic (non-dominated filtering, Pareto ranks, the hypervolume) is moocore's,
the C library of the people who wrote the hypervolume algorithms; crowding distance,
NSGA-II's tie-break, is a few lines of numpy here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasflow.errors import NasflowError
from nasflow.records import Evaluation

#: The measures an objective may name: the estimator's score, the built network's size,
#: and the metrics a training or a table reports.
MEASURES = ("score", "val_acc", "val_loss", "train_loss", "params", "flops", "latency_ms")
DIRECTIONS = {"max": True, "maximize": True, "min": False, "minimize": False}
#: What a multi-objective strategy optimises when ``search.objectives`` is empty: the
#: search signal against the network's size, the trade-off most NAS users look for.
DEFAULT_OBJECTIVES = ("score:max", "params:min")


@dataclass(frozen=True)
class Objective:
    """One measure to optimise: its name (one of `MEASURES`) and its direction."""

    name: str
    maximize: bool

    def value(self, evaluation: Evaluation) -> float | None:
        """The measure of `evaluation`, or None when it has none (a failed candidate)."""
        if self.name == "score":
            found: Any = evaluation.score
        elif self.name in ("params", "flops"):
            found = getattr(evaluation, self.name)
        else:
            found = evaluation.metrics.get(self.name)
            if found is None and self.name == "val_acc":  # an estimator whose score it is
                found = evaluation.score
        if found is None or not math.isfinite(float(found)):
            return None
        return float(found)

    def __str__(self) -> str:
        return f"{self.name}:{'max' if self.maximize else 'min'}"


def parse_objectives(spec: Sequence[Any] | None, key: str = "search.objectives") -> list[Objective]:
    """The objectives `spec` lists (``"val_acc:max"`` strings or ``{val_acc: max}``
    mappings), or a NasflowError naming the first bad entry and what is allowed."""
    objectives: list[Objective] = []
    for entry in spec or ():
        if isinstance(entry, Mapping) and len(entry) == 1:
            name, direction = next(iter(entry.items()))
        elif isinstance(entry, str) and entry.count(":") == 1:
            name, direction = (part.strip() for part in entry.split(":"))
        else:
            raise NasflowError(
                f"{key} has {entry!r}; write each objective as name:max or name:min, "
                "e.g. [val_acc:max,params:min]"
            )
        name, direction = str(name), str(direction).lower()
        if name not in MEASURES:
            raise NasflowError(
                f"{key} names {name!r}, which is not a measure; choose from {', '.join(MEASURES)}"
            )
        if direction not in DIRECTIONS:
            raise NasflowError(f"{key} has {name}:{direction}; the direction is max or min")
        if any(o.name == name for o in objectives):
            raise NasflowError(f"{key} names {name!r} twice")
        objectives.append(Objective(name, DIRECTIONS[direction]))
    return objectives


def multi_objectives(spec: Sequence[Any] | None, strategy: str) -> list[Objective]:
    """The two or more objectives of a multi-objective strategy: `spec`'s, or
    `DEFAULT_OBJECTIVES` when it names none; a NasflowError for exactly one."""
    objectives = parse_objectives(spec or DEFAULT_OBJECTIVES)
    if len(objectives) < 2:
        raise NasflowError(
            f"strategy={strategy} optimises two objectives or more, but search.objectives "
            f"names one ({objectives[0]}); add another, e.g. "
            f"search.objectives=[{objectives[0]},params:min], or use a single-objective strategy"
        )
    return objectives


def objective_vector(evaluation: Evaluation, objectives: Sequence[Objective]) -> np.ndarray | None:
    """The evaluation's measures in `objectives`' order, or None if any is missing."""
    values = [objective.value(evaluation) for objective in objectives]
    if any(v is None for v in values):
        return None
    return np.array(values, dtype=float)


def maximize_flags(objectives: Sequence[Objective]) -> list[bool]:
    return [objective.maximize for objective in objectives]


def oriented(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """`points` turned so that every objective is minimised (the maximised ones negated)."""
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    return np.asarray(points, dtype=float).reshape(-1, len(signs)) * signs


def front_mask(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Which rows of `points` are non-dominated; of several equal rows, only the first."""
    import moocore

    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=list(maximize)), dtype=bool)


def pareto_ranks(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Each row's non-dominated rank: 0 on the front, 1 on the front of the rest, ..."""
    import moocore

    points = np.asarray(points, dtype=float)
    if len(points) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(points, maximise=list(maximize)), dtype=int)


def hypervolume(points: np.ndarray, reference: Sequence[float], maximize: Sequence[bool]) -> float:
    """The volume that `points` dominate up to `reference` (0 when none is better than it on
    every objective); points on the wrong side of the reference add nothing."""
    import moocore

    turned, ref, inside = _within(points, reference, maximize)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(turned[inside], ref=ref))


def _within(
    points: np.ndarray, reference: Sequence[float], maximize: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`points` and `reference` turned to minimisation, and which points beat the
    reference on every objective (only they dominate any volume up to it)."""
    turned = oriented(points, maximize)
    ref = oriented(np.asarray(reference, dtype=float), maximize)[0]
    return turned, ref, (turned < ref).all(axis=1)


def hypervolume_contributions(
    points: np.ndarray, reference: Sequence[float], maximize: Sequence[bool]
) -> np.ndarray:
    """How much hypervolume (up to `reference`) each of `points`, a front, alone adds:
    what losing it would cost; 0 for a point on the wrong side of the reference."""
    import moocore

    turned, ref, inside = _within(points, reference, maximize)
    found = np.zeros(len(turned))
    if inside.any():
        found[inside] = moocore.hv_contributions(turned[inside], ref=ref)
    return found


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row among the rows (Deb et al. 2002): per
    objective, the gap between its two neighbours over the objective's range, summed;
    the extremes of any objective are infinitely far, so a front keeps its ends."""
    points = np.asarray(points, dtype=float)
    count, dims = points.shape
    distance = np.zeros(count)
    if count <= 2:
        return np.full(count, np.inf)
    for d in range(dims):
        order = np.argsort(points[:, d], kind="stable")
        values = points[order, d]
        span = values[-1] - values[0]
        distance[order[[0, -1]]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def reference_point(
    reference: Mapping[str, float] | None, objectives: Sequence[Objective], key: str
) -> list[float]:
    """The reference point `reference` gives each objective, in their order, or a
    NasflowError naming the objectives it leaves out."""
    reference = dict(reference or {})
    if missing := [o.name for o in objectives if o.name not in reference]:
        raise NasflowError(
            f"{key} has no value for {', '.join(missing)}; give the hypervolume's reference "
            f"point for every objective, e.g. {key}={{"
            + ",".join(f"{o.name}:{'0' if o.maximize else '1e6'}" for o in objectives)
            + "}"
        )
    if extra := sorted(set(reference) - {o.name for o in objectives}):
        raise NasflowError(f"{key} names {', '.join(extra)}, which are not objectives")
    point = []
    for objective in objectives:
        value = reference[objective.name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise NasflowError(f"{key}.{objective.name} must be a finite number, got {value!r}")
        point.append(number)
    return point


def scored(
    candidates: Sequence[Any], objectives: Sequence[Objective]
) -> list[tuple[Any, np.ndarray]]:
    """The full-fidelity candidates that have every objective, each with its vector: what
    a front, its picture and its hypervolume are made of."""
    found = []
    for candidate in candidates:
        if candidate.evaluation.status == "ok":
            vector = objective_vector(candidate.evaluation, objectives)
            if vector is not None:
                found.append((candidate, vector))
    return found


def front_objectives(objectives: Sequence[Objective]) -> list[Objective]:
    """What a search's front is over: its objectives, or `DEFAULT_OBJECTIVES` when it
    names none."""
    return list(objectives) or parse_objectives(DEFAULT_OBJECTIVES)


def front_records(
    candidates: Sequence[Any], objectives: Sequence[Objective]
) -> list[dict[str, Any]]:
    """The non-dominated candidates (full-fidelity ones with every objective) over
    `objectives`, best first by the first objective: iteration, proposal, architecture
    and their objectives by name."""
    found = scored(candidates, objectives)
    if not found:
        return []
    mask = front_mask(np.stack([v for _, v in found]), maximize_flags(objectives))
    front = [entry for entry, on in zip(found, mask, strict=True) if on]
    first = objectives[0]
    front.sort(key=lambda entry: -entry[1][0] if first.maximize else entry[1][0])
    return [
        {
            "iteration": candidate.iteration,
            "proposal": candidate.proposal,
            "id": candidate.arch.id,
            "description": candidate.arch.describe(),
            "architecture": candidate.arch.to_json(),
            "objectives": {o.name: float(v) for o, v in zip(objectives, vector, strict=True)},
        }
        for candidate, vector in front
    ]


SCALARIZATIONS = ("weighted", "chebyshev")


@dataclass(frozen=True)
class Scalarization:
    """One score from several objectives, for a single-objective strategy.

    Each objective is first its improvement over the reference point, relative to the
    reference's size (``(f - r) / |r|`` for a maximised one, ``(r - f) / |r|`` for a
    minimised one; ``|r|`` is 1 when the reference is 0), so that accuracy, parameters
    and milliseconds are comparable. ``weighted`` sums them with `weights`;
    ``chebyshev`` takes the smallest weighted one, so that no objective is left behind
    (its optimum can lie anywhere on the front, not only where the front is convex).
    """

    kind: str
    objectives: tuple[Objective, ...]
    weights: tuple[float, ...]
    reference: tuple[float, ...]

    def __call__(self, evaluation: Evaluation) -> float | None:
        vector = objective_vector(evaluation, self.objectives)
        if vector is None:
            return None
        gains = []
        for objective, value, ref in zip(self.objectives, vector, self.reference, strict=True):
            scale = abs(ref) or 1.0
            gains.append((value - ref if objective.maximize else ref - value) / scale)
        weighted = [w * g for w, g in zip(self.weights, gains, strict=True)]
        return float(sum(weighted) if self.kind == "weighted" else min(weighted))


def scalarization(
    kind: str | None,
    weights: Sequence[float] | None,
    objectives: Sequence[Objective],
    reference: Sequence[float] | None,
) -> Scalarization | None:
    """``search.scalarize`` with ``search.weights`` over the objectives, or None when
    `kind` is None; a NasflowError for a bad kind, weights or a missing reference."""
    if kind is None:
        return None
    if kind not in SCALARIZATIONS:
        raise NasflowError(
            f"search.scalarize={kind} is not a scalarization; choose from "
            f"{', '.join(SCALARIZATIONS)}"
        )
    if len(objectives) < 2:
        raise NasflowError("search.scalarize needs two or more search.objectives to combine")
    if reference is None:
        raise NasflowError(
            "search.scalarize measures each objective from search.reference; set it, e.g. "
            "'++search.reference={val_acc:0.9,latency_ms:1}'"
        )
    chosen = list(weights) if weights else [1.0] * len(objectives)
    if len(chosen) != len(objectives):
        raise NasflowError(
            f"search.weights has {len(chosen)} weights for {len(objectives)} objectives"
        )
    if any(not math.isfinite(float(w)) or float(w) < 0 for w in chosen) or not any(chosen):
        raise NasflowError(f"search.weights={chosen} must be non-negative numbers, not all 0")
    return Scalarization(
        kind, tuple(objectives), tuple(float(w) for w in chosen), tuple(float(r) for r in reference)
    )
