"""Which searched architecture to retrain (``retrain.select``).

* ``best`` (the default): the best score, the search's ``best_architecture.json``.
* ``knee``: the front's knee (`pareto.json`): with the objectives scaled to [0, 1] over
  the front, the member farthest from the line through its two ends (two objectives),
  or nearest the ideal point (more): where giving up a little of one objective stops
  buying much of another.
* ``smallest_within:0.5``: the candidate with the fewest parameters whose score is
  within 0.5 points (of a percentage score: 0.005 of a fraction) of the best.
* an integer ``i``: member ``i`` of the front, best first by its first objective.

The choice is made from the search's outputs alone (`history.jsonl`, `pareto.json`), so
retrain can change its choice without searching again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from nasflow.errors import NasflowError
from nasflow.pareto import maximize_flags, parse_objectives

RULES = "best, knee, smallest_within:<points> or an index into the front"
_WITHIN = re.compile(r"^smallest_within\s*:\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)$")


def parse_rule(spec: Any, key: str = "retrain.select") -> tuple[str, float | int | None]:
    """(rule, its argument): ``("best", None)``, ``("knee", None)``,
    ``("smallest_within", points)`` or ``("index", i)``; a NasflowError otherwise."""
    if isinstance(spec, dict) and len(spec) == 1:  # {smallest_within: 0.5} in YAML
        name, value = next(iter(spec.items()))
        spec = f"{name}:{value}"
    if isinstance(spec, bool) or (isinstance(spec, int) and spec < 0):
        raise NasflowError(f"{key}={spec} is not a rule; choose from {RULES}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return "index", int(spec)
    text = str(spec).strip()
    if text in ("best", "knee"):
        return text, None
    if (match := _WITHIN.match(text)) is not None:
        return "smallest_within", float(match.group(1))
    raise NasflowError(f"{key}={spec} is not a rule; choose from {RULES}")


def select(
    spec: Any, history: Sequence[dict[str, Any]], pareto: dict[str, Any]
) -> dict[str, Any] | None:
    """The history record (``history.jsonl``'s) of the candidate `spec` picks, with the
    rule's reason as ``selected``; None for ``best`` (the search's own choice). `pareto`
    is ``pareto.json``: the objectives (``name:max``) and the front."""
    rule, argument = parse_rule(spec)
    front = pareto.get("front", [])
    if rule == "best":
        return None
    by_iteration = {record["iteration"]: record for record in history}
    if rule == "smallest_within":
        ok = [r for r in history if r.get("status") == "ok" and r.get("score") is not None]
        if not ok:
            raise NasflowError("retrain.select=smallest_within: no candidate has a full score")
        best = max(r["score"] for r in ok)
        margin = float(argument) / 100  # type: ignore[arg-type]
        near = [r for r in ok if r["score"] >= best - margin - 1e-12 and r.get("params")]
        chosen = min(near, key=lambda r: (r["params"], -r["score"], r["iteration"]))
        return {
            **chosen,
            "selected": f"the smallest within {argument:g} points of the best score "
            f"{best:.4f}: {chosen['params']:,} parameters, score {chosen['score']:.4f}",
        }
    if not front:
        raise NasflowError(
            f"retrain.select={spec} picks from the front, but pareto.json has no member"
        )
    if rule == "index":
        index = int(argument)  # type: ignore[arg-type]
        if not 0 <= index < len(front):
            raise NasflowError(
                f"retrain.select={index} but the front has {len(front)} members "
                f"(0 to {len(front) - 1})"
            )
        member = front[index]
        reason = f"member {index} of the front of {len(front)}"
    else:
        objectives = parse_objectives(pareto["objectives"], "pareto.json objectives")
        points = np.array([[m["objectives"][o.name] for o in objectives] for m in front])
        member = front[knee(points, maximize_flags(objectives))]
        reason = f"the knee of the front of {len(front)}"
    record = by_iteration.get(member["iteration"])
    if record is None:
        raise NasflowError(
            f"pareto.json names candidate {member['iteration']}, not in history.jsonl"
        )
    return {**record, "selected": f"{reason}: {member['objectives']}"}


def knee(points: np.ndarray, maximize: Sequence[bool]) -> int:
    """The index of the knee among the front's `points` (see the module's docstring)."""
    points = np.asarray(points, dtype=float)
    if len(points) <= 2:
        return 0
    up = points * np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)  # larger is better
    low, high = up.min(axis=0), up.max(axis=0)
    scaled = (up - low) / np.where(high > low, high - low, 1.0)
    if points.shape[1] == 2:
        start, end = scaled[np.argmax(scaled[:, 0])], scaled[np.argmax(scaled[:, 1])]
        direction = end - start
        norm = float(np.linalg.norm(direction))
        if norm == 0:
            return 0
        offsets = scaled - start
        distances = np.abs(direction[0] * offsets[:, 1] - direction[1] * offsets[:, 0]) / norm
        return int(np.argmax(distances))
    return int(np.argmin(np.linalg.norm(1.0 - scaled, axis=1)))


def ranked(
    spec: Any,
    history: Sequence[dict[str, Any]],
    pareto: dict[str, Any],
    first: dict[str, Any],
    k: int,
) -> list[dict[str, Any]]:
    """The `k` candidates ``retrain.top_k`` retrains, `first` (what `spec` selects) first:
    then, for ``knee`` or an index, the other members of the front in its order; for
    ``best`` and ``smallest_within``, the other full-fidelity candidates by score. Fewer
    when there are fewer."""
    rule, _ = parse_rule(spec)
    by_iteration = {record["iteration"]: record for record in history}
    if rule in ("knee", "index"):
        order = [by_iteration[m["iteration"]] for m in pareto.get("front", [])]
    else:
        ok = [r for r in history if r.get("status") == "ok" and r.get("score") is not None]
        order = sorted(ok, key=lambda r: (-r["score"], r["iteration"]))
    chosen = [first]
    for record in order:
        if len(chosen) == k:
            break
        if record["id"] not in {c["id"] for c in chosen}:
            chosen.append(record)
    return chosen
