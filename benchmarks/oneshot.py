"""One-shot searches in the real pipeline: digits end to end, and NB201 on CIFAR-10.

Two suites, each running the pipeline's own entry points into a scratch folder with
MLflow off:

* ``digits``: for each method, search -> retrain -> evaluate on the prepared digits data
  (``search_space=nb201``), recording the search's own wall time (start-up excluded,
  from its summary.json), the derived cell, its parameter-free ops and the retrained
  test accuracy.
* ``cifar10``: prepare CIFAR-10 from an ImageFolder (``--data``, e.g.
  ../shared/datasets/cifar10-jpeg), then search the NB201 space with each method on the
  same subset and epochs, recording the search time, the derived cell and what the
  NAS-Bench-201 table says of it (CIFAR-10 test accuracy after 200 epochs, and the
  percentage of the 15,625 cells that beat it).

    .venv/bin/python benchmarks/oneshot.py digits
    .venv/bin/python benchmarks/oneshot.py cifar10 --data ../shared/datasets/cifar10-jpeg
    .venv/bin/python benchmarks/oneshot.py cifar10 --data ... --method drnas darts \\
        --common "strategy.epochs=16" --seed 1

Methods are `conf/strategy/` names; `--common` adds Hydra overrides to every run.
Writes benchmarks/results/oneshot_<suite>.json.
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

METHODS = ("darts", "darts_pt", "drnas", "gdas", "enas")
# The CPU setting of the CIFAR-10 runs: a 5,000 + 5,000 image subset of the train and val
# splits at full 32x32 resolution, and a supernet of 8 channels and one cell per stage
# (NB201 retrains 16 channels, 5 cells per stage). The epochs are each method's own.
CIFAR10_COMMON = (
    "search_space=nb201 strategy.channels=8 strategy.cells=1 "
    "strategy.train_limit=5000 strategy.val_limit=5000"
)


# What the report keeps of each epoch's record.
RECORDED = (
    "epoch",
    "val_acc",
    "entropy",
    "arch_description",
    "parameter_free",
    "nb201_cifar10_test_acc",
    "seconds",
)


def run_method(
    method: str, common: str, folder: Path, prepared: Path, retrain: bool
) -> dict[str, Any]:
    overrides = [
        "tracking=none",
        f"strategy={method}",
        f"paths.prepared={prepared}",
        f"paths.search={folder / 'search'}",
        f"paths.retrain={folder / 'retrain'}",
        f"paths.evaluate={folder / 'evaluate'}",
        *shlex.split(common),
    ]
    walls = {"search": run_stage("search", overrides)}
    summary = json.loads((folder / "search" / "summary.json").read_text())
    best = json.loads((folder / "search" / "best_architecture.json").read_text())
    history = [json.loads(line) for line in (folder / "search" / "history.jsonl").open()]
    result: dict[str, Any] = {
        "overrides": " ".join(overrides[1:2] + overrides[6:]),
        "search_seconds": summary["seconds"],
        "epochs": summary["epochs"],
        "derived": best.get("description"),
        "parameter_free": summary["parameter_free"],
        "supernet_val_acc": summary["supernet_val_acc"],
        "nb201_cifar10_test_acc": summary.get("nb201_cifar10_test_acc"),
        "nb201_top_percent": summary.get("nb201_top_percent"),
        "per_epoch": [{key: record.get(key) for key in RECORDED} for record in history],
    }
    if retrain:
        walls["retrain"] = run_stage("retrain", overrides)
        walls["evaluate"] = run_stage("evaluate", overrides)
        metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
        result["test_acc"] = metrics["test_acc"]
    result["stage_wall_seconds"] = walls
    test = f", test {100 * result['test_acc']:.2f} %" if retrain else ""
    table = (
        f", NB201 CIFAR-10 {result['nb201_cifar10_test_acc']:.2f} "
        f"(top {result['nb201_top_percent']:.1f} %)"
        if result["nb201_cifar10_test_acc"] is not None
        else ""
    )
    print(f"{method}: search {result['search_seconds']:.1f}s{test}{table}  {result['derived']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=("digits", "cifar10"))
    parser.add_argument("--method", nargs="+", default=None, help=f"of {', '.join(METHODS)}")
    parser.add_argument("--data", help="cifar10: an ImageFolder with train/ and test/")
    parser.add_argument("--common", default="", help="Hydra overrides added to every run")
    parser.add_argument("--seed", type=int, default=0, help="the search seed of every run")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    methods = args.method or (list(METHODS) if args.suite == "digits" else ["darts_pt", "darts"])
    if unknown := sorted(set(methods) - set(METHODS)):
        sys.exit(f"error: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    output = args.output or f"benchmarks/results/oneshot_{args.suite}.json"
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.suite == "digits":
            prepared = ROOT / "data" / "prepared"
            if not (prepared / "meta.json").is_file():
                sys.exit("error: no prepared data in data/prepared: run `dvc repro prepare` first")
            common = f"search_space=nb201 seed={args.seed} {args.common}"
        else:
            if not args.data or not Path(args.data, "train").is_dir():
                sys.exit(f"error: --data needs train/<class>/ images, got {args.data!r}")
            prepared = Path(scratch) / "prepared"
            run_stage(
                "prepare",
                [
                    "tracking=none",
                    "data=image_folder",
                    f"data.source.root={Path(args.data).resolve()}",
                    f"paths.prepared={prepared}",
                ],
            )
            common = f"{CIFAR10_COMMON} seed={args.seed} {args.common}"
        for method in methods:
            folder = Path(scratch) / method
            runs[method] = run_method(method, common, folder, prepared, args.suite == "digits")
    info = machine_info(suite=args.suite, data=args.data, seed=args.seed)
    report = {"machine": info, "runs": runs}
    write_report(report, output)


if __name__ == "__main__":
    main()
