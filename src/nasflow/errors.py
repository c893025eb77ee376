"""The one exception type that reaches users as a single line instead of a traceback,
and the checks of settings that raise it."""

import math


class NasflowError(Exception):
    """A problem with the user's input: a bad name, value, path or file.

    The message must say which value is wrong and what is allowed. Entry points print it
    as one line and exit with status 2; everything else is a bug and keeps its traceback.
    """


def first_line(error: BaseException) -> str:
    """What an error says, in one line: the first line of its message, or its type's name
    when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_int(key: str, value: object, minimum: int = 1) -> int:
    """`value`, the setting `key`, if it is an integer of at least `minimum` (not a bool);
    otherwise a NasflowError naming the key, what it must be and what it got."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        must = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise NasflowError(f"{key} must be {must}, got {value!r}")
    return value


def check_optional_int(key: str, value: object, minimum: int = 1) -> int | None:
    """`check_int`, with None allowed (an unset limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NasflowError(f"{key} must be an integer >= {minimum} or null, got {value!r}")
    return value


def check_number(
    key: str, value: object, low: float = 0.0, high: float = math.inf, open_low: bool = False
) -> float:
    """`value` as a float if it is a finite number (not a bool) in [low, high), or in
    (low, high) with `open_low`; otherwise a NasflowError naming the key and the range."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
        and value < high
    )
    if not ok:
        lower = f"> {low}" if open_low else f">= {low}"
        allowed = f"{lower} and < {high}" if math.isfinite(high) else lower
        raise NasflowError(f"{key} must be a number {allowed}, got {value!r}")
    assert isinstance(value, int | float)
    return float(value)
