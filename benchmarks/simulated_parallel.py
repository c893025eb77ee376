"""Asynchronous strategies on the NAS-Bench-201 table with 1, 4, 16 and 64 workers, in
simulated time.

Each (strategy, workers) pair searches CIFAR-10 (the 200-epoch validation accuracy as the
signal) for `--queries` queries on `--seeds` seeds through the real asynchronous loop,
with `executor=simulated`: every query "takes" the time the simulated executor's cost
model gives a 200-epoch training of that cell (linear in its FLOPs), so with N workers N
candidates are in flight and each strategy proposes without the results still out. The
incumbent is the best cell by the signal among the finished ones; what is reported is its
200-epoch test accuracy, as the mean over seeds against simulated wall time:

* the simulated time the mean incumbent first reaches `--target` (94.0 %),
* the mean (and standard deviation) at the end, after `--queries` queries,
* for each pair, the speed-up of reaching the target against one worker, as the
  fraction of one worker's time, with a 90 % bootstrap interval over the seeds (the
  seeds resampled together for both worker counts, `--resamples` times).

    .venv/bin/python benchmarks/simulated_parallel.py
    .venv/bin/python benchmarks/simulated_parallel.py --strategies evolution --workers 1 16 \
        --overrides strategy.sample_size=10 --output /tmp/evolution_s10.json
    .venv/bin/python benchmarks/simulated_parallel.py --strategies random \
        --estimators nb201_asha nb201_async_hyperband nb201_successive_halving

Writes benchmarks/results/simulated_parallel.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from report import ROOT, machine_info, write_report

sys.path.insert(0, str(ROOT / "src"))

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from nasflow.config import register_configs
from nasflow.executors import SimulatedExecutor
from nasflow.loop import Candidate, run_search


def incumbent_at(history: list[Candidate], times: np.ndarray) -> np.ndarray:
    """The incumbent's test accuracy (%) at each of `times` (NaN before the first)."""
    order = sorted(history, key=lambda c: c.elapsed)
    out = np.full(len(times), np.nan)
    best_score, best_test, position = -np.inf, np.nan, 0
    for i, t in enumerate(times):
        while position < len(order) and order[position].elapsed <= t:
            evaluation = order[position].evaluation
            if (
                evaluation.status == "ok"
                and evaluation.score is not None
                and evaluation.score > best_score
            ):
                best_score, best_test = evaluation.score, 100 * evaluation.metrics["test_acc"]
            position += 1
        out[i] = best_test
    return out


def run_pair(cfg: Any, workers: int, seeds: int, queries: int) -> dict[str, Any]:
    space = instantiate(cfg.search_space)
    estimator = instantiate(cfg.estimator, space=space)
    histories = []
    start = time.perf_counter()
    for seed in range(seeds):
        strategy = instantiate(cfg.strategy, space=space, budget=queries, seed=seed)
        executor = SimulatedExecutor(workers=workers)
        histories.append(run_search(strategy, estimator, executor, seed))
    seconds = time.perf_counter() - start
    # The mean curve changes only when some seed's candidate finishes.
    times = np.unique(np.concatenate([[c.elapsed for c in h] for h in histories]))
    curves = np.stack([incumbent_at(h, times) for h in histories])
    mean = curves.mean(axis=0)  # NaN until every seed has an incumbent
    finals = [float(curve[-1]) for curve in curves]
    return {
        "workers": workers,
        "times": times,
        "curves": curves,
        "mean": mean,
        "final_mean": statistics.fmean(finals),
        "final_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "end_time_mean": statistics.fmean(h[-1].elapsed for h in histories),
        "wall_seconds": round(seconds, 2),
    }


def first_reaching(times: np.ndarray, mean: np.ndarray, target: float) -> float | None:
    reached = np.flatnonzero(np.nan_to_num(mean, nan=-np.inf) >= target - 1e-9)
    return float(times[reached[0]]) if len(reached) else None


