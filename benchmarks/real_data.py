"""Is NAS worth it on real data? The searched model against hand-designed networks.

What is measured
    On one data set (Fashion-MNIST or CIFAR-10 from ``../shared/datasets/``, train and
    val cut to ``--train-size`` and ``--val-size`` examples, the full official test
    split), through the pipeline's own entry points (``pipelines/*.py``, one process
    each, MLflow off):

    (a) the zoo (``search_space=zoo``: LeNet-5, a small VGG, ResNet-20 and -56,
        MobileNetV2, at ``--widths``) with grid search, each member trained as the
        recipe's candidates are trained at full fidelity and scored on val: the best hand
        design by validation, as a user would pick it;
    (b) the recipe's search (``--recipe``, by default ``experiment=small_gray`` or
        ``cifar_like``: its space, strategy and estimator).

    Then every zoo member and the searched model are retrained with the same recipe (the
    recipe's ``retrain`` settings and augmentation, ``--retrain-epochs`` if given) and
    evaluated on the whole test split. For each: test accuracy, parameters, FLOPs
    (torch's counter), CPU latency per image (batch 1, one thread, median), wall seconds
    of search (the grid's for the zoo) and of retraining.

    The verdict compares the searched model with the best zoo member of no more
    parameters (with ``--retrain-seeds``, over several retrains of each), and the
    compute: the search plus one retrain against the grid plus the retrain of the zoo's
    best by validation (what each route costs a user), in wall seconds and in candidate
    training epochs.

How to run (from the repository root; torch on both cores, nothing else running)
    .venv/bin/python benchmarks/real_data.py --dataset fashion_mnist
    .venv/bin/python benchmarks/real_data.py --dataset cifar10
    .venv/bin/python benchmarks/real_data.py --dataset fashion_mnist --train-size 500 \\
        --val-size 200 --retrain-epochs 1 --candidate-epochs 2 --widths 0.25 --budget 4
    .venv/bin/python benchmarks/real_data.py --dataset fashion_mnist \\
        --zoo-from benchmarks/results/real_data_fashion_mnist.json

    Writes ``benchmarks/results/real_data_<dataset>.json`` and ``.png`` (``--output``);
    the pipeline's files go under ``--work`` (git-ignored). Exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf
from report import ROOT, machine_info, run_stage, write_report

from nasflow.artifacts import architecture_record
from nasflow.config import register_configs
from nasflow.measure import latency_ms
from nasflow.search_spaces.zoo import NETWORKS

DATASETS = {
    # data option, its source root, and the recipe for it
    "fashion_mnist": ("fashion_mnist", "../shared/datasets/fashion-mnist", "small_gray"),
    "cifar10": ("image_folder", "../shared/datasets/cifar10-jpeg", "cifar_like"),
}


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fashion_mnist")
    parser.add_argument("--root", help="the data set's folder (default: ../shared/datasets/...)")
    parser.add_argument(
        "--recipe",
        choices=sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")),
        help="the experiment to search with (default: small_gray for fashion_mnist, "
        "cifar_like for cifar10)",
    )
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--widths", default="0.5,1", help="the zoo's width multipliers")
    parser.add_argument("--retrain-epochs", type=int, help="default: the recipe's")
    parser.add_argument("--candidate-epochs", type=int, help="default: the recipe's full ones")
    parser.add_argument("--budget", type=int, help="the recipe search's; default: the recipe's")
    parser.add_argument(
        "--retrain-seeds",
        type=int,
        default=1,
        help="retrain the searched model, its rival of no more parameters and the best zoo "
        "member at seeds 0..N-1 (seed 0: the table's)",
    )
    parser.add_argument("--work", default="benchmarks/work/real_data")
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for the recipe's search and retrain (repeatable)",
    )
    parser.add_argument("--replot", help="only redraw the plot of this JSON")
    parser.add_argument(
        "--zoo-from",
        help="a real_data JSON of the same data and settings: take its zoo rows and grid "
        "search instead of training the zoo again (to compare another recipe); their seconds "
        "and latencies are that run's machine's",
    )
    args = parser.parse_args()
    if args.replot:
        report = json.loads(Path(args.replot).read_text())
        plot(report, Path(args.replot).with_suffix(".png"))
        return

    data, default_root, default_recipe = DATASETS[args.dataset]
    recipe = args.recipe or default_recipe
    root = args.root or default_root
    work = Path(args.work) / args.dataset
    shutil.rmtree(work, ignore_errors=True)
    data_overrides = [
        f"data={data}",
        f"data.source.root={root}",
        f"data.train_size={args.train_size}",
        f"data.val_size={args.val_size}",
        f"paths.prepared={work / 'prepared'}",
        f"paths.checkpoints={work / 'checkpoints'}",
        "tracking=none",
    ]
    recipe_cfg = compose([*data_overrides, f"experiment={recipe}", *args.set])
    candidate_epochs = args.candidate_epochs or int(recipe_cfg.estimator.then.then.epochs)
    retrain_epochs = args.retrain_epochs or int(recipe_cfg.retrain.epochs)
    augment = recipe_cfg.data.augment
    # What every model is retrained with: the recipe's retrain, epochs and augmentation.
    shared = [
        f"retrain.epochs={retrain_epochs}",
        f"retrain.batch_size={recipe_cfg.retrain.batch_size}",
        f"data.augment.crop_padding={augment.crop_padding}",
        f"data.augment.hflip={str(augment.hflip).lower()}",
    ]
    figures: dict[str, Any] = {"stages": {}}
    figures["stages"]["prepare_s"] = run_stage("prepare", data_overrides)
    meta = json.loads((work / "prepared" / "meta.json").read_text())
    print(f"{args.dataset}: prepared {meta['sizes']} in {figures['stages']['prepare_s']} s")

    # (a) the zoo, by grid search
    widths = [float(w) for w in args.widths.split(",")]
    members = len(NETWORKS) * len(widths)
    zoo = [
        *data_overrides,
        *shared,
        "search_space=zoo",
        f"search_space.widths=[{','.join(f'{w:g}' for w in widths)}]",
        "strategy=grid",
        f"strategy.budget={members}",
        "estimator=training",
        f"estimator.epochs={candidate_epochs}",
        f"estimator.batch_size={recipe_cfg.estimator.then.then.batch_size}",
        f"paths.search={work / 'zoo' / 'search'}",
    ]
    settings = {
        "candidate_epochs": candidate_epochs,
        "retrain_epochs": retrain_epochs,
        "retrain_batch_size": int(recipe_cfg.retrain.batch_size),
        "augment": OmegaConf.to_container(augment),
        "zoo_widths": widths,
    }
    zoo_rows: list[dict[str, Any]] | None = None  # retrained below, unless taken
    if args.zoo_from:
        earlier = earlier_zoo(Path(args.zoo_from), args.dataset, meta["sizes"], settings)
        zoo_search_s, zoo_summary, zoo_rows = (
            earlier["seconds"],
            earlier["summary"],
            earlier["rows"],
        )
        print(f"zoo: {len(zoo_rows)} members from {args.zoo_from}")
    else:
        zoo_search_s = run_stage("search", zoo)
        print(f"zoo grid search: {zoo_search_s} s")
        zoo_summary = json.loads((work / "zoo" / "search" / "summary.json").read_text())

    # (b) the recipe's search
    searched = [*data_overrides, *shared, f"experiment={recipe}", *args.set]
    if args.budget:
        searched.append(f"strategy.budget={args.budget}")
    if args.candidate_epochs:
        searched.append(f"estimator.then.then.epochs={args.candidate_epochs}")
    searched.append(f"paths.search={work / 'searched' / 'search'}")
    recipe_search_s = run_stage("search", searched)
    recipe_summary = json.loads((work / "searched" / "search" / "summary.json").read_text())
    print(f"{recipe} search: {recipe_search_s} s, {recipe_summary}")

    rows = zoo_rows if zoo_rows is not None else retrain_the_zoo(zoo, work, meta)
    row = retrain_and_evaluate(searched, work / "searched", meta)
    best = json.loads((work / "searched" / "search" / "best_architecture.json").read_text())
    rows.append(
        {"model": best["description"], "kind": "searched", "val_acc": best.get("score"), **row}
    )
    print(rows[-1])

    found = rows[-1]
    zoo_rows = [r for r in rows if r["kind"] == "zoo"]
    no_larger = [r for r in zoo_rows if r["params"] <= found["params"]]
    rival = max(no_larger, key=lambda r: r["test_acc"]) if no_larger else None
    pick = max(zoo_rows, key=lambda r: r["val_acc"] if r["val_acc"] is not None else -math.inf)
    best_zoo = max(zoo_rows, key=lambda r: r["test_acc"])
    verdict = {
        "searched": found["model"],
        "searched_test_acc": found["test_acc"],
        "best_zoo_of_no_more_params": rival and rival["model"],
        "its_test_acc": rival and rival["test_acc"],
        "searched_is_at_least_as_accurate": rival is None or found["test_acc"] >= rival["test_acc"],
        "best_zoo_by_val": pick["model"],
        "best_zoo_by_val_test_acc": pick["test_acc"],
        "best_zoo_test_acc": best_zoo["test_acc"],
    }
    if args.retrain_seeds > 1 and rival is not None:
        zoo_space = instantiate(compose(zoo).search_space)

        def zoo_record(row: dict[str, Any]) -> str:
            return json.dumps(architecture_record(zoo_space, zoo_space.parse(row["model"])))

        runs = {
            "searched": (
                searched,
                found,
                (work / "searched" / "search" / "best_architecture.json").read_text(),
            ),
            "rival": (zoo, rival, zoo_record(rival)),
        }
        if best_zoo["model"] != rival["model"]:  # a larger hand design did better
            runs["best_zoo"] = (zoo, best_zoo, zoo_record(best_zoo))
        verdict["reseeded"] = reseeded(args.retrain_seeds, runs, work, meta)
        print(verdict["reseeded"])
    compute = {
        "nas_s": round(recipe_search_s + found["retrain_s"], 1),
        "zoo_s": round(zoo_search_s + pick["retrain_s"], 1),
        "zoo_every_member_retrained_s": round(
            zoo_search_s + sum(r["retrain_s"] for r in zoo_rows), 1
        ),
        "nas_candidate_epochs": recipe_summary.get("cost_epochs"),
        "zoo_candidate_epochs": zoo_summary.get("cost_epochs"),
    }
    report = {
        "benchmark": "real_data",
        "dataset": args.dataset,
        "data": {
            "option": data,
            "root": root,
            "sizes": meta["sizes"],
            "input_shape": meta.get("input_shape"),
        },
        "recipe": recipe,
        "settings": {
            **settings,
            "recipe_budget": args.budget or int(recipe_cfg.strategy.budget),
            "recipe_overrides": args.set,
        },
        "zoo_from": args.zoo_from,
        "search": {
            "zoo": {"seconds": zoo_search_s, **zoo_summary},
            "recipe": {"seconds": recipe_search_s, **recipe_summary},
        },
        "rows": rows,
        "verdict": verdict,
        "compute": compute,
        "machine": machine_info(),
    }
    out = Path(args.output)
    write_report(report, out / f"real_data_{args.dataset}.json")
    plot(report, out / f"real_data_{args.dataset}.png")
    print(json.dumps({"verdict": verdict, "compute": compute}, indent=2))


def retrain_the_zoo(zoo: list[str], work: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Retrain and evaluate every member the zoo's grid search (under `work`) evaluated."""
    space = instantiate(compose(zoo).search_space)
    rows = []
    for line in (work / "zoo" / "search" / "history.jsonl").open():
        record = json.loads(line)
        arch = space.from_json(record["architecture"])
        folder = work / "zoo" / arch.describe().replace(" ", "_")
        (folder / "search").mkdir(parents=True)
        (folder / "search" / "best_architecture.json").write_text(
            json.dumps(architecture_record(space, arch, score=record.get("score")))
        )
        row = retrain_and_evaluate(zoo, folder, meta)
        rows.append(
            {"model": arch.describe(), "kind": "zoo", "val_acc": record.get("score"), **row}
        )
        print(rows[-1])
    return rows


