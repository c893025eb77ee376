"""Candidates per hour: one process (`executor=local`) against two Ray workers of one CPU
each (`executor=ray executor.workers=2 executor.num_cpus=1`), on this machine.

The same search runs with each executor: random search over the default chain space, the
default estimator (8 epochs of full training), `--budget` candidates, seed 0. Random
search proposes the same architectures whatever the results, so both runs train the same
candidates with the same seeds. Torch runs on one thread in every process (the local
search's and each Ray worker's), so one Ray worker is one local search.

Measured for each executor and data set:

* the search's wall time and candidates per hour, and the ratio of Ray's to local's;
  Ray's twice: the search alone, and with Ray's start-up (``ray.init``) added; and the
  rate once every worker has finished its first candidate (what a longer search keeps);
* each candidate's latency in the search process (from submission to its result) and its
  training time (`Evaluation.seconds`, measured where it trained); the difference is the
  candidate's overhead. The first `workers` candidates of a Ray search also wait for
  their worker process to start and import torch and Lightning: that is reported as
  worker start-up, the rest as the per-candidate overhead, as a share of a candidate's
  training time.

Data sets: the bundled digits, and 5,000 training and 1,000 validation images of MNIST
(``--mnist-root``, torchvision's layout; skipped when absent).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/parallel.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/parallel.py --datasets digits --budget 4

Writes benchmarks/results/parallel.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a Ray of this process only

import torch
from report import ROOT, machine_info, write_report

sys.path.insert(0, str(ROOT / "src"))

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import TensorDataset

from nasflow.cli import quiet_libraries
from nasflow.config import register_configs
from nasflow.data import Digits, prepare
from nasflow.data.sources import TorchvisionDataset
from nasflow.executors import Executor, LocalExecutor, RayExecutor
from nasflow.loop import run_search
from nasflow.records import Task
from nasflow.training import InMemoryData


def digits() -> InMemoryData:
    folder = tempfile.mkdtemp(prefix="parallel-digits-")
    prepare(Digits(), folder, val_fraction=0.15, test_fraction=0.2, seed=0)
    return InMemoryData.load(folder, ("train", "val"))


def mnist_5k(root: Path) -> InMemoryData:
    """MNIST prepared as the data stage prepares it, then its first 5,000 training and
    1,000 validation images (the split is shuffled, so these are a random subset)."""
    folder = tempfile.mkdtemp(prefix="parallel-mnist-")
    prepare(TorchvisionDataset("MNIST", str(root)), folder, 0.15, 0.2, seed=0)
    data = InMemoryData.load(folder, ("train", "val"))
    for name, size in (("train", 5000), ("val", 1000)):
        images, labels = data.splits[name].tensors
        data.splits[name] = TensorDataset(images[:size].clone(), labels[:size].clone())
    return data


def search(data: InMemoryData, executor: Executor, budget: int) -> dict[str, Any]:
    """The search through `executor`: its wall time and each candidate's latency, training
    time and overhead (seconds)."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", [f"strategy.budget={budget}"])
    space = instantiate(cfg.search_space)
    strategy = instantiate(cfg.strategy, space=space)
    trainer = instantiate(cfg.trainer)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=trainer)
    submitted: dict[int, float] = {}
    finished: dict[int, float] = {}

    def on_start(task: Task) -> None:
        submitted[task.iteration] = time.perf_counter()

    start = time.perf_counter()
    with executor:
        history = run_search(
            strategy,
            estimator,
            executor,
            cfg.seed,
            on_candidate=lambda c: finished.setdefault(c.proposal, time.perf_counter()),
            on_start=on_start,
        )
    wall = time.perf_counter() - start
    candidates = []
    for candidate in sorted(history, key=lambda c: c.proposal):
        latency = finished[candidate.proposal] - submitted[candidate.proposal]
        trained = candidate.evaluation.seconds
        candidates.append(
            {
                "proposal": candidate.proposal,
                "arch": candidate.arch.describe(),
                "status": candidate.evaluation.status,
                "score": candidate.evaluation.score,
                "finished_at": round(finished[candidate.proposal] - start, 3),
                "latency": round(latency, 3),
                "training": round(trained, 3),
                "overhead": round(latency - trained, 3),
            }
        )
    return {"wall": round(wall, 2), "candidates": candidates}


