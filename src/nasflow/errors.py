"""The one exception type that reaches users as a single line instead of a traceback."""


class NasflowError(Exception):
    """A problem with the user's input: a bad name, value, path or file.

    The message must say which value is wrong and what is allowed. Entry points print it
    as one line and exit with status 2; everything else is a bug and keeps its traceback.
    """


def check_int(key: str, value: object, minimum: int = 1) -> int:
    """`value`, the setting `key`, if it is an integer of at least `minimum` (not a bool);
    otherwise a NasflowError naming the key, what it must be and what it got."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        must = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise NasflowError(f"{key} must be {must}, got {value!r}")
    return value
