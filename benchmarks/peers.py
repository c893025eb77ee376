"""nasflow's strategies beside other libraries' own implementations, on NAS-Bench-201.

What is compared
    The same shipped NAS-Bench-201 table (CIFAR-10 by default, the 200-epoch validation
    accuracy as the search signal), the same seeds and the same query budget. For each
    method and seed, the incumbent is the architecture of best validation accuracy so far
    and what is reported after every query is its test accuracy, as
    ``pipelines/benchmark.py`` reports it.

    * nasflow: its strategies through ``pipelines/benchmark.py`` itself (a Hydra multirun
      into a scratch folder), so these are the figures nasflow's own harness produces.
    * Optuna's samplers other than the TPE nasflow wraps, driven by Optuna's own ask/tell
      loop: ``cmaes`` (CMA-ES; each edge is an integer 0..4, the op's index, as CMA-ES
      needs ordered variables) and ``gp`` (Gaussian-process Bayesian optimisation, each
      edge categorical). A trial that repeats an architecture already queried is told its
      known value and costs no query (nasflow's strategies never query twice either),
      up to 50 repeats in a row, after which the repeat is counted as a query.

    * Syne Tune's regularized evolution searcher (``syne_tune_re``), asked and told one
      trial at a time with nasflow's evolution settings (population 20, tournaments of
      5): the same algorithm as nasflow's ``evolution``, in another implementation.
      Repeats as for Optuna.

How to run (from the repository root)
    .venv/bin/python benchmarks/peers.py                        # 100 seeds x 150 queries
    .venv/bin/python benchmarks/peers.py --seeds 10 --peers syne_tune_re cmaes

    The peers are an optional dependency: ``pip install -e '.[peers]'``.

    Writes ``benchmarks/results/peers.json`` (``--output``): per method the final mean, std
    and standard error of the incumbent's test accuracy, its mean curve and seconds, plus
    machine info; and ``peers.png`` beside it, the mean curves with the final table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from report import ROOT, machine_info, write_report

NASFLOW = ("random", "evolution", "local_search", "tpe", "reinforce", "metaqnn")
PEERS = ("syne_tune_re", "cmaes", "gp")
MAX_REPEATS = 50


def nasflow_runs(strategies: list[str], seeds: int, queries: int, dataset: str) -> dict[str, Any]:
    """Each strategy through nasflow's own benchmark entry point; its JSON, by strategy."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable,
            str(ROOT / "pipelines" / "benchmark.py"),
            "-m",
            f"strategy={','.join(strategies)}",
            f"benchmark.seeds={seeds}",
            f"benchmark.queries={queries}",
            f"estimator.dataset={dataset}",
            f"benchmark.output={scratch}",
            f"hydra.sweep.dir={scratch}/multirun",
        ]
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        return {s: json.loads((Path(scratch) / f"{s}.json").read_text()) for s in strategies}


Lookup = Callable[[tuple[str, ...]], tuple[float, float]]


def syne_tune_run(seed: int, queries: int, lookup: Lookup) -> list[float]:
    """Syne Tune's own regularized evolution searcher, asked and told one trial at a time
    (a simulation with one worker), with nasflow's evolution settings: population 20,
    tournaments of 5. Syne Tune's searchers minimise, so it is told the negated validation
    accuracy; its initial random population draws from numpy's global generator, seeded
    here with the seed."""
    from syne_tune.config_space import choice
    from syne_tune.optimizer.schedulers.searchers.regularized_evolution import (
        RegularizedEvolution,
    )

    from nasflow.search_spaces.nb201 import EDGE_NAMES, OPS

    np.random.seed(seed)
    searcher = RegularizedEvolution(
        {e: choice(list(OPS)) for e in EDGE_NAMES},
        population_size=20,
        sample_size=5,
        random_seed=seed,
    )
    known: dict[tuple[str, ...], float] = {}
    best_val, best_test, curve, repeats, trial = -math.inf, 0.0, [], 0, 0
    while len(curve) < queries:
        config = searcher.suggest()
        edges = tuple(config[e] for e in EDGE_NAMES)
        trial += 1
        if edges in known and repeats < MAX_REPEATS:
            repeats += 1
            searcher.on_trial_complete(trial, config, -known[edges])
            continue
        repeats = 0
        val, test = lookup(edges)
        known[edges] = val
        searcher.on_trial_complete(trial, config, -val)
        if val > best_val:
            best_val, best_test = val, test
        curve.append(best_test)
    return curve


