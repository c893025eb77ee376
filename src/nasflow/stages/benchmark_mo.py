"""The NAS-Bench-201 benchmark with several objectives: how much of the true Pareto front's
hypervolume a strategy reaches, query by query, over many seeds.

`pipelines/benchmark.py` runs this when ``search.objectives`` names two or more (e.g.
``[val_acc:max,params:min]``), against the reference point ``search.reference``. The
table answers every query, so the front of all 15,625 cells is computed exactly, once,
in two coordinates:

* the search's: the objectives as the strategy sees them (the validation signal, the
  parameters, FLOPs computed from the real networks);
* the test's: the accuracy objective replaced by the cell's 200-epoch test accuracy.

After each query, a run's ratio in the search's coordinates is the hypervolume of every
cell it has evaluated over the true front's; in the test's, the cells that are its front
in the search's coordinates are scored by their test accuracy, against the test-accuracy
front. One JSON per strategy goes to ``benchmark.output`` and ``pareto_comparison.png``
there is redrawn from every such JSON.
"""

from __future__ import annotations

import io
import logging
import math
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import write_bytes_atomic, write_text_atomic
from nasflow.errors import NasflowError, check_int
from nasflow.estimators.tabular import NB201TableEstimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Candidate, run_search
from nasflow.pareto import (
    Objective,
    front_mask,
    hypervolume,
    maximize_flags,
    objective_vector,
    parse_objectives,
    reference_point,
)
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space
from nasflow.stages.benchmark import _quiet, dumps, read_reports
from nasflow.tabular.nb201 import load_table

log = logging.getLogger("nasflow.benchmark")

KIND = "nasflow.benchmark_mo/1"  # marks a strategy's JSON, so the plot skips any other file
PLOT = "pareto_comparison.png"
ACCURACY = ("score", "val_acc")  # the objectives the test coordinates replace


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.strategy`` on seeds 0..``benchmark.seeds``-1 with ``search.objectives``;
    write its JSON and redraw the plot.

    Returns:
        The summary: the strategy's name, the final mean and standard error of the
        hypervolume ratio in both coordinates, and the seconds.
    """
    settings = cfg.benchmark
    seeds = check_int("benchmark.seeds", settings.seeds)
    queries = check_int("benchmark.queries", settings.queries)
    objectives = parse_objectives(cfg.search.objectives)
    reference = reference_point(cfg.search.reference, objectives, "search.reference")
    space = NB201Space()
    estimator = instantiate(cfg.estimator, space=space)
    if not isinstance(estimator, NB201TableEstimator):
        raise NasflowError(
            "the multi-objective benchmark compares strategies at equal queries of the table "
            f"itself: use estimator=nb201_table, got {type(estimator).__name__}"
        )
    if not any(o.name in ACCURACY for o in objectives):
        raise NasflowError(
            "the multi-objective benchmark needs the accuracy among search.objectives "
            f"(val_acc:max); got {', '.join(map(str, objectives))}"
        )
    target = get_class(cfg.strategy._target_)
    name = settings.name or getattr(target, "name", target.__name__)
    fronts = true_fronts(estimator, objectives, reference)
    log.info(
        "%s: %d seeds x %d queries on NB201 %s, objectives %s, reference %s; the true front "
        "has %d cells (test coordinates: %d)",
        name, seeds, queries, estimator.dataset, ", ".join(map(str, objectives)), reference,
        len(fronts["search"]["cells"]), len(fronts["test"]["cells"]),
    )  # fmt: skip

    start = time.perf_counter()
    runs = []
    with _quiet(logging.getLogger("nasflow.search")):
        for seed in range(seeds):
            strategy = instantiate(cfg.strategy, space=space, budget=queries, seed=seed)
            began = time.perf_counter()
            history = run_search(strategy, estimator, LocalExecutor(), seed)
            seconds = time.perf_counter() - began
            curves = ratio_curves(history, objectives, reference, fronts, queries)
            runs.append({"seed": seed, **curves, "seconds": round(seconds, 4)})
            log.info(
                "seed %d/%d: hypervolume ratio %.4f (test %.4f), front of %d, %.2fs",
                seed + 1, seeds, curves["search"][-1], curves["test"][-1],
                len(curves["front"]), seconds,
            )  # fmt: skip
    total = time.perf_counter() - start

    strategy_config = cast(dict[str, Any], OmegaConf.to_container(cfg.strategy, resolve=True))
    strategy_config.pop("seed", None)
    report: dict[str, Any] = {
        "kind": KIND,
        "strategy": name,
        "settings": {
            "strategy": strategy_config,
            "seeds": seeds,
            "queries": queries,
            "dataset": estimator.dataset,
            "signal": estimator.columns.signal,
            "test": estimator.columns.test,
            "objectives": [str(o) for o in objectives],
            "reference": reference,
        },
        "true_front": fronts,
    }
    for coordinates in ("search", "test"):
        ratios = np.array([r[coordinates] for r in runs])
        final = ratios[:, -1]
        report[coordinates] = {
            "final": {
                "mean": _round(final.mean()),
                "std": _round(final.std()),
                "sem": _round(final.std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else None,
                "min": _round(final.min()),
                "max": _round(final.max()),
            },
            "curve": {  # entry q-1: after q queries
                "mean": [_round(v) for v in ratios.mean(axis=0)],
                "std": [_round(v) for v in ratios.std(axis=0)],
            },
        }
    report["front_size"] = _round(np.mean([len(r["front"]) for r in runs]))
    report["seconds"] = {"total": round(total, 3), "per_seed": [r["seconds"] for r in runs]}
    report["runs"] = runs
    out = Path(settings.output)
    write_text_atomic(out / f"{name}.json", dumps(report))
    plotted = draw_comparison(out)
    summary = {
        "strategy": name,
        "hypervolume_ratio": report["search"]["final"]["mean"],
        "hypervolume_ratio_sem": report["search"]["final"]["sem"],
        "test_hypervolume_ratio": report["test"]["final"]["mean"],
        "seconds": round(total, 3),
    }
    log.info(
        "%s: hypervolume ratio %.4f +- %.4f (sem) after %d queries, test %.4f; wrote %s and "
        "%s (%d strategies)",
        name, summary["hypervolume_ratio"], summary["hypervolume_ratio_sem"] or 0.0, queries,
        summary["test_hypervolume_ratio"], out / f"{name}.json", out / PLOT, plotted,
    )  # fmt: skip
    return summary


def test_objectives(objectives: list[Objective]) -> list[Objective]:
    """The objectives with the accuracy read from the test accuracy instead."""
    return [Objective("test_acc", o.maximize) if o.name in ACCURACY else o for o in objectives]


def true_fronts(
    estimator: NB201TableEstimator, objectives: list[Objective], reference: list[float]
) -> dict[str, Any]:
    """Every cell's objectives from the table; the exact front and its hypervolume in the
    search's coordinates and in the test's."""
    maximize = maximize_flags(objectives)
    cells = [str(cell) for cell in load_table().columns["arch"]]
    space = estimator.space
    evaluations = [estimator.evaluate(space.parse(cell), 0) for cell in cells]
    fronts = {}
    for coordinates, objs in (("search", objectives), ("test", test_objectives(objectives))):
        points = np.array([objective_vector(e, objs) for e in evaluations], dtype=float)
        mask = front_mask(points, maximize)
        order = np.flatnonzero(mask)[np.argsort(points[mask][:, 0])]
        fronts[coordinates] = {
            "objectives": [str(o) for o in objs],
            "hypervolume": hypervolume(points, reference, maximize),
            "cells": [{"arch": cells[i], "objectives": points[i].tolist()} for i in order],
        }
    return fronts


def ratio_curves(
    history: list[Candidate],
    objectives: list[Objective],
    reference: list[float],
    fronts: dict[str, Any],
    queries: int,
) -> dict[str, Any]:
    """After each query (up to `queries`; a search that ended early keeps its last value):
    the hypervolume ratio of the cells evaluated so far, in both coordinates, and the
    final front in the search's coordinates."""
    maximize = maximize_flags(objectives)
    tests = test_objectives(objectives)
    kept, search_points, test_points = [], [], []
    ratios: dict[str, list[float]] = {"search": [], "test": []}
    for candidate in history[:queries]:
        point = objective_vector(candidate.evaluation, objectives)
        if point is not None:
            kept.append(candidate)
            search_points.append(point)
            test_points.append(objective_vector(candidate.evaluation, tests))
        if search_points:
            found = np.array(search_points)
            mask = front_mask(found, maximize)
            search_hv = hypervolume(found, reference, maximize)
            test_hv = hypervolume(np.array(test_points)[mask], reference, maximize)
        else:
            search_hv = test_hv = 0.0
        ratios["search"].append(_round(search_hv / fronts["search"]["hypervolume"]))
        ratios["test"].append(_round(test_hv / fronts["test"]["hypervolume"]))
    for key in ratios:
        ratios[key] += ratios[key][-1:] * (queries - len(ratios[key]))
    front = []
    if search_points:
        found = np.array(search_points)
        for candidate, point, on in zip(kept, found, front_mask(found, maximize), strict=True):
            if on:
                arch = candidate.arch
                text = arch.describe() if isinstance(arch, NB201Architecture) else str(arch.id)
                front.append({"arch": text, "objectives": point.tolist()})
    return {**ratios, "front": front}


