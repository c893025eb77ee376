"""Benchmark a search strategy on the NAS-Bench-201 table over many seeds.

Each seed runs the configured strategy through the real search loop (`run_search`, one
`LocalExecutor`) with `NB201TableEstimator` answering every query from the table, so a
seed costs a fraction of a second and a strategy is judged the way NAS papers judge it:
the mean test accuracy of the incumbent (the best cell so far by the search signal, a
validation accuracy) after every query, over many seeds. One JSON per strategy goes to
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import write_bytes_atomic, write_text_atomic
from nasflow.errors import NasflowError
from nasflow.estimators.tabular import NB201TableEstimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Candidate, run_search
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.tabular.nb201 import load_table
from nasflow.tracking import Tracker, git_commit

log = logging.getLogger("nasflow.benchmark")

KIND = "nasflow.benchmark/1"  # marks a strategy's JSON, so the plot skips any other file
PLOT = "comparison.png"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.strategy`` on seeds 0..``benchmark.seeds``-1 and write its JSON and the plot.

    Returns:
        The summary: the strategy's name, final mean and std (%), the random-search
        expectation (%) and the seconds.
    """
    settings = cfg.benchmark
    seeds = _positive("benchmark.seeds", settings.seeds)
    queries = _positive("benchmark.queries", settings.queries)
    space = NB201Space()
    estimator = NB201TableEstimator(space, dataset=settings.dataset, epochs=settings.signal_epochs)
    target = get_class(cfg.strategy._target_)
    name = settings.name or getattr(target, "name", target.__name__)
    columns = estimator.columns
    log.info(
        "%s: %d seeds x %d queries on NB201 %s (signal %s, reported %s)",
        name, seeds, queries, settings.dataset, columns.signal, columns.test,
    )  # fmt: skip

    start = time.perf_counter()
    with _quiet(logging.getLogger("nasflow.search")):  # the loop's line per candidate
        runs = [_run_seed(cfg, space, estimator, queries, seed, seeds) for seed in range(seeds)]
    total = time.perf_counter() - start

    table = load_table().columns
    signal, test = table[columns.signal], table[columns.test]
    curves = np.array([r["test_acc"] for r in runs], dtype=float)
    final = curves[:, -1]
    expectation = random_search_expectation(signal, test, queries)
    strategy_config = cast(dict[str, Any], OmegaConf.to_container(cfg.strategy, resolve=True))
    strategy_config.pop("seed", None)  # each run's seed is its index, below
    strategy_config["budget"] = queries
    per_seed = [r["seconds"] for r in runs]
    report = {
        "kind": KIND,
        "strategy": name,
        "settings": {
            "strategy": strategy_config,
            "seeds": seeds,  # seeds 0..seeds-1, each the strategy's and the loop's seed
            "queries": queries,
            "dataset": settings.dataset,
            "signal_epochs": settings.signal_epochs,
            "signal": columns.signal,
            "test": columns.test,
        },
        "final": {
            "mean": _round(final.mean()),
            "std": _round(final.std()),  # over seeds, population std (ddof=0)
            "sem": _round(final.std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else None,
            "min": _round(final.min()),
            "max": _round(final.max()),
            "minus_random_expectation": _round(final.mean() - expectation[-1]),
        },
        "curve": {  # entry q-1: after q queries; the plot's band is mean +- std
            "mean": [_round(v) for v in curves.mean(axis=0)],
            "std": [_round(v) for v in curves.std(axis=0)],
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
    estimator: NB201TableEstimator,
    queries: int,
    seed: int,
    seeds: int,
) -> dict[str, Any]:
    """One search; the incumbent's test accuracy (%) and signal (%) after every query."""
    strategy = instantiate(cfg.strategy, space=space, budget=queries, seed=seed)
    start = time.perf_counter()
    history = run_search(strategy, estimator, LocalExecutor(), seed)
    seconds = time.perf_counter() - start
    test_acc, signal, arch = incumbent_curves(history)
    if not test_acc or test_acc[-1] is None:
        raise NasflowError(f"strategy {strategy.name} with seed {seed} evaluated no NB201 cell")
    # A strategy that runs out of cells to propose ends early: its incumbent stays.
    evaluated = len(test_acc)
    test_acc += test_acc[-1:] * (queries - evaluated)
    signal += signal[-1:] * (queries - evaluated)
    log.info(
        "seed %d/%d: test %.2f %% (signal %.2f) after %d queries, %.2fs  %s",
        seed + 1, seeds, test_acc[-1], signal[-1], evaluated, seconds, arch,
    )  # fmt: skip
    return {
        "seed": seed,
        "test_acc": test_acc,
        "signal": signal,
        "arch": arch,
        "evaluated": evaluated,
        "seconds": round(seconds, 4),
    }


def incumbent_curves(
    history: Sequence[Candidate],
) -> tuple[list[float | None], list[float | None], str | None]:
    """After each candidate, the incumbent's test accuracy and signal (both in %), and the
    final incumbent's arch string. The incumbent is the best by the score (the signal)
    so far; a tie keeps the earlier one. None until a candidate has succeeded."""
    test_acc: list[float | None] = []
    signal: list[float | None] = []
    best: Candidate | None = None
    for candidate in history:
        score = candidate.evaluation.score
        if score is not None and (best is None or score > cast(float, best.evaluation.score)):
            best = candidate
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
    reports = []
    for path in sorted(folder.glob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(report, dict) and report.get("kind") == KIND:
            reports.append(report)
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
        mean, std = np.array(report["curve"]["mean"]), np.array(report["curve"]["std"])
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
    axes.set_ylim(min(lows) - 0.2, optimum + 0.25)
    axes.set_xlim(1, max(len(r["curve"]["mean"]) for r in reports))
    axes.set_xlabel("queries (architectures evaluated)")
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
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise NasflowError(f"{key} must be a positive integer, got {value!r}")
    return value


def _round(value: Any) -> float | None:
    """Six decimals, the table's own precision (its accuracies are in %); NaN (no cell
    evaluated yet at that query) is None, JSON's null."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
