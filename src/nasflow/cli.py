"""What the Hydra entry points in pipelines/ share: logging, and one-line errors."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

import matplotlib
import optuna
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from nasflow.config import check_settings
from nasflow.errors import NasflowError
from nasflow.interrupts import Interrupted, raising_on_signals


def configure_logging() -> None:
    """The process-wide settings of an entry point, and the only place that makes them:
    short progress lines on the console, library chatter only when it matters, and a
    plotting backend that needs no screen. Library code never changes these."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    root.setLevel(logging.WARNING)
    logging.getLogger("nasflow").setLevel(logging.INFO)
    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    matplotlib.use("Agg")  # diagrams and plots are files; no display is needed
    # MLflow's HTTP client retries an unreachable server for minutes by default (7 tries,
    # backoff 2: about 250 s) before it says anything; a search should hear within
    # seconds. Settings the user made win.
    for key, value in _MLFLOW_SETTINGS.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """What a process that trains candidates silences (an entry point, or a Ray worker)."""
    # Candidates are trained by the dozen: Lightning's start-up lines for each would bury
    # the search's own progress; a new SQLite MLflow store logs its migrations at INFO.
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Tensors in memory need no loader workers.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 still touches torch's deprecated pytree LeafSpec; nothing to act on.
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*", category=FutureWarning)


#: Bounded MLflow HTTP retries and timeouts (about 7 s of retries, 30 s per request), and
#: MLflow's own log level, which it sets when imported (a new store logs its migrations).
_MLFLOW_SETTINGS = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def check_tracking(tracking: DictConfig) -> None:
    """Check the configured tracking store (`tracking.uri`, where the tracker has one).

    The stages that track call this before they import torch and Lightning, so that a
    server that does not answer or a SQLite file that cannot be written is named within
    the seconds start-up takes; the tracker checks again when it is built, for code that
    builds one directly.
    """
    from nasflow.tracking.store import check_store  # only the stages that track need it

    uri = tracking.get("uri")
    if isinstance(uri, str):
        check_store(uri)


def stage(function: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wrap a stage so that a bad input ends it with one line on stderr and exit status 2."""

    @functools.wraps(function)
    def run(cfg: DictConfig) -> Any:
        configure_logging()
        try:
            check_settings(cfg)
            with raising_on_signals():
                return function(cfg)
        except Interrupted as interrupt:
            # Ctrl-C or SIGTERM, in training or not: what finished is saved (the stage
            # said what, through `interrupts.keep`); say so and how to go on.
            print(interrupt.message, file=sys.stderr)
            sys.exit(interrupt.exit_status)
        except NasflowError as error:
            _fail(str(error))
        except InstantiationException as error:
            # Hydra wraps what a constructor raised; a NasflowError inside is a bad input.
            cause = error.__cause__
            _fail(str(cause) if isinstance(cause, NasflowError) else _first_line(error))
        except OmegaConfBaseException as error:  # e.g. a required value left unset
            _fail(_first_line(error))
        except KeyboardInterrupt:  # raised by hand, outside the signal handler
            print(Interrupted(signal.SIGINT).message, file=sys.stderr)
            sys.exit(130)

    return run


def run(main: Callable[[], Any]) -> None:
    """Run a `@hydra.main` function, reporting a bad config or override in one line.

    Hydra prints composition errors over a dozen lines (with its search path) unless
    HYDRA_FULL_ERROR is set, in which case it raises them: we set it, catch them here and
    print one line. Errors that are bugs keep their full traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except MissingConfigException as error:
        _fail(_missing_option(error))
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException) as error:
        lines = [_first_line(error)]
        if error.__cause__ is not None:
            lines.append(_first_line(error.__cause__))
        _fail(" ".join(lines))


def _missing_option(error: MissingConfigException) -> str:
    missing = error.missing_cfg_file or ""
    group, _, name = missing.rpartition("/")
    if group and error.options:
        return f"{group}={name} is not an option; choose from {', '.join(error.options)}"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), repr(error))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
