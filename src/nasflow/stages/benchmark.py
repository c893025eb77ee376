"""Benchmark a search strategy on the NAS-Bench-201 table over many seeds.

Each seed runs the configured strategy through the real search loop (`run_search`, one
`LocalExecutor`) with the configured estimator, which must end in `NB201TableEstimator`
(``estimator=nb201_table``, the default of ``conf/benchmark.yaml``, or a composition such
as ``nb201_successive_halving`` or ``nb201_prefilter``). A table query costs microseconds,
so a strategy is judged the way NAS papers judge it: the mean test accuracy of the
incumbent (the best full-fidelity cell so far by the search signal, a validation
accuracy) over many seeds, against the training cost spent. The cost is counted in
training epochs (a 12-epoch lookup costs 12, a 200-epoch one 200, a proxy 0), and the
curves are read after every *query's worth* of cost, i.e. every full-fidelity epochs: for
a plain table estimator that is after every query, and multi-fidelity or pre-filtered
searches are compared with it at equal cost. One JSON per strategy goes to
``benchmark.output``; ``comparison.png`` there is redrawn from every strategy's JSON.

Each JSON also records what random search implies: the exact expected test accuracy of
the best-by-signal cell among K distinct cells drawn uniformly from the table, computed
from the table's order statistics, for every K up to ``benchmark.queries``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import write_bytes_atomic, write_text_atomic
from nasflow.errors import NasflowError, check_int
from nasflow.estimators.base import Estimator
from nasflow.estimators.tabular import NB201TableEstimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Candidate, Stopping, run_search
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.tabular.nb201 import load_table
from nasflow.tracking import Tracker, git_commit

log = logging.getLogger("nasflow.benchmark")

KIND = "nasflow.benchmark/1"  # marks a strategy's JSON, so the plot skips any other file
PLOT = "comparison.png"
# Candidates a composite estimator may evaluate per query of cost budget: its search ends
# on the cost limit long before this.
BUDGET_PER_QUERY = 100


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.strategy`` on seeds 0..``benchmark.seeds``-1 and write its JSON and the plot;
    with two or more ``search.objectives``, the multi-objective benchmark instead
    (`nasflow.stages.benchmark_mo`).

    Returns:
        The summary: the strategy's name, final mean and std (%), the random-search
        expectation (%) and the seconds.
    """
    if len(cfg.search.objectives or ()) >= 2:
        from nasflow.stages import benchmark_mo

        return benchmark_mo.run(cfg)
    settings = cfg.benchmark
    seeds = _positive("benchmark.seeds", settings.seeds)
    queries = _positive("benchmark.queries", settings.queries)
    space = NB201Space()
    estimator = instantiate(cfg.estimator, space=space)
    table_estimator = _table_of(estimator)
    target = get_class(cfg.strategy._target_)
    name = settings.name or getattr(target, "name", target.__name__)
    columns = table_estimator.columns
    dataset = table_estimator.dataset
    log.info(
        "%s: %d seeds x %d queries' cost on NB201 %s (signal %s, reported %s), estimator %s",
        name, seeds, queries, dataset, columns.signal, columns.test, type(estimator).__name__,
    )  # fmt: skip

    start = time.perf_counter()
    initial = estimator.state_dict()
    with _quiet(logging.getLogger("nasflow.search")):  # the loop's line per candidate
        runs = [
            _run_seed(cfg, space, estimator, initial, table_estimator.epochs, queries, seed, seeds)
            for seed in range(seeds)
        ]
    total = time.perf_counter() - start

    table = load_table().columns
    signal, test = table[columns.signal], table[columns.test]
    # None (no full-fidelity result yet at that cost) is NaN: left out of the means.
    curves = np.array([[np.nan if v is None else v for v in r["test_acc"]] for r in runs])
    final = curves[:, -1]
    expectation = random_search_expectation(signal, test, queries)
    strategy_config = cast(dict[str, Any], OmegaConf.to_container(cfg.strategy, resolve=True))
    strategy_config.pop("seed", None)  # each run's seed is its index, below
    strategy_config["budget"] = runs[0]["budget"]
    per_seed = [r["seconds"] for r in runs]
    report = {
        "kind": KIND,
        "strategy": name,
        "settings": {
            "strategy": strategy_config,
            "seeds": seeds,  # seeds 0..seeds-1, each the strategy's and the loop's seed
            "queries": queries,  # the cost budget, in full-fidelity queries
            "dataset": dataset,
            "signal_epochs": table_estimator.epochs,
            "signal": columns.signal,
            "test": columns.test,
            "estimator": OmegaConf.to_container(cfg.estimator, resolve=True),
        },
        "final": {
            "mean": _round(final.mean()),
            "std": _round(final.std()),  # over seeds, population std (ddof=0)
            "sem": _round(final.std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else None,
            "min": _round(final.min()),
            "max": _round(final.max()),
            "minus_random_expectation": _round(final.mean() - expectation[-1]),
        },
        "curve": {  # entry q-1: after q queries' cost; the plot's band is mean +- std
            "mean": [_round(v) for v in _nan_stat(np.nanmean, curves)],
            "std": [_round(v) for v in _nan_stat(np.nanstd, curves)],
            "seeds_with_incumbent": [int(v) for v in np.isfinite(curves).sum(axis=0)],
        },
        "evaluations": {  # per seed, means over seeds
            "candidates": _round(np.mean([r["evaluated"] for r in runs])),
            "full_fidelity": _round(np.mean([r["full_fidelity"] for r in runs])),
            "proposals": _round(np.mean([r["proposals"] for r in runs])),
            "cost_epochs": _round(np.mean([r["cost"] for r in runs])),
        },
        "random_search_expectation": {
            "method": "exact: order statistics of the table's signal (ties share the pick)",
            "queries": queries,
            "test_acc": _round(expectation[-1]),
            "curve": [_round(v) for v in expectation],
        },
        "table": _table_facts(table, columns.signal, columns.test),
        "seconds": {
            "total": round(total, 3),
            "mean_per_seed": round(float(np.mean(per_seed)), 4),
            "per_query_ms": round(1000 * sum(per_seed) / sum(r["evaluated"] for r in runs), 4),
            "per_seed": per_seed,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "runs": runs,
    }
    out = Path(settings.output)
    write_text_atomic(out / f"{name}.json", dumps(report))
    if settings.tracking:
        _track(cfg, report)
    plotted = draw_comparison(out)
    log.info(
        "%s: %.2f +- %.2f %% after %d queries (random search implies %.2f); %.1fs; "
        "wrote %s and %s (%d strategies)",
        name, report["final"]["mean"], report["final"]["std"], queries, expectation[-1],
        total, out / f"{name}.json", out / PLOT, plotted,
    )  # fmt: skip
    return {
        "strategy": name,
        "final_mean": report["final"]["mean"],
        "final_std": report["final"]["std"],
        "random_search_expectation": report["random_search_expectation"]["test_acc"],
        "seconds": report["seconds"]["total"],
    }


def _run_seed(
    cfg: DictConfig,
    space: NB201Space,
    estimator: Estimator,
    initial: dict[str, Any],
    full_epochs: int,
    queries: int,
    seed: int,
    seeds: int,
) -> dict[str, Any]:
    """One search until `queries` full-fidelity queries' worth of training epochs are
    spent; the incumbent's test accuracy (%) and signal (%) after each query's worth."""
    plain = isinstance(estimator, NB201TableEstimator)
    # A plain table query costs exactly one query: the budget is the queries. Composite
    # estimators spend less per candidate, so the cost limit ends their search.
    budget = queries if plain else queries * BUDGET_PER_QUERY
    strategy = instantiate(cfg.strategy, space=space, budget=budget, seed=seed)
    # Every seed starts from what the estimator knew before any search (a predictor with
    # no data, the first bracket). What is not state, e.g. proxy scores remembered per
    # architecture, carries over: it is a function of the architecture alone.
    estimator.load_state_dict(initial)
    start = time.perf_counter()
    history = run_search(
        strategy,
        estimator,
        LocalExecutor(),
        seed,
        stopping=Stopping(max_cost=queries * full_epochs),
    )
    seconds = time.perf_counter() - start
    test_acc, signal, arch = incumbent_curves(history, full_epochs, queries)
    if test_acc[-1] is None:
        raise NasflowError(
            f"strategy {strategy.name} with seed {seed} evaluated no NB201 cell at full fidelity"
        )
    log.info(
        "seed %d/%d: test %.2f %% (signal %.2f) after %d candidates, %.2fs  %s",
        seed + 1, seeds, test_acc[-1], signal[-1], len(history), seconds, arch,
    )  # fmt: skip
    return {
        "seed": seed,
        "test_acc": test_acc,
        "signal": signal,
        "arch": arch,
        "evaluated": len(history),
        "full_fidelity": sum(c.evaluation.status == "ok" for c in history),
        "proposals": history[-1].proposals if history else 0,
        "cost": history[-1].cost if history else 0.0,
        "budget": budget,
        "seconds": round(seconds, 4),
    }


def incumbent_curves(
    history: Sequence[Candidate], full_epochs: float, queries: int
) -> tuple[list[float | None], list[float | None], str | None]:
    """After each query's worth of cost (`full_epochs` training epochs), the incumbent's
    test accuracy and signal (both in %), and the final incumbent's arch string.

    The incumbent is the best full-fidelity candidate by the score (the signal) among
    those whose cumulative cost is within the point's; a tie keeps the earlier one. None
    until a full-fidelity candidate has finished. A search that ends early (its strategy
    ran out of cells) keeps its last incumbent to the end.
    """
    test_acc: list[float | None] = []
    signal: list[float | None] = []
    best: Candidate | None = None
    position = 0
    for query in range(1, queries + 1):
        while position < len(history) and history[position].cost <= query * full_epochs + 1e-9:
            candidate = history[position]
            score = candidate.evaluation.score
            if (
                candidate.evaluation.status == "ok"
                and score is not None
                and (best is None or score > cast(float, best.evaluation.score))
            ):
                best = candidate
            position += 1
        if best is None:
            test_acc.append(None)
            signal.append(None)
        else:
            test_acc.append(_round(100 * best.evaluation.metrics["test_acc"]))
            signal.append(_round(100 * cast(float, best.evaluation.score)))
    return test_acc, signal, best.arch.describe() if best is not None else None


def random_search_expectation(signal: np.ndarray, test: np.ndarray, queries: int) -> np.ndarray:
    """E[test of the best-by-signal cell among K distinct uniformly drawn cells], K = 1..queries.

    Exact, from order statistics: with the cells grouped by signal value v, the best of K
    has signal at most v with probability C(n(<=v), K) / C(N, K). Given that the best
    signal is v, the pick among the cells tied at v is uniform (the earliest drawn of them,
    and the draw order is uniform), so its expected test accuracy is the group's mean.
    """
    _, group, counts = np.unique(signal, return_inverse=True, return_counts=True)
    mean_test = np.bincount(group, weights=test) / counts
    at_most = np.cumsum(counts)  # cells whose signal is <= each value
    below = at_most - counts
    n = len(signal)
    log_factorial = np.array([math.lgamma(m + 1) for m in range(n + 1)])
    expectations = []
    for k in range(1, min(queries, n) + 1):
        # P(best signal == value) = P(best <= value) - P(best < value)
        probability = _share(at_most, k, log_factorial) - _share(below, k, log_factorial)
        expectations.append(float(probability @ mean_test))
    # Past N queries every cell has been seen.
    expectations += expectations[-1:] * (queries - len(expectations))
    return np.array(expectations)


def _share(m: np.ndarray, k: int, log_factorial: np.ndarray) -> np.ndarray:
    """C(m, k) / C(n, k) for each m (zero where m < k), n = len(log_factorial) - 1."""
    n = len(log_factorial) - 1
    safe = np.maximum(m, k)
    log_ratio = (
        log_factorial[safe] - log_factorial[safe - k] - log_factorial[n] + log_factorial[n - k]
    )
    return np.where(m >= k, np.exp(log_ratio), 0.0)


def _table_facts(table: dict[str, np.ndarray], signal: str, test: str) -> dict[str, Any]:
    """The table's optimum test accuracy and the test accuracy of its best-by-signal cell."""
    tests = table[test]
    best_test, best_signal = int(np.argmax(tests)), int(np.argmax(table[signal]))
    return {
        "cells": len(tests),
        "optimum_test_acc": _round(tests[best_test]),
        "optimum_arch": str(table["arch"][best_test]),
        "best_by_signal_test_acc": _round(tests[best_signal]),
        "best_by_signal_arch": str(table["arch"][best_signal]),
        "mean_test_acc": _round(tests.mean()),
    }


def _track(cfg: DictConfig, report: dict[str, Any]) -> None:
    """One parent run per strategy: the mean curve per query, the summary, the JSON."""
    tracker: Tracker = instantiate(cfg.tracking)
    name = report["strategy"]
    tags = {
        "nasflow.stage": "benchmark",
        "nasflow.strategy": name,
        "nasflow.search_space": "nb201",
        "nasflow.dataset": report["settings"]["dataset"],
        "mlflow.source.git.commit": git_commit(),
    }
    with tracker.run(f"benchmark-{name}", tags, report["settings"]):
        curve = report["curve"]
        for query, (mean, std) in enumerate(zip(curve["mean"], curve["std"], strict=True), 1):
            tracker.log_metrics({"mean_test_acc": mean, "std_test_acc": std}, step=query)
        summary = {
            "final_mean_test_acc": report["final"]["mean"],
            "final_std_test_acc": report["final"]["std"],
            "random_search_expectation": report["random_search_expectation"]["test_acc"],
            "optimum_test_acc": report["table"]["optimum_test_acc"],
            "seconds_total": report["seconds"]["total"],
        }
        tracker.log_metrics(summary)
        tracker.log_dict(report, f"{name}.json")


def draw_comparison(folder: str | Path) -> int:
    """(Re)draw ``comparison.png`` in `folder` from every strategy JSON there.

    Each strategy: its mean incumbent test accuracy against queries, with a band of +-1
    standard deviation over seeds; the random-search expectation dotted; the table's
    optimum dashed. Returns how many strategies were drawn.
    """
    folder = Path(folder)
    reports = read_reports(folder, KIND)
    if not reports:
        return 0
    settings = {(r["settings"]["dataset"], r["settings"]["signal"]) for r in reports}
    if len(settings) > 1:
        log.warning("%s mixes settings %s; give each its own benchmark.output", folder, settings)
    reports.sort(key=lambda r: -r["final"]["mean"])

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)  # files only: no pyplot, no window, no global backend
    axes = figure.add_subplot()
    lows = []
    for report in reports:
        # dtype=float: a point with no incumbent yet (null) is NaN, a gap in the line.
        mean = np.array(report["curve"]["mean"], dtype=float)
        std = np.array(report["curve"]["std"], dtype=float)
        x = np.arange(1, len(mean) + 1)
        final = report["final"]
        label = f"{report['strategy']}: {final['mean']:.2f} ± {final['std']:.2f}"
        (line,) = axes.plot(x, mean, label=label, linewidth=1.6)
        axes.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        lows.append(mean[len(mean) // 10] - std[len(mean) // 10])
    first = reports[0]
    expectation = first["random_search_expectation"]
    axes.plot(
        np.arange(1, len(expectation["curve"]) + 1),
        expectation["curve"],
        ":",
        color="0.35",
        label=f"random search, exact expectation: {expectation['test_acc']:.2f}",
    )
    optimum = first["table"]["optimum_test_acc"]
    axes.axhline(
        optimum, linestyle="--", color="black", linewidth=1, label=f"optimum {optimum:.2f}"
    )
    # The first queries sit far below the rest; start the axis where the curves meet.
    axes.set_ylim(np.nanmin(lows) - 0.2, optimum + 0.25)
    axes.set_xlim(1, max(len(r["curve"]["mean"]) for r in reports))
    axes.set_xlabel("cost in queries (training epochs / the full fidelity's)")
    axes.set_ylabel(f"incumbent's {first['settings']['test']} (%)")
    axes.set_title(
        f"NAS-Bench-201 {first['settings']['dataset']}, search signal "
        f"{first['settings']['signal']}: mean over {first['settings']['seeds']} seeds, "
        "band ±1 std",
        fontsize=9,
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8, title="final mean ± std (%)", title_fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_bytes_atomic(folder / PLOT, png.getvalue())
    return len(reports)


def read_reports(folder: Path, kind: str) -> list[dict[str, Any]]:
    """Every JSON in `folder` that is a strategy's report of `kind`; other files skipped."""
    reports = []
    for path in sorted(folder.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(report, dict) and report.get("kind") == kind:
            reports.append(report)
    return reports


def dumps(report: dict[str, Any]) -> str:
    """JSON with nested objects indented and each list of numbers on one line, so that
    100 seeds x 150 queries stay readable (and a fraction of their size one per line)."""

    def encode(value: Any, depth: int) -> str:
        if isinstance(value, dict) and value:
            pad = "  " * (depth + 1)
            items = (f"{pad}{json.dumps(k)}: {encode(v, depth + 1)}" for k, v in value.items())
            return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
        if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            pad = "  " * (depth + 1)
            items = (pad + encode(v, depth + 1) for v in value)
            return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"
        return json.dumps(value, allow_nan=False)

    return encode(report, 0) + "\n"


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Raise `logger` to WARNING for the duration, then restore its level."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _positive(key: str, value: Any) -> int:
    return check_int(key, value)


def _table_of(estimator: Estimator) -> NB201TableEstimator:
    """The NB201 table at the end of an estimator's chain, or a NasflowError."""
    found: Any = estimator
    while not isinstance(found, NB201TableEstimator):
        found = getattr(found, "then", None)
        if found is None:
            raise NasflowError(
                "the benchmark answers queries from the NB201 table: choose an estimator "
                "that ends in it (estimator=nb201_table, nb201_successive_halving, "
                f"nb201_prefilter); got {type(estimator).__name__}"
            )
    return found


def _nan_stat(stat: Any, curves: np.ndarray) -> np.ndarray:
    """`stat` over seeds per point; NaN where no seed has an incumbent yet."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stat(curves, axis=0)


def _round(value: Any) -> float | None:
    """Six decimals, the table's own precision (its accuracies are in %); NaN (no cell
    evaluated yet at that query) is None, JSON's null."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
