"""Tabular estimation: answer "how good is this cell?" from the NAS-Bench-201 table.

NAS-Bench-201 trained all 15,625 cells of its space, so on `NB201Space` at the benchmark's
settings a search can look a candidate's accuracy up instead of training it: a query
costs microseconds, which is what lets strategies be compared over hundreds of seeds
(`nasflow.stages.benchmark`). The search signal is a *validation* accuracy; the test
accuracy is only reported, so a search never selects on the test set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from nasflow.errors import NasflowError
from nasflow.estimators.base import Estimator
from nasflow.ranges import PositiveInt
from nasflow.records import Evaluation, StopRule
from nasflow.search_spaces.base import Architecture
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space, parse_cell
from nasflow.tabular.nb201 import load_table

# (dataset, epochs) -> (search-signal column, reported 200-epoch test column, 12-epoch test
# column or None). The table has 200-epoch validation accuracies for CIFAR-10 only; the
# 12-epoch schedule has them for all three data sets (see tabular/data/SOURCE.md).
SIGNALS: dict[tuple[str, int], tuple[str, str, str | None]] = {
    ("cifar10", 200): ("cifar10_valid_acc", "cifar10_test_acc", None),
    ("cifar10", 12): ("cifar10_valid_acc_12ep", "cifar10_test_acc", "cifar10_test_acc_12ep"),
    ("cifar100", 12): ("cifar100_valid_acc_12ep", "cifar100_test_acc", "cifar100_test_acc_12ep"),
    ("imagenet16", 12): (
        "imagenet16_valid_acc_12ep",
        "imagenet16_test_acc",
        "imagenet16_test_acc_12ep",
    ),
}
# Classes of each data set: the table's parameter counts are for the CIFAR-10 network, whose
# classifier is Linear(64, 10); the others differ only in that layer.
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16": 120}
FINAL_CHANNELS = 64  # 4C with the benchmark's C = 16
BENCHMARK_SETTINGS = {"channels": 16, "cells_per_stage": 5}
# The benchmark network's forward FLOPs per image (torch's counter, a multiply-add is 2)
# are linear in its cell's ops: every edge maps C channels to C at its stage's resolution,
# so each conv edge adds the same amount whatever the others are, and pooling, skip and
# none add nothing the counter counts. Measured on 32x32 CIFAR-10 inputs (the test
# suite re-measures them): the rest of the network (stem, reduction blocks, classifier)
# and what one edge of each convolution adds. ImageNet16-120's 16x16 inputs have a
# quarter of every convolution's FLOPs.
FLOPS_REST = 15_566_080
FLOPS_PER_EDGE = {"nor_conv_1x1": 7_864_320, "nor_conv_3x3": 70_778_880}
RESOLUTION = {"cifar10": 32, "cifar100": 32, "imagenet16": 16}


@dataclass(frozen=True)
class Columns:
    """Which table columns one (dataset, epochs) setting reads."""

    signal: str  # the search signal, a validation accuracy
    test: str  # the 200-epoch test accuracy: what the chosen cell really achieves
    test_12ep: str | None  # the 12-epoch test accuracy, reported beside a 12-epoch signal


def table_columns(dataset: str, signal: str = "valid", epochs: int = 200) -> Columns:
    """The columns of a setting, or a NasflowError listing the settings the table has."""
    key = (dataset, epochs)
    if signal != "valid" or key not in SIGNALS:
        available = ", ".join(f"dataset={d} epochs={e}" for d, e in SIGNALS)
        raise NasflowError(
            f"the NB201 table has no {signal!r} signal for dataset={dataset!r} "
            f"epochs={epochs!r}; available (signal=valid): {available}"
        )
    return Columns(*SIGNALS[key])


class NB201TableEstimator(Estimator):
    """Scores an NB201 cell by its accuracy in the NAS-Bench-201 table: no training.

    The score is the validation accuracy of the chosen schedule as a fraction (200 epochs
    is the NB201 paper's search signal, 12 epochs a cheap proxy of it). `metrics` carries
    ``val_acc`` (= the score) and ``test_acc``, the cell's 200-epoch test accuracy, which
    is reported for the record and never used as the score; with the 12-epoch signal it
    also carries ``test_acc_12ep``. The table holds the mean over the benchmark's training
    trials, so the answer does not depend on `seed`.

    Args:
        space: Must be `NB201Space` with the benchmark's channels (16) and cells per stage
            (5): the table describes only those networks. Any subset of the ops is fine.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16`` (ImageNet16-120).
        signal: ``valid``, the only search signal the table offers.
        epochs: 200 (CIFAR-10 only) or 12, the training schedule of the signal.
        **ignored: The search stage builds every estimator with ``data`` and ``trainer``
            (`nasflow.stages.search`); a table lookup needs neither, so they are accepted
            and ignored, and `estimator=nb201_table` plugs into any stage unchanged.

    Raises:
        NasflowError: `space` is not the benchmark's, or the table has no such signal.
    """

    name = "nb201_table"
    #: The only space whose cells the table holds (at its default settings).
    needs_space = "nb201"

    def __init__(
        self,
        space: Any,
        dataset: str = "cifar10",
        signal: str = "valid",
        epochs: PositiveInt = 200,
        **ignored: Any,
    ) -> None:
        settings = (
            {key: getattr(space, key) for key in BENCHMARK_SETTINGS}
            if isinstance(space, NB201Space)
            else None
        )
        if settings != BENCHMARK_SETTINGS:
            got = (
                f"nb201 with channels={space.channels}, cells_per_stage={space.cells_per_stage}"
                if settings is not None
                else f"'{getattr(space, 'name', type(space).__name__)}'"
            )
            raise NasflowError(
                "the NB201 table only describes NB201 cells in the benchmark's network "
                f"(search_space=nb201 with channels=16, cells_per_stage=5); got {got}"
            )
        self.space = space
        self.dataset = dataset
        self.signal = signal
        self.epochs = epochs
        self.columns = table_columns(dataset, signal, epochs)
        # The schedules the table has for this data set: the fidelities a task may ask for.
        self.fidelities = tuple(sorted(e for d, e in SIGNALS if d == dataset))
        self._rows = _lookup(self.columns, CLASSES[dataset])  # built now, not on first query

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        """The table's answer for `arch` after `fidelity` epochs (12 or 200; None: the
        configured `epochs`). The cost is those epochs: what training would have spent."""
        start = time.perf_counter()
        epochs = self.epochs if fidelity is None else int(fidelity)
        if epochs not in self.fidelities:
            raise NasflowError(
                f"the NB201 table has no {fidelity}-epoch results for {self.dataset}; "
                f"fidelities available: {', '.join(map(str, self.fidelities))}"
            )
        rows = (
            self._rows
            if epochs == self.epochs
            else _lookup(table_columns(self.dataset, self.signal, epochs), CLASSES[self.dataset])
        )
        found = rows.get(arch.edges) if isinstance(arch, NB201Architecture) else None
        if found is None or not isinstance(arch, NB201Architecture):
            return Evaluation(
                status="failed",
                seconds=time.perf_counter() - start,
                error=f"not a cell of the NB201 table: {arch.describe()}",
            )
        score, metrics, params = found
        return Evaluation(
            status="ok",
            score=score,
            metrics=dict(metrics),  # a copy: callers may change theirs
            params=params,
            flops=cell_flops(arch.edges, self.dataset),
            seconds=time.perf_counter() - start,
            fidelity=float(epochs),
            cost=float(epochs),
        )


def cell_flops(edges: tuple[str, ...], dataset: str = "cifar10") -> int:
    """The forward FLOPs per image of the benchmark network with this cell on `dataset`
    (what `nasflow.measure.count_flops` counts for the built network)."""
    classifier = 2 * FINAL_CHANNELS * CLASSES["cifar10"]
    convolutions = FLOPS_REST - classifier + sum(FLOPS_PER_EDGE.get(op, 0) for op in edges)
    scale = (RESOLUTION[dataset] / 32) ** 2
    return round(convolutions * scale) + 2 * FINAL_CHANNELS * CLASSES[dataset]


@cache
def _lookup(
    columns: Columns, classes: int
) -> dict[tuple[str, ...], tuple[float, dict[str, float], int]]:
    """Every cell's answer, keyed by its edge operations: a query is one dict lookup
    (hashing six short strings), cheaper than writing the arch string."""
    table = load_table().columns
    signal, test = table[columns.signal] / 100, table[columns.test] / 100
    test_12ep = table[columns.test_12ep] / 100 if columns.test_12ep else None
    # Rounded: a few rows average trials that recorded different networks (SOURCE.md).
    params = [round(p * 1e6) + (FINAL_CHANNELS + 1) * (classes - 10) for p in table["params_m"]]
    rows = {}
    for i, arch in enumerate(table["arch"]):
        metrics = {"val_acc": float(signal[i]), "test_acc": float(test[i])}
        if test_12ep is not None:
            metrics["test_acc_12ep"] = float(test_12ep[i])
        rows[parse_cell(str(arch))] = (float(signal[i]), metrics, params[i])
    return rows
