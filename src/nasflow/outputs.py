"""Where a stage's outputs go: checked writable before any work, written aside, and put in
place together at the end, so that a failure never leaves a mix of old and new files.

Only the standard library: every stage uses it, prepare included.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nasflow.errors import NasflowError


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex (how model.json pins its checkpoint)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_text(data: Any) -> str:
    """How nasflow writes a JSON file: indented, keys sorted, one final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV table (for DVC plots) with `header`, lines ending in a bare newline."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return table.getvalue()


def check_writable(folder: str | Path, key: str) -> Path:
    """`folder`, once a probe file could be written into it; otherwise a NasflowError
    naming the setting `key`, the folder and why.

    Folders the probe had to create are removed again, so a check leaves no trace. Stages
    call this for every output location before they start work, so a bad path costs
    seconds instead of the whole run.
    """
    folder = Path(folder)
    reason = unwritable(folder)
    if reason is not None:
        raise NasflowError(f"{key}={folder} is not a writable folder: {reason}")
    return folder


def unwritable(folder: Path) -> str | None:
    """Why no file can be written into `folder` (created if need be), or None if one can."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file" if existing != folder else "it is a file"
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    finally:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
    return None


class OutputSet:
    """A stage's output files, written aside and put in place together at the end.

    Each file is written into a staging folder beside the outputs (same file system), under
    its final name; `commit` then renames them into place one by one, `last` last (the
    file later stages look for first, e.g. model.json), and `discard` (or leaving the
    ``with`` block by an exception) removes them, leaving the previous outputs as they
    were. A reader therefore sees the previous set, or the new set once `last` appears.

    Args:
        folder: Where the outputs go; checked writable at once (`check_writable`).
        key: The setting that names `folder`, for errors.
        last: The file renamed last; None: any order.
    """

    def __init__(self, folder: str | Path, key: str, last: str | None = None) -> None:
        self.folder = check_writable(folder, key)
        self.key = key
        self.last = last
        self._staging: Path | None = None
        if self.folder.is_dir():
            _remove_dead_staging(self.folder)

    @property
    def staging(self) -> Path:
        if self._staging is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            prefix = f".staging-{os.getpid()}-"
            self._staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=prefix))
        return self._staging

    def path(self, name: str) -> Path:
        """Where to write the output `name` (for a writer that wants a path)."""
        return self.staging / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return path

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json_text(data))

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode())

    def write_jsonl(self, name: str, records: Iterable[Any]) -> Path:
        """One JSON record a line, keys sorted (what `nasflow.artifacts.read_jsonl` reads)."""
        return self.write_text(name, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def write_csv(self, name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
        return self.write_text(name, csv_text(header, rows))

    def commit(self) -> None:
        """Put every written file in place, `last` last, and remove the staging folder."""
        if self._staging is None:
            return
        names = sorted(p.name for p in self._staging.iterdir())
        if self.last in names:
            names.remove(self.last)
            names.append(self.last)
        for name in names:
            staged = self._staging / name
            with staged.open("rb") as handle:  # on disk before it replaces the old file
                os.fsync(handle.fileno())
            os.chmod(staged, 0o644)
            os.replace(staged, self.folder / name)
        self.discard()

    def discard(self) -> None:
        """Remove whatever was written and not committed."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def _remove_dead_staging(folder: Path) -> None:
    """Remove the staging folders of processes that died before committing (kill -9)."""
    for staging in folder.glob(".staging-*-*"):
        pid = staging.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
