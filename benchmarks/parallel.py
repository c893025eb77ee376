"""Candidates per hour: one process (`executor=local`) against two Ray workers of one CPU
each (`executor=ray executor.workers=2 executor.num_cpus=1`), on this machine.

The same search runs with each executor: random search over the default chain space, the
default estimator (8 epochs of full training), `--budget` candidates, seed 0. Random
search proposes the same architectures whatever the results, so both runs train the same
candidates with the same seeds. Torch runs on one thread in every process (the local
search's and each Ray worker's), so one Ray worker is one local search.

Beside them, the machine's own ceiling: the same search through two plain worker
processes of one thread each (a `concurrent.futures` process pool behind the same
executor interface, no Ray), which is what two cores give two trainings at once here.

Measured for each executor and data set:

* the search's wall time and candidates per hour, and the ratio of Ray's to local's;
  Ray's twice: the search alone, and with Ray's start-up (``ray.init``) added; and the
  rate once every worker has finished its first candidate (what a longer search keeps);
* each candidate's latency in the search process (from submission to its result) and its
  training time (`Evaluation.seconds`, measured where it trained); the difference is the
  candidate's overhead. The first `workers` candidates of a Ray search also wait for
  their worker process to start and import torch and Lightning: that is reported as
  worker start-up, the rest as the per-candidate overhead, as a share of a candidate's
  training time;
* the ratio no executor can pass on these candidates (``ratio_bound``): their local
  training times run in proposal order on idle workers with no overhead and no
  slowdown; the last candidates leave a worker idle, so it is below `--workers`.
  (benchmarks/two_cores.py measures the slowdown of two trainings at once alone.)

This machine's speed drifts by a tenth or more over minutes, and a digits candidate
trains in two seconds, so `--repeats` runs the three searches in turn that many times
(by default 5 rounds on digits, 1 on MNIST-5k) and reports each round and the median of
the rates once started; Ray's workers, started in the first round, serve the later
ones, as they serve a longer search.

Data sets: the bundled digits, and 5,000 training and 1,000 validation images of MNIST
(``--mnist-root``, torchvision's layout; skipped when absent).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/parallel.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/parallel.py --datasets digits --repeats 3

Writes benchmarks/results/parallel.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import heapq
import multiprocessing
import os
import pickle
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
from nasflow.records import EvaluateFn, Evaluation, Task
from nasflow.training import InMemoryData


class PoolExecutor(Executor):
    """The baseline without Ray: `workers` spawned processes of one torch thread each,
    each loading the evaluator once (not a nasflow executor: it has no retries, no
    epochs reported back, no cluster)."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self.slots = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._running: dict[concurrent.futures.Future[Evaluation], Task] = {}

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.slots,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_pool_worker,
                initargs=(pickle.dumps(evaluate),),
            )
        self._running[self._pool.submit(_pool_evaluate, task)] = task

    def wait(self) -> list[tuple[Task, Evaluation]]:
        done, _ = concurrent.futures.wait(
            self._running, return_when=concurrent.futures.FIRST_COMPLETED
        )
        return [(self._running.pop(future), future.result()) for future in done]

    def in_flight(self) -> int:
        return len(self._running)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_POOL_EVALUATE: list[EvaluateFn] = []


def _pool_worker(evaluate: bytes) -> None:
    torch.set_num_threads(1)
    quiet_libraries()
    _POOL_EVALUATE.append(pickle.loads(evaluate))


def _pool_evaluate(task: Task) -> Evaluation:
    return _POOL_EVALUATE[0](task)


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
    """Candidates per hour and overheads. With more than one worker, the first `workers`
    candidates are those whose worker process started for them; `startup` is Ray's."""
    rows = run["candidates"]
    first = workers if workers > 1 else 0
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
    if first:
        boot = statistics.mean(r["overhead"] for r in rows[:first]) - overhead
        out["worker_startup"] = round(boot, 2)
    if startup is not None:
        out |= {
            "ray_init": round(startup, 2),
            "per_hour_with_init": per_hour(budget, run["wall"] + startup),
        }
    return out


