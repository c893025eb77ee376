"""Package re-exports that import a module only when its name is first used (PEP 562).

A package's ``__init__`` names what it offers without importing its whole tree, so that
importing one strategy does not load every other (nor TPE's Optuna, nor Lightning).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package`, whose attribute ``name`` is the
    object of that name in its submodule ``names[name]``."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def dir_() -> list[str]:
        return sorted(names)

    return getattr_, dir_