def peer_run(name: str, seed: int, queries: int, lookup: Lookup) -> list[float]:
    """One search of a peer: the incumbent's test accuracy after each query."""
    if name == "syne_tune_re":
        return syne_tune_run(seed, queries, lookup)
    import optuna

    from nasflow.search_spaces.nb201 import EDGE_NAMES, OPS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if name == "cmaes":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.CmaEsSampler(seed=seed)
    elif name == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed)
    else:
        raise SystemExit(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    known: dict[tuple[str, ...], float] = {}
    best_val, best_test, curve, repeats = -math.inf, 0.0, [], 0
    while len(curve) < queries:
        trial = study.ask()
        if name == "cmaes":
            edges = tuple(OPS[trial.suggest_int(e, 0, len(OPS) - 1)] for e in EDGE_NAMES)
        else:
            edges = tuple(trial.suggest_categorical(e, OPS) for e in EDGE_NAMES)
        if edges in known and repeats < MAX_REPEATS:
            repeats += 1
            study.tell(trial, known[edges])
            continue
        repeats = 0
        val, test = lookup(edges)
        known[edges] = val
        study.tell(trial, val)
        if val > best_val:
            best_val, best_test = val, test
        curve.append(best_test)
    return curve


def summary(curves: list[list[float]], seconds: float) -> dict[str, Any]:
    finals = np.array([c[-1] for c in curves])
    return {
        "final": {
            "mean": round(float(finals.mean()), 6),
            "std": round(float(finals.std()), 6),
            "sem": round(float(finals.std() / math.sqrt(len(finals))), 6),
        },
        "curve": [round(float(v), 6) for v in np.mean(curves, axis=0)],
        "seeds": len(curves),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--nasflow", nargs="*", default=list(NASFLOW))
    parser.add_argument("--peers", nargs="*", default=list(PEERS))
    parser.add_argument("--gp-seeds", type=int, default=None, help="fewer seeds for gp")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/peers.json"))
    args = parser.parse_args()

    from nasflow.estimators.tabular import NB201TableEstimator
    from nasflow.search_spaces import NB201Architecture, NB201Space

    estimator = NB201TableEstimator(space=NB201Space(), dataset=args.dataset)

    def lookup(edges: tuple[str, ...]) -> tuple[float, float]:
        found = estimator.evaluate(NB201Architecture(edges), seed=0)
        return float(found.metrics["val_acc"]), 100 * float(found.metrics["test_acc"])

    methods: dict[str, Any] = {}
    if args.nasflow:
        start = time.perf_counter()
        for strategy, result in nasflow_runs(
            args.nasflow, args.seeds, args.queries, args.dataset
        ).items():
            curves = [run["test_acc"] for run in result["runs"]]
            methods[f"nasflow:{strategy}"] = summary(curves, result["seconds"]["total"])
        print(f"nasflow's {len(args.nasflow)} strategies: {time.perf_counter() - start:.0f} s")
    for peer in args.peers:
        seeds = args.gp_seeds if peer == "gp" and args.gp_seeds else args.seeds
        start = time.perf_counter()
        curves = [peer_run(peer, seed, args.queries, lookup) for seed in range(seeds)]
        label = "syne_tune:regularized_evolution" if peer == "syne_tune_re" else f"optuna:{peer}"
        methods[label] = summary(curves, time.perf_counter() - start)
        print(f"{label}: {methods[label]['final']} ({seeds} seeds)")

    for name, found in sorted(methods.items(), key=lambda kv: -kv[1]["final"]["mean"]):
        final = found["final"]
        print(f"{name:24s} {final['mean']:.2f} +- {final['std']:.2f} %  ({found['seeds']} seeds)")
    report = {
        "benchmark": "peers",
        "dataset": args.dataset,
        "signal": f"{args.dataset}_valid_acc (200 epochs)",
        "queries": args.queries,
        "methods": methods,
        "machine": machine_info(),
    }
    write_report(report, args.output)
    plot(report, Path(args.output).with_suffix(".png"))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for name, found in sorted(report["methods"].items()):
        final = found["final"]
        label = f"{name}: {final['mean']:.2f} ± {final['std']:.2f} ({found['seeds']} seeds)"
        axes.plot(range(1, len(found["curve"]) + 1), found["curve"], label=label)
    axes.set_xlabel("queries")
    axes.set_ylabel("incumbent's test accuracy (%), mean over seeds")
    axes.set_title(f"NAS-Bench-201 {report['dataset']}: nasflow and its peers")
    axes.set_ylim(bottom=90)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
