"""The files stages hand to each other, written so that a failure never leaves half a file
(a stage's outputs as a set: `nasflow.outputs`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nasflow.errors import NasflowError
from nasflow.outputs import csv_text, json_text
from nasflow.search_spaces.base import Architecture, SearchSpace


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then rename:
    a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp makes the file private (0600); results are for everyone who reads the repo.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """`write_bytes_atomic` for text (UTF-8)."""
    write_bytes_atomic(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json_text(data))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV table (for DVC plots), written atomically."""
    write_text_atomic(path, csv_text(header, rows))


def read_json(path: str | Path, produced_by: str) -> Any:
    """Read a JSON file another stage wrote; a missing or malformed file is a NasflowError."""
    path = Path(path)
    if not path.is_file():
        raise NasflowError(f"{path} not found; run the {produced_by} stage first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NasflowError(f"{path} is not valid JSON: {error}") from None


def read_jsonl(path: str | Path, produced_by: str) -> list[Any]:
    """Read a JSON-lines file another stage wrote, one record a line; a missing file or a
    malformed line is a NasflowError naming it."""
    path = Path(path)
    if not path.is_file():
        raise NasflowError(f"{path} not found; run the {produced_by} stage first")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise NasflowError(f"{path}, line {number}, is not valid JSON: {error}") from None
    return records


def architecture_record(space: SearchSpace, arch: Architecture, **extra: Any) -> dict[str, Any]:
    """The JSON form an architecture travels in between stages and to people."""
    return {
        "space": space.name,
        "id": arch.id,
        "description": arch.describe(),
        "architecture": arch.to_json(),
        **extra,
    }


def read_architecture(
    path: str | Path, space: SearchSpace, produced_by: str
) -> tuple[Architecture, dict[str, Any]]:
    """Read and validate an architecture record against `space`.

    Returns:
        The architecture and the whole record (with ids of the runs that produced it).
    """
    record = read_json(path, produced_by)
    if not isinstance(record, dict) or "architecture" not in record:
        raise NasflowError(f'{path}: expected {{"space": ..., "architecture": ...}}')
    return architecture_from_record(record, space, path), record


def architecture_from_record(
    record: dict[str, Any], space: SearchSpace, source: Any
) -> Architecture:
    """The architecture of a record (see `architecture_record`), validated against `space`;
    errors name `source`, where the record came from."""
    if record.get("space", space.name) != space.name:
        raise NasflowError(
            f"{source} holds a '{record['space']}' architecture but search_space is "
            f"'{space.name}'; set search_space={record['space']}"
        )
    try:
        return space.from_json(record["architecture"])
    except NasflowError as error:
        raise NasflowError(f"{source}: {error}") from None
