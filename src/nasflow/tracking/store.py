"""The start-up check of a tracking store: can it be used, decided within seconds.

Light on purpose (the standard library and requests): the entry points run it before
they import torch, Lightning and MLflow, so that a bad ``tracking.uri`` is reported in
the time start-up takes, not after it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlparse

from nasflow.errors import NasflowError
from nasflow.outputs import unwritable

#: Seconds the check waits for an HTTP tracking server.
PROBE_TIMEOUT = 5.0


def check_store(uri: str) -> None:
    """A NasflowError naming `uri` unless its store can be used, decided within seconds.

    An HTTP server must answer its health check (or refuse it for want of a login); a
    SQLite file must be in a writable folder and, if it exists, be a database; a file
    store's folder must be writable. MLflow itself would retry an unreachable server for
    minutes, or a bad SQLite path 15 times, before saying anything.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        import requests

        try:
            answer = requests.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT)
        except requests.RequestException as error:
            raise NasflowError(
                f"tracking.uri={uri} is not reachable ({_reason(error)}); start the tracking "
                "server, fix tracking.uri, or set tracking=none"
            ) from None
        # An MLflow server answers /health; one behind a login may refuse it. Anything
        # else (a 404 from another server, a 502 from a gateway) is not a store to use.
        if answer.status_code >= 400 and answer.status_code not in (401, 403):
            raise NasflowError(
                f"tracking.uri={uri} does not answer as an MLflow tracking server (GET "
                f"/health: HTTP {answer.status_code} {answer.reason}); fix tracking.uri, "
                "or set tracking=none"
            )
    elif parsed.scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        if path in ("", ":memory:") or path == uri:
            return
        file = Path(path)
        if (reason := unwritable(file.parent)) is not None:
            raise NasflowError(
                f"tracking.uri={uri}: cannot write the SQLite file into {file.parent} ({reason})"
            )
        if file.exists():
            try:
                with sqlite3.connect(f"file:{file}?mode=rw", uri=True, timeout=5) as db:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as error:
                raise NasflowError(
                    f"tracking.uri={uri}: {file} is not a usable SQLite database ({error})"
                ) from None
    elif parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme == "file" else uri)
        if (reason := unwritable(folder)) is not None:
            raise NasflowError(f"tracking.uri={uri} is not a writable folder ({reason})")


def _reason(error: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, on one line."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