def earlier_zoo(
    path: Path, dataset: str, sizes: dict[str, int], settings: dict[str, Any]
) -> dict[str, Any]:
    """The zoo's grid search and rows of an earlier report, if it measured the same data
    set, sizes and settings (a SystemExit naming the difference if not)."""
    if not path.is_file():
        raise SystemExit(f"--zoo-from: no such file {path}")
    earlier = json.loads(path.read_text())
    mine = {"dataset": dataset, "sizes": sizes, **settings}
    theirs = {
        "dataset": earlier.get("dataset"),
        "sizes": earlier.get("data", {}).get("sizes"),
        **{key: earlier.get("settings", {}).get(key) for key in settings},
    }
    for figures in (mine, theirs):  # the zoo's candidates never augment: the recipe's may
        figures["augment"] = {
            k: v for k, v in (figures["augment"] or {}).items() if k != "candidates"
        }
    differ = [f"{k}: {theirs[k]} there, {mine[k]} here" for k in mine if theirs[k] != mine[k]]
    if differ:
        raise SystemExit(f"--zoo-from {path} measured other settings ({'; '.join(differ)})")
    return {
        "seconds": earlier["search"]["zoo"]["seconds"],
        "summary": {k: v for k, v in earlier["search"]["zoo"].items() if k != "seconds"},
        "rows": [row for row in earlier["rows"] if row["kind"] == "zoo"],
    }