def fraction_interval(
    one: dict[str, Any], many: dict[str, Any], target: float, resamples: int
) -> list[float] | None:
    """The 5th and 95th percentiles of `many`'s time to the target as a fraction of
    `one`'s, over bootstrap resamples of the seeds (the same seeds for both). A mean over
    some seeds only changes where one of them does, so each curve is resampled on its
    run's grid of every seed's finishing times."""
    if resamples == 0:
        return None
    rng = np.random.default_rng(0)
    seeds = len(one["curves"])
    fractions = []
    for _ in range(resamples):
        drawn = rng.integers(0, seeds, seeds)
        a = first_reaching(one["times"], one["curves"][drawn].mean(axis=0), target)
        b = first_reaching(many["times"], many["curves"][drawn].mean(axis=0), target)
        fractions.append(b / a if a and b else np.nan)
    if np.isnan(fractions).mean() > 0.05:  # the target is not reached reliably
        return None
    low, high = np.nanpercentile(fractions, [5, 95])
    return [round(float(low), 4), round(float(high), 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=["evolution", "random"])
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["nb201_table"],
        help="e.g. nb201_asha nb201_async_hyperband nb201_successive_halving: each is run "
        "with every strategy; --queries then counts candidates, whatever epochs they spend",
    )
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="more settings for every run, e.g. strategy.sample_size=10",
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--target", type=float, default=94.0)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap; 0: none")
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks/results/simulated_parallel.json")
    )
    args = parser.parse_args()
    register_configs()
    report: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "queries": args.queries,
            "seeds": args.seeds,
            "target": args.target,
            "resamples": args.resamples,
            "overrides": args.overrides,
            "signal": "cifar10 200-epoch validation accuracy; reported: 200-epoch test accuracy",
            "cost_model": {
                "seconds_per_epoch": SimulatedExecutor().seconds_per_epoch,
                "seconds_per_gflop": SimulatedExecutor().seconds_per_gflop,
            },
        },
        "results": {},
    }
    pairs = [(strategy, estimator) for strategy in args.strategies for estimator in args.estimators]
    for strategy, estimator in pairs:
        name = strategy if estimator == "nb201_table" else f"{strategy}+{estimator}"
        overrides = [
            f"strategy={strategy}",
            "search_space=nb201",
            f"estimator={estimator}",
            *args.overrides,
        ]
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("benchmark", overrides)
        rows = []
        for workers in args.workers:
            pair = run_pair(cfg, workers, args.seeds, args.queries)
            rows.append(pair)
        one = first_reaching(rows[0]["times"], rows[0]["mean"], args.target)
        entries = []
        for pair in rows:
            reach = first_reaching(pair["times"], pair["mean"], args.target)
            entry = {
                "workers": pair["workers"],
                "time_to_target": reach,
                "fraction_of_one_worker": (reach / one) if reach and one else None,
                "fraction_90_interval": (
                    fraction_interval(rows[0], pair, args.target, args.resamples)
                    if reach and one and pair is not rows[0]
                    else None
                ),
                "final_mean": round(pair["final_mean"], 4),
                "final_std": round(pair["final_std"], 4),
                "end_time_mean": round(pair["end_time_mean"], 1),
                "wall_seconds": pair["wall_seconds"],
            }
            entries.append(entry)
            reached = "never" if reach is None else f"{reach / 3600:.1f} h"
            if entry["fraction_of_one_worker"] is not None:
                reached += f" ({entry['fraction_of_one_worker']:.3f} of one worker's"
                if entry["fraction_90_interval"] is not None:
                    low, high = entry["fraction_90_interval"]
                    reached += f", 90 % interval {low:.3f}-{high:.3f}"
                reached += ")"
            print(
                f"{name:>12} workers {pair['workers']:>3}: {args.target} % at {reached}; "
                f"after {args.queries} queries {entry['final_mean']:.2f} +- "
                f"{entry['final_std']:.2f} % at {entry['end_time_mean'] / 3600:.1f} h "
                f"({pair['wall_seconds']:.1f} s)",
                flush=True,
            )
        report["results"][name] = entries
    write_report(report, args.output)


if __name__ == "__main__":
    main()