def two_worker_bound(local: dict[str, Any], workers: int) -> float:
    """The most `workers` workers could speed these candidates up: their local training
    times run in proposal order, each on the first free worker, with no start-up, no
    overhead and no slowdown beside another. Below `workers` because the last
    candidates leave workers idle while the others finish."""
    times = [r["training"] for r in sorted(local["candidates"], key=lambda r: r["proposal"])]
    free = [0.0] * workers
    for seconds in times:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return round(sum(times) / max(free), 3)


def compare(
    local: dict[str, Any],
    pool: dict[str, Any],
    remote: dict[str, Any],
    args: argparse.Namespace,
    startup: float | None,
) -> dict[str, Any]:
    """One round: each executor's rates and the ratios to local's."""
    scores = [r["score"] for r in local["candidates"]]
    result: dict[str, Any] = {
        "local": summary(local, args.budget, 1),
        "pool": summary(pool, args.budget, args.workers),
        "ray": summary(remote, args.budget, args.workers, startup),
        "same_scores": all(
            [r["score"] for r in run["candidates"]] == scores for run in (pool, remote)
        ),
        "runs": {"local": local, "pool": pool, "ray": remote},
        "ratio_bound": two_worker_bound(local, args.workers),
    }
    for executor, suffix in (("ray", ""), ("pool", "_pool")):
        result["ratio" + suffix] = round(
            result[executor]["per_hour"] / result["local"]["per_hour"], 3
        )
        result["ratio_steady" + suffix] = round(
            result[executor]["per_hour_steady"] / result["local"]["per_hour_steady"], 3
        )
    if startup is not None:
        result["ratio_with_init"] = round(
            result["ray"]["per_hour_with_init"] / result["local"]["per_hour"], 3
        )
    result["ray_added_overhead_share"] = round(
        (result["ray"]["mean_overhead"] - result["local"]["mean_overhead"])
        / result["local"]["mean_training"],
        4,
    )
    return result


def headline(result: dict[str, Any]) -> str:
    ray = result["ray"]
    text = f"local {result['local']['per_hour']}/h, ray {ray['per_hour']}/h (x{result['ratio']}"
    if "ratio_with_init" in result:
        text += f"; x{result['ratio_with_init']} with ray.init {ray['ray_init']}s"
    return (
        f"{text}; x{result['ratio_steady']} once started), worker start-up "
        f"{ray.get('worker_startup')}s, per-candidate overhead {ray['mean_overhead']}s = "
        f"{100 * ray['overhead_share']:.1f}% of {result['local']['mean_training']}s training; "
        f"two plain processes x{result['ratio_pool']} (x{result['ratio_steady_pool']} once "
        f"started); at best x{result['ratio_bound']}; same scores: {result['same_scores']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        nargs="+",
        default=[5, 1],
        help="rounds of local, pool and Ray searches, alternated (the machine drifts), for "
        "each of --datasets in turn (the last number for the rest); later rounds reuse "
        "the started Ray workers",
    )
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
    for index, name in enumerate(args.datasets):
        repeats = args.repeats[min(index, len(args.repeats) - 1)]
        if name == "mnist5k" and not Path(args.mnist_root, "MNIST", "raw").is_dir():
            print(f"skipping mnist5k: no MNIST under {args.mnist_root}")
            continue
        data = digits() if name == "digits" else mnist_5k(Path(args.mnist_root))
        started = time.perf_counter()
        ray.init(
            num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
        startup = time.perf_counter() - started
        rounds = []
        try:
            for repeat in range(repeats):
                local = search(data, LocalExecutor(), args.budget)
                pool = search(data, PoolExecutor(args.workers), args.budget)
                # Later rounds find this job's Ray workers started: a longer search.
                remote = search(data, RayExecutor(workers=args.workers, num_cpus=1), args.budget)
                result = compare(local, pool, remote, args, startup if repeat == 0 else None)
                rounds.append(result)
                print(f"{name}, round {repeat + 1}: {headline(result)}", flush=True)
        finally:
            ray.shutdown()
        report["datasets"][name] = {
            **rounds[0],
            "repeats": repeats,
            "median_ratio_steady": statistics.median(r["ratio_steady"] for r in rounds),
            "median_ratio_steady_pool": statistics.median(r["ratio_steady_pool"] for r in rounds),
            "median_ratio_bound": statistics.median(r["ratio_bound"] for r in rounds),
            "later_rounds": rounds[1:],
        }
    write_report(report, args.output)


if __name__ == "__main__":
    main()
