"""How hard is 0.99 of the true front's hypervolume on NAS-Bench-201 (accuracy, parameters)?

What is measured
    In the multi-objective benchmark's setting (CIFAR-10, the 200-epoch validation signal
    against the table's parameters, reference point 85 % and 1.6 M parameters), for
    accuracy thresholds t near the top of the table: the set S(t) of cells with a signal
    of at least t and at most ``--params`` parameters, and the hypervolume ratio that a
    run would reach if it evaluated *every other cell of the table*. Where that ratio is
    below 0.99, no run reaches 0.99 without finding a cell of S(t).

    Then, for every strategy JSON in ``results/benchmark_mo/`` (``pipelines/benchmark.py``
    with two objectives), how many seeds found a cell of S(t) (a found cell of S(t) is
    always on the run's front: only a cell of S(t) can dominate one) and the mean final
    ratio of the seeds that did and of those that did not.

How to run (from the repository root; a few seconds)
    .venv/bin/python benchmarks/mo_front_anatomy.py

    Writes ``benchmarks/results/mo_front_anatomy.json`` (``--output``). Exits 0 whatever
    it finds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from report import machine_info, write_report

from nasflow.estimators.tabular import NB201TableEstimator
from nasflow.pareto import hypervolume
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.stages.benchmark_mo import KIND

REFERENCE = [0.85, 1.6e6]
MAXIMIZE = [True, False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results/benchmark_mo")
    parser.add_argument("--params", type=float, default=0.7e6, help="the bound of S(t)")
    parser.add_argument("--thresholds", default="0.9155,0.915,0.913,0.912,0.91")
    parser.add_argument("--output", default="benchmarks/results/mo_front_anatomy.json")
    args = parser.parse_args()

    space = NB201Space()
    estimator = NB201TableEstimator(space)
    archs = list(space.enumerate())
    evaluations = [estimator.evaluate(arch, 0) for arch in archs]
    points = np.array([[e.score, e.params] for e in evaluations], dtype=float)
    names = [arch.describe() for arch in archs]
    total = hypervolume(points, REFERENCE, MAXIMIZE)
    rank = np.argsort(np.argsort(-points[:, 0], kind="stable"), kind="stable") + 1

    reports = []
    for path in sorted(Path(args.results).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("kind") == KIND:
            reports.append(data)

    thresholds: list[dict[str, Any]] = []
    for t in (float(v) for v in args.thresholds.split(",")):
        inside = (points[:, 0] >= t) & (points[:, 1] <= args.params)
        cells = set(np.array(names)[inside])
        strategies = {}
        for report in reports:
            found = np.array(
                [any(m["arch"] in cells for m in run["front"]) for run in report["runs"]]
            )
            final = np.array([run["search"][-1] for run in report["runs"]])
            strategies[report["strategy"]] = {
                "seeds": len(final),
                "seeds_that_found_one": int(found.sum()),
                "mean_ratio_found": round(float(final[found].mean()), 4) if found.any() else None,
                "mean_ratio_not_found": round(float(final[~found].mean()), 4)
                if (~found).any()
                else None,
                "best_ratio_not_found": round(float(final[~found].max()), 4)
                if (~found).any()
                else None,
            }
        thresholds.append(
            {
                "threshold": t,
                "cells": [
                    {
                        "arch": names[i],
                        "signal": round(float(points[i, 0]), 6),
                        "params": int(points[i, 1]),
                        "rank_by_signal": int(rank[i]),
                    }
                    for i in np.flatnonzero(inside)
                ],
                "ratio_with_every_other_cell": round(
                    hypervolume(points[~inside], REFERENCE, MAXIMIZE) / total, 4
                ),
                "strategies": strategies,
            }
        )
        print(
            f"signal >= {t:.4f}, <= {args.params:,.0f} params: {inside.sum()} cells (signal "
            f"ranks {sorted(int(r) for r in rank[inside])}); every other cell reaches "
            f"{thresholds[-1]['ratio_with_every_other_cell']:.4f}"
        )
        for name, figures in strategies.items():
            print(f"  {name}: {figures}")

    write_report(
        {
            "benchmark": "mo_front_anatomy",
            "reference": REFERENCE,
            "params_bound": args.params,
            "true_hypervolume": total,
            "thresholds": thresholds,
            "machine": machine_info(),
        },
        args.output,
    )


if __name__ == "__main__":
    main()
