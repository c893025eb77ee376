"""The NAS-Bench-201 table: published results for all 15,625 cells of `NB201Space`.

One row per cell, in the benchmark's own index order (``arch_index`` 0..15624), keyed by
the official arch string that `NB201Architecture.describe` writes. The columns and where
each comes from are described in ``data/SOURCE.md``. The table is read with the csv
module into numpy columns (no pandas dependency) and cached: it is about 3 MB of text and
takes a fraction of a second to load.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from nasflow.errors import NasflowError

FILE = "nb201.csv.gz"
# Columns that are not floats; every other column is a float, NaN where the cell is empty
# (the NASWOT score of the 341 degenerate cells).
INT_COLUMNS = ("arch_index",)
TEXT_COLUMNS = ("arch",)


@dataclass(frozen=True)
class NB201Table:
    """The table as read-only numpy columns, with lookups by row and by arch string."""

    columns: dict[str, np.ndarray]
    _rows_by_arch: dict[str, int] = field(repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.columns["arch_index"])

    def row(self, index: int) -> dict[str, Any]:
        """Row `index` (= its ``arch_index``) as plain Python values."""
        if not 0 <= index < len(self):
            raise NasflowError(f"NB201 arch_index must be in 0..{len(self) - 1}, got {index}")
        return {name: values[index].item() for name, values in self.columns.items()}

    def index_of(self, arch: str) -> int:
        """The row of an official arch string (``NB201Architecture.describe()``)."""
        try:
            return self._rows_by_arch[arch]
        except KeyError:
            raise NasflowError(f"not an arch string of the NB201 table: {arch!r}") from None


@cache
def load_table() -> NB201Table:
    """The shipped table, read once per process.

    Raises:
        NasflowError: the data file is missing from the installed package.
    """
    source = resources.files("nasflow.tabular") / "data" / FILE
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise NasflowError(
            f"the NB201 table {FILE} is missing from the installed nasflow package "
            "(reinstall nasflow; its package data must include nasflow/tabular/data/*)"
        ) from None
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="utf-8") as text:
        reader = csv.reader(text)
        header = next(reader)
        cells = list(zip(*reader, strict=True))
    columns = {name: _column(name, values) for name, values in zip(header, cells, strict=True)}
    for values in columns.values():
        values.flags.writeable = False  # the cached table is shared by every caller
    rows = {arch: i for i, arch in enumerate(columns["arch"])}
    return NB201Table(columns, rows)


def _column(name: str, values: tuple[str, ...]) -> np.ndarray:
    if name in INT_COLUMNS:
        return np.array([int(v) for v in values], dtype=np.int64)
    if name in TEXT_COLUMNS:
        return np.array(values, dtype=str)
    return np.array([float(v) if v else math.nan for v in values], dtype=np.float64)
