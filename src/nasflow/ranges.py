"""The allowed range of a numeric setting, declared with its default, and its check.

A setting's range is part of its annotation in the constructor (or stage dataclass) that
holds its default, e.g. ``epochs: Annotated[int, Ge(1)] = 10``, written with the
`annotated_types` constraints ``Gt``, ``Ge``, ``Lt``, ``Le`` and ``Interval``. OmegaConf
checks the base type at composition (a word where a number goes); `nasflow.schemas`
records the range next to the type in schemas.json, and `nasflow.config.check_settings`
checks every value against it when a stage starts, so that ``estimator.epochs=0`` ends in
one line naming the key instead of an IndexError deep in training.

A range on a list's or a dict's element type (``list[Annotated[int, Ge(1)]]``) applies to
each element. This module imports nothing of nasflow's but its errors, so any module can
use the common ranges below in its signatures.
"""

from __future__ import annotations

import math
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Union

from annotated_types import Ge, Gt, Interval

from nasflow.errors import NasflowError

#: The ranges most settings have.
PositiveInt = Annotated[int, Ge(1)]  # counts: epochs, batch sizes, budgets, tries
NonNegativeInt = Annotated[int, Ge(0)]  # counts that may be zero: warm-up epochs
Seed = Annotated[int, Ge(0)]  # numpy's and torch's generators refuse negative seeds
PositiveFloat = Annotated[float, Gt(0)]  # learning rates, time and cost limits
NonNegativeFloat = Annotated[float, Ge(0)]  # weight decays, loss weights, margins
Decay = Annotated[float, Interval(ge=0, lt=1)]  # a moving average's or momentum's decay
Probability = Annotated[float, Interval(ge=0, le=1)]  # crossover, exploration rates

#: The bounds a range may have, in the order messages state them.
BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def declared(annotation: Any) -> dict[str, Any] | None:
    """The bounds `annotation` declares, e.g. ``{"ge": 1}`` for ``Annotated[int, Ge(1)]``,
    looking through ``Optional`` and into a list's or a dict's element type; None when it
    declares none."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        found = {
            key: getattr(constraint, key)
            for constraint in annotation.__metadata__
            for key in BOUNDS
            if getattr(constraint, key, None) is not None
        }
        return found or declared(args[0])
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        return declared(others[0]) if len(others) == 1 else None
    if origin in (list, tuple, Sequence) and args:
        return declared(args[0])
    if origin in (dict, Mapping) and len(args) == 2:
        return declared(args[1])
    return None


def unwrapped(annotation: Any) -> Any:
    """`annotation` without its ``Annotated`` layer: the type OmegaConf checks."""
    if typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def allowed(kind: str, bounds: Mapping[str, Any], optional: bool = False) -> str:
    """What a setting of `kind` ("int" or "float") with `bounds` may be, as a message says
    it: "a positive integer", "a number > 0 and < 1", "an integer >= 1 or null"."""
    if kind == "int" and dict(bounds) == {"ge": 1} and not optional:
        return "a positive integer"  # the wording of `nasflow.errors.check_int`
    noun = "an integer" if kind == "int" else "a number"
    limits = " and ".join(f"{_SYMBOLS[k]} {bounds[k]}" for k in BOUNDS if k in bounds)
    return f"{noun} {limits}{' or null' if optional else ''}"


def check(key: str, value: Any, kind: str, bounds: Mapping[str, Any], optional: bool) -> None:
    """A NasflowError naming `key`, the range and `value` unless `value` is a finite
    number of `kind` ("int" or "float"; a bool is neither) within `bounds`, or None where
    the setting is `optional`."""
    if value is None and optional:
        return
    number = (
        not isinstance(value, bool)
        and isinstance(value, int if kind == "int" else int | float)
        and math.isfinite(value)
    )
    if not (number and all(BOUNDS[k](value, b) for k, b in bounds.items())):
        raise NasflowError(f"{key} must be {allowed(kind, bounds, optional)}, got {value!r}")