def reseeded(
    seeds: int,
    runs: dict[str, tuple[list[str], dict[str, Any], str]],
    work: Path,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The test accuracies of the searched model and the zoo members it is measured
    against (its rival of no more parameters, and the best zoo member where that is
    another) retrained at seeds 0..`seeds`-1 (seed 0 is the table's run; the split stays
    that of `data.split_seed`): how much of the verdict's margin one retrain's
    initialisation and batch order move. `runs` names each model's overrides, table row
    and architecture record (the best_architecture.json its retrain reads)."""
    figures: dict[str, Any] = {"seeds": list(range(seeds))}
    for name, (overrides, row, record) in runs.items():
        accuracies, seconds = [row["test_acc"]], [row["retrain_s"]]
        for seed in range(1, seeds):
            folder = work / "reseeded" / f"{name}_seed{seed}"
            (folder / "search").mkdir(parents=True)
            (folder / "search" / "best_architecture.json").write_text(record)
            again = retrain_and_evaluate([*overrides, f"seed={seed}"], folder, meta)
            accuracies.append(again["test_acc"])
            seconds.append(again["retrain_s"])
        figures[name] = {
            "model": row["model"],
            "test_acc": accuracies,
            "retrain_s": seconds,  # seed 0's from the table (for a zoo member, maybe
            # another day's: --zoo-from), the others measured here
            "mean": round(statistics.mean(accuracies), 4),
            "std": round(statistics.stdev(accuracies), 4),
        }
    figures["searched_mean_is_at_least_as_accurate"] = (
        figures["searched"]["mean"] >= figures["rival"]["mean"]
    )
    return figures


def retrain_and_evaluate(
    overrides: list[str], folder: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    """Retrain the architecture `folder`/search/best_architecture.json names, evaluate it
    on the test split (prepared as `meta`, its meta.json, says); its figures and wall
    seconds."""
    paths = [
        f"paths.search={folder / 'search'}",
        f"paths.retrain={folder / 'retrain'}",
        f"paths.evaluate={folder / 'evaluate'}",
    ]
    retrain_s = run_stage("retrain", [*overrides, *paths])
    evaluate_s = run_stage("evaluate", [*overrides, *paths])
    model = json.loads((folder / "retrain" / "model.json").read_text())
    metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    trained = json.loads((folder / "retrain" / "metrics.json").read_text())
    space = instantiate(OmegaConf.create(model["search_space"]))
    arch = space.from_json(model["architecture"])
    shape = tuple(meta["input_shape"])
    network = space.build(arch, shape, len(meta["class_names"]))  # for its latency
    return {
        "test_acc": round(metrics["test_acc"], 4),
        "params": trained["params"],  # as retrain counted them (torch's FLOP counter)
        "flops": trained["flops"],
        "latency_ms": round(latency_ms(network, shape, batch_size=1, threads=1, repeats=30), 3),
        "retrain_s": retrain_s,
        "retrain_train_s": trained.get("seconds"),
        "evaluate_s": evaluate_s,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Test accuracy against parameters: the zoo's members, the searched model marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for row in report["rows"]:
        searched = row["kind"] == "searched"
        axes.scatter(
            row["params"], 100 * row["test_acc"], marker="*" if searched else "o",
            s=160 if searched else 30, color="tab:red" if searched else "tab:blue", zorder=3,
        )  # fmt: skip
        axes.annotate(row["model"] if not searched else "searched",
                      (row["params"], 100 * row["test_acc"]), fontsize=6,
                      xytext=(4, -9) if searched else (4, 3),  # below, clear of a twin
                      textcoords="offset points")  # fmt: skip
    # Where the verdict's models were retrained at several seeds: their mean and std.
    for entry in report["verdict"].get("reseeded", {}).values():
        if isinstance(entry, dict):
            row = next(r for r in report["rows"] if r["model"] == entry["model"])
            axes.errorbar(row["params"], 100 * entry["mean"], yerr=100 * entry["std"],
                          fmt="_", color="grey", capsize=3, zorder=2)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("parameters")
    axes.set_ylabel("test accuracy (%)")
    sizes = report["data"]["sizes"]
    axes.set_title(
        f"{report['dataset']}: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}; "
        f"retrained {report['settings']['retrain_epochs']} epochs ({report['recipe']})",
        fontsize=8,
    )
    axes.grid(alpha=0.3)
    found = next(r for r in report["rows"] if r["kind"] == "searched")
    seeds = report["verdict"].get("reseeded", {}).get("seeds")
    note = f"\ngrey: mean and std over retrain seeds {seeds}" if seeds else ""
    figure.text(0.01, 0.01, f"searched: {found['model']}{note}", fontsize=6)
    figure.tight_layout(rect=(0, 0.05 if seeds else 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s in all")
