"""The files stages pass on: atomic writes and clear errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasflow.artifacts import (
    architecture_record,
    read_architecture,
    write_csv,
    write_json,
    write_text_atomic,
)
from nasflow.errors import NasflowError
from nasflow.search_spaces import ChainArchitecture, ChainSpace, Layer

SPACE = ChainSpace(min_layers=1, max_layers=3, kernel_sizes=[3])
ARCH = ChainArchitecture((Layer("conv", filters=32, kernel_h=3, kernel_w=3),))


def test_record_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "best.json", architecture_record(SPACE, ARCH, score=0.9))
    arch, record = read_architecture(tmp_path / "best.json", SPACE, produced_by="search")
    assert arch == ARCH and record["score"] == 0.9 and record["id"] == ARCH.id


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found; run the search stage first"),
        ('{"space": "chain", "architecture": {"lay', "is not valid JSON"),
        ('["not", "a", "record"]', "expected"),
        ('{"space": "nb201", "architecture": {}}', "set search_space=nb201"),
        ('{"space": "chain", "architecture": {"layers": []}}', "depth=0 is not allowed"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "best.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NasflowError, match=message) as error:
        read_architecture(path, SPACE, produced_by="search")
    assert "\n" not in str(error.value)


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"best": 1})
    # A lone surrogate cannot be encoded: the write fails half-way through the temp file.
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "partial \ud800")
    assert path.read_text() == '{\n  "best": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"], "no temporary file left"


def test_csv_tables(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", ["a", "b"], [[1, "x"], [2, ""]])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,x\n2,\n"
