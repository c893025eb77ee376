"""What the Hydra entry points in pipelines/ share: logging, and one-line errors."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from nasflow.config import register_configs
from nasflow.errors import NasflowError

register_configs()


def configure_logging() -> None:
    """Short progress lines on the console; library chatter only when it matters."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    root.setLevel(logging.WARNING)
    logging.getLogger("nasflow").setLevel(logging.INFO)


def stage(function: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a stage so that a bad input ends it with one line on stderr and exit status 2."""

    @functools.wraps(function)
    def run(cfg: DictConfig) -> Any:
        configure_logging()
        try:
            return function(cfg)
        except NasflowError as error:
            _fail(str(error))
        except InstantiationException as error:
            # Hydra wraps what a constructor raised; a NasflowError inside is a bad input.
            cause = error.__cause__
            _fail(str(cause) if isinstance(cause, NasflowError) else str(error).splitlines()[0])

    return run


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
