"""Network morphism against from-scratch evolution on real data (Fashion-MNIST).

What is measured
    On a Fashion-MNIST subset (``../shared/datasets/fashion-mnist``; train and val cut
    to ``--train-size`` and ``--val-size`` from the official training split, the whole
    official test split), through the pipeline's own entry points (``pipelines/*.py``,
    one process each, MLflow off), for each of ``--seeds`` seeds:

    * ``strategy=evolution``: regularized evolution, every candidate trained from scratch
      for ``--epochs`` epochs;
    * ``strategy=morphism``: NASH's hill climbing, every child trained for
      ``--morphism-epochs`` (by default half of ``--epochs``) from its parent's weights;

    with the same chain space, the same number of candidates (``--budget``) and the same
    candidate training (optimizer, schedule, batch). Each search's best candidate by
    validation accuracy is then retrained from scratch with the same recipe
    (``--retrain-epochs``) and evaluated on the test split.

    Reported per run: the best validation accuracy of the search, its total training
    epochs (the search's ``cost_epochs``), its wall seconds, the best network's parameters
    and its test accuracy after the retrain; and, per strategy, the means over seeds.
    The question is the issue's: does morphism reach evolution's best validation accuracy
    with at most half of its training epochs?

How to run (from the repository root; torch on both cores, nothing else running)
    .venv/bin/python benchmarks/morphism_fmnist.py
    .venv/bin/python benchmarks/morphism_fmnist.py --seeds 1 --budget 6 --train-size 500
    .venv/bin/python benchmarks/morphism_fmnist.py --reuse   # keep --work's runs (same settings)

    Writes ``benchmarks/results/morphism_fmnist.json`` (``--output``); the pipeline's files
    go under ``--work`` (git-ignored). Exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from report import machine_info, run_stage, write_report

SPACE = [
    # A chain of convolutions for 28x28 grey images, as experiment=small_gray's but
    # narrower (16 to 64 filters), so that a search fits the 2-core machine.
    "search_space=chain",
    "search_space.min_layers=3",
    "search_space.max_layers=10",
    "search_space.ops=[conv,max_pool,avg_pool,gap]",
    "search_space.filters=[16,32,64]",
    "search_space.kernel_sizes=[3,5]",
    "search_space.max_pooling=3",
]

# Each finished run records the overrides it ran with (less its paths, which depend on
# --work, --root and the working folder), so that --reuse reads only runs of the same
# settings.
SETTINGS = "overrides.json"
PATHS = ("paths.", "data.source.root=")


def settings_of(overrides: list[str]) -> list[str]:
    """What makes a run what it is: its overrides less the paths."""
    return [o for o in overrides if not o.startswith(PATHS)]


def record_settings(folder: Path, overrides: list[str]) -> None:
    (folder / SETTINGS).write_text(json.dumps(settings_of(overrides), indent=1) + "\n")


def check_settings(folder: Path, overrides: list[str]) -> None:
    """Exit with one line if ``folder``'s finished run was made with other settings."""
    record = folder / SETTINGS
    if not record.exists():
        raise SystemExit(
            f"--reuse: {folder} has no {SETTINGS}, so its settings are unknown; "
            "run without --reuse or pick another --work"
        )
    before = json.loads(record.read_text())
    changed = sorted(set(before) ^ set(settings_of(overrides)))
    if changed:
        raise SystemExit(
            f"--reuse: {folder} was run with other settings ({', '.join(changed)}); "
            "run without --reuse or pick another --work"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/datasets/fashion-mnist")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=16, help="candidates of each search")
    parser.add_argument("--epochs", type=int, default=4, help="evolution's, per candidate")
    parser.add_argument("--morphism-epochs", type=int, help="per child; default: epochs // 2")
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--morphisms", type=int, default=2)
    parser.add_argument(
        "--start-samples",
        type=int,
        default=1,
        help="morphism starts at the smallest of this many random architectures (1: random)",
    )
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--strategies", default="evolution,morphism")
    parser.add_argument("--work", default="benchmarks/work/morphism_fmnist")
    parser.add_argument("--output", default="benchmarks/results/morphism_fmnist.json")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read the runs --work has finished (same settings) instead of running them again",
    )
    parser.add_argument("--only-finished", action="store_true", help="with --reuse: run nothing")
    args = parser.parse_args()
    morphism_epochs = args.morphism_epochs or max(1, args.epochs // 2)

    work = Path(args.work)
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    data = [
        "data=fashion_mnist",
        f"data.source.root={args.root}",
        f"data.train_size={args.train_size}",
        f"data.val_size={args.val_size}",
        f"paths.prepared={work / 'prepared'}",
        "tracking=none",
    ]
    prepare_s = 0.0 if args.reuse and (work / "prepared" / "meta.json").exists() else None
    if prepare_s is None:
        prepare_s = run_stage("prepare", data)
    meta = json.loads((work / "prepared" / "meta.json").read_text())
    sizes = (meta["sizes"]["train"], meta["sizes"]["val"])
    if args.reuse and sizes != (args.train_size, args.val_size):
        raise SystemExit(
            f"--reuse: {work / 'prepared'} holds {sizes[0]} training and {sizes[1]} validation "
            "images; run without --reuse or pick another --work"
        )
    print(f"prepared {meta['sizes']} in {prepare_s} s", flush=True)
    shared = [
        *data,
        *SPACE,
        f"strategy.budget={args.budget}",
        "estimator=training",
        f"estimator.batch_size={args.batch_size}",
        f"retrain.epochs={args.retrain_epochs}",
        f"retrain.batch_size={args.batch_size}",
    ]
    settings = {
        "evolution": [
            "strategy=evolution",
            f"strategy.population_size={args.population}",
            f"strategy.sample_size={args.sample}",
            f"estimator.epochs={args.epochs}",
        ],
        "morphism": [
            "strategy=morphism",
            f"strategy.children={args.children}",
            f"strategy.morphisms={args.morphisms}",
            f"strategy.start_samples={args.start_samples}",
            f"estimator.epochs={morphism_epochs}",
        ],
    }
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for strategy in args.strategies.split(","):
            folder = work / f"{strategy}-{seed}"
            overrides = [
                *shared,
                *settings[strategy],
                f"seed={seed}",
                f"paths.search={folder / 'search'}",
                f"paths.retrain={folder / 'retrain'}",
                f"paths.evaluate={folder / 'evaluate'}",
                f"paths.checkpoints={folder / 'checkpoints'}",
            ]
            finished = (folder / "evaluate" / "metrics.json").exists()
            if args.reuse and finished:
                check_settings(folder, overrides)
                search_s = json.loads((folder / "search" / "summary.json").read_text())["seconds"]
                retrain_s = None
            elif args.only_finished:
                continue
            else:
                search_s = run_stage("search", overrides)
                retrain_s = run_stage("retrain", overrides)
                run_stage("evaluate", overrides)
                record_settings(folder, overrides)
            summary = json.loads((folder / "search" / "summary.json").read_text())
            test = json.loads((folder / "evaluate" / "metrics.json").read_text())
            best = json.loads((folder / "search" / "best_architecture.json").read_text())
            history = [json.loads(line) for line in (folder / "search" / "history.jsonl").open()]
            run = {
                "strategy": strategy,
                "seed": seed,
                "best_val_acc": round(summary["best_score"], 4),
                "cost_epochs": summary["cost_epochs"],
                "search_s": search_s,
                "evaluated": summary["evaluated"],
                "failed": summary["failed"],
                "best_params": summary["best_params"],
                "best": best.get("description"),
                "inheriting_candidates": sum(1 for r in history if r.get("inherited")),
                "retrain_s": retrain_s,
                "test_acc": round(test["test_acc"], 4),
                # The best validation accuracy after each candidate: the search's curve.
                "curve": [r["best_score"] for r in history],
                "cumulative_epochs": [r["total_cost"] for r in history],
            }
            runs.append(run)
            print(
                f"{strategy} seed {seed}: best val {run['best_val_acc']:.4f} "
                f"({run['cost_epochs']:g} epochs, {search_s:.0f} s), test {run['test_acc']:.4f}",
                flush=True,
            )
    means = {}
    for strategy in args.strategies.split(","):
        mine = [r for r in runs if r["strategy"] == strategy]
        means[strategy] = {
            key: round(statistics.mean(r[key] for r in mine), 4)
            for key in ("best_val_acc", "cost_epochs", "search_s", "test_acc", "best_params")
        }
        if len(mine) > 1:
            means[strategy]["best_val_acc_std"] = round(
                statistics.stdev(r["best_val_acc"] for r in mine), 4
            )
            means[strategy]["test_acc_std"] = round(
                statistics.stdev(r["test_acc"] for r in mine), 4
            )
    verdict = None
    if {"evolution", "morphism"} <= set(means):
        evolution, morphism = means["evolution"], means["morphism"]
        verdict = {
            "val_reached": morphism["best_val_acc"] >= evolution["best_val_acc"],
            "epochs_ratio": round(morphism["cost_epochs"] / evolution["cost_epochs"], 3),
            "val_difference": round(morphism["best_val_acc"] - evolution["best_val_acc"], 4),
            "test_difference": round(morphism["test_acc"] - evolution["test_acc"], 4),
        }
    report = {
        "benchmark": "morphism_fmnist",
        "machine": machine_info(),
        "data": {"sizes": meta["sizes"], "root": args.root},
        "settings": {
            "space": SPACE,
            "budget": args.budget,
            "evolution_epochs": args.epochs,
            "morphism_epochs": morphism_epochs,
            "children": args.children,
            "morphisms": args.morphisms,
            "start_samples": args.start_samples,
            "population": args.population,
            "sample": args.sample,
            "retrain_epochs": args.retrain_epochs,
            "batch_size": args.batch_size,
        },
        "runs": runs,
        "means": means,
        "verdict": verdict,
    }
    write_report(report, args.output)
    print(json.dumps({"means": means, "verdict": verdict}, indent=2))


if __name__ == "__main__":
    main()
