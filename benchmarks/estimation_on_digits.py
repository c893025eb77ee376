"""Cheap estimation against full training, in the real pipeline on digits.

For each variant, runs the pipeline's own entry points (search, retrain, evaluate) on
the prepared digits data into a scratch folder, with MLflow off, and records the search's
wall time (the search's own clock, start-up excluded, from its summary.json), the training
epochs it spent, how many candidates it trained to full fidelity, and the retrained
network's test accuracy. The baseline is the default pipeline (random search, 20
candidates, 8 epochs each); the variants reuse its strategy and seed.

    .venv/bin/python benchmarks/estimation_on_digits.py
    .venv/bin/python benchmarks/estimation_on_digits.py \
        --variant sh_only="estimator=successive_halving strategy.budget=9"

Needs `data/prepared` (``dvc repro prepare`` or ``make repro``). Writes
benchmarks/results/estimation_on_digits.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from report import ROOT, machine_info, run_stage, write_report

VARIANTS = {
    "full_training": "",
    # A proxy vote keeps 9 of 27 random proposals; successive halving trains them for 3
    # epochs and the best one for the full 8: one bracket.
    "prefilter_sh": "estimator=prefilter_sh strategy.budget=9",
    # The same 20 candidates, each stopped early when its curve falls behind.
    "median_stopping": "estimator=median_stopping",
}


def run_variant(name: str, overrides: str, scratch: Path, seed: int) -> dict[str, Any]:
    folder = scratch / name
    common = [
        "tracking=none",
        f"seed={seed}",
        f"paths.search={folder / 'search'}",
        f"paths.retrain={folder / 'retrain'}",
        f"paths.evaluate={folder / 'evaluate'}",
        f"paths.checkpoints={folder / 'checkpoints'}",
        *shlex.split(overrides),
    ]
    walls = {stage: run_stage(stage, common) for stage in ("search", "retrain", "evaluate")}
    summary = json.loads((folder / "search" / "summary.json").read_text())
    metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    best = json.loads((folder / "search" / "best_architecture.json").read_text())
    result = {
        "overrides": overrides,
        "search_seconds": summary["seconds"],
        "cost_epochs": summary.get("cost_epochs"),
        "candidates": summary["evaluated"],
        "full_fidelity": summary.get("full_fidelity", summary["evaluated"]),
        "proposals": summary.get("proposals", summary["evaluated"]),
        "best_val_acc": summary["best_score"],
        "best": best.get("description"),
        "best_params": summary["best_params"],
        "test_acc": metrics["test_acc"],
        "stage_wall_seconds": walls,
    }
    print(
        f"{name}: search {result['search_seconds']:.1f}s, {result['cost_epochs']} epochs, "
        f"test {100 * result['test_acc']:.2f} %  ({result['best']})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="search seeds; each runs every variant"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="add or replace a variant (Hydra overrides, space-separated)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run these variants (full_training always)"
    )
    parser.add_argument("--output", default="benchmarks/results/estimation_on_digits.json")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    for entry in args.variant:
        name, _, overrides = entry.partition("=")
        variants[name] = overrides
    if args.only:
        if unknown := sorted(set(args.only) - set(variants)):
            sys.exit(f"error: unknown variant {unknown[0]!r}; choose from {', '.join(variants)}")
        variants = {n: o for n, o in variants.items() if n == "full_training" or n in args.only}
    if not (ROOT / "data" / "prepared" / "meta.json").is_file():
        sys.exit("error: no prepared data in data/prepared: run `dvc repro prepare` first")
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            results = {
                name: run_variant(name, overrides, Path(scratch) / f"seed{seed}", seed)
                for name, overrides in variants.items()
            }
            base = results["full_training"]
            for result in results.values():
                ratio = result["search_seconds"] / base["search_seconds"]
                result["search_time_ratio"] = round(ratio, 3)
                result["test_acc_minus_full_training_points"] = round(
                    100 * (result["test_acc"] - base["test_acc"]), 2
                )
            runs[f"seed{seed}"] = results
    summary = {
        name: {
            "mean_search_time_ratio": round(
                sum(runs[s][name]["search_time_ratio"] for s in runs) / len(runs), 3
            ),
            "mean_test_acc_minus_full_training_points": round(
                sum(runs[s][name]["test_acc_minus_full_training_points"] for s in runs) / len(runs),
                2,
            ),
        }
        for name in variants
    }
    for name, figures in summary.items():
        print(f"{name}: {figures}")
    report = {"machine": machine_info(seeds=args.seeds), "summary": summary, "runs": runs}
    write_report(report, args.output)


if __name__ == "__main__":
    main()