def draw_comparison(folder: str | Path) -> int:
    """(Re)draw ``pareto_comparison.png`` in `folder` from every multi-objective strategy
    JSON there: the mean hypervolume ratio against queries, in the search's coordinates
    (solid, a band of +-1 std) and the test's (dashed). Returns how many were drawn."""
    folder = Path(folder)
    reports = read_reports(folder, KIND)
    if not reports:
        return 0
    reports.sort(key=lambda r: -r["search"]["final"]["mean"])

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for report in reports:
        mean = np.array(report["search"]["curve"]["mean"], dtype=float)
        std = np.array(report["search"]["curve"]["std"], dtype=float)
        test = np.array(report["test"]["curve"]["mean"], dtype=float)
        x = np.arange(1, len(mean) + 1)
        final = report["search"]["final"]
        label = (
            f"{report['strategy']}: {final['mean']:.3f} ± {final['std']:.3f} "
            f"(test {report['test']['final']['mean']:.3f})"
        )
        (line,) = axes.plot(x, mean, label=label, linewidth=1.6)
        axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12)
        axes.plot(x, test, "--", color=line.get_color(), linewidth=1)
    first = reports[0]["settings"]
    axes.set_ylim(0.6, 1.005)
    axes.set_xlim(1, max(len(r["search"]["curve"]["mean"]) for r in reports))
    axes.set_xlabel("queries")
    axes.set_ylabel("hypervolume / the true front's")
    axes.set_title(
        f"NAS-Bench-201 {first['dataset']}, {' & '.join(first['objectives'])}, reference "
        f"{first['reference']}: mean over {first['seeds']} seeds (dashed: test coordinates)",
        fontsize=8,
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8, title="final mean ± std", title_fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_bytes_atomic(folder / PLOT, png.getvalue())
    return len(reports)


def _round(value: Any) -> float:
    return round(float(value), 6)