def per_hour(count: int, seconds: float) -> float:
    return round(3600 * count / seconds, 1)


def summary(
    run: dict[str, Any], budget: int, workers: int, startup: float | None = None
) -> dict[str, Any]:
    """Candidates per hour and overheads. With `startup` (Ray's), the first `workers`
    candidates are those whose worker process started for them."""
    rows = run["candidates"]
    first = workers if startup is not None else 0
    steady = rows[first:] or rows
    training = statistics.mean(r["training"] for r in rows)
    overhead = statistics.mean(r["overhead"] for r in steady)
    # Once each worker has finished its first candidate: the rate a longer search keeps.
    ends = sorted(r["finished_at"] for r in rows)
    window = ends[-1] - ends[workers - 1]
    out = {
        "wall": run["wall"],
        "per_hour": per_hour(budget, run["wall"]),
        "per_hour_steady": per_hour(budget - workers, window) if window > 0 else None,
        "mean_training": round(training, 3),
        "mean_overhead": round(overhead, 3),
        "overhead_share": round(overhead / training, 4),
    }
    if startup is not None:
        boot = statistics.mean(r["overhead"] for r in rows[:first]) - overhead
        out |= {
            "ray_init": round(startup, 2),
            "worker_startup": round(boot, 2),
            "per_hour_with_init": per_hour(budget, run["wall"] + startup),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mnist-root", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "parallel.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    quiet_libraries()
    import ray

    report: dict[str, Any] = {
        "machine": machine_info(),
        "budget": args.budget,
        "workers": args.workers,
        "datasets": {},
    }
    for name in args.datasets:
        if name == "mnist5k" and not Path(args.mnist_root, "MNIST", "raw").is_dir():
            print(f"skipping mnist5k: no MNIST under {args.mnist_root}")
            continue
        data = digits() if name == "digits" else mnist_5k(Path(args.mnist_root))
        local = search(data, LocalExecutor(), args.budget)
        started = time.perf_counter()
        ray.init(
            num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
        startup = time.perf_counter() - started
        try:
            remote = search(data, RayExecutor(workers=args.workers, num_cpus=1), args.budget)
        finally:
            ray.shutdown()
        same = [r["score"] for r in local["candidates"]] == [
            r["score"] for r in remote["candidates"]
        ]
        result = {
            "local": summary(local, args.budget, 1),
            "ray": summary(remote, args.budget, args.workers, startup),
            "same_scores": same,
            "runs": {"local": local, "ray": remote},
        }
        result["ratio"] = round(result["ray"]["per_hour"] / result["local"]["per_hour"], 3)
        result["ratio_steady"] = round(
            result["ray"]["per_hour_steady"] / result["local"]["per_hour_steady"], 3
        )
        result["ratio_with_init"] = round(
            result["ray"]["per_hour_with_init"] / result["local"]["per_hour"], 3
        )
        result["ray_added_overhead_share"] = round(
            (result["ray"]["mean_overhead"] - result["local"]["mean_overhead"])
            / result["local"]["mean_training"],
            4,
        )
        report["datasets"][name] = result
        print(
            f"{name}: local {result['local']['per_hour']}/h, ray {result['ray']['per_hour']}/h "
            f"(x{result['ratio']}; x{result['ratio_with_init']} with ray.init "
            f"{result['ray']['ray_init']}s; x{result['ratio_steady']} once started), "
            f"worker start-up {result['ray']['worker_startup']}s, "
            f"per-candidate overhead {result['ray']['mean_overhead']}s = "
            f"{100 * result['ray']['overhead_share']:.1f}% of {result['local']['mean_training']}s "
            f"training (local {100 * result['local']['overhead_share']:.1f}%), "
            f"same scores: {same}",
            flush=True,
        )
    write_report(report, args.output)


if __name__ == "__main__":
    main()
