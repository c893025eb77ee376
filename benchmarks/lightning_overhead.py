"""How much slower is one candidate's training through nasflow's Lightning path than a plain loop?

What is measured
    The wall-clock time (``time.perf_counter``) to train ONE candidate network for ``--epochs``
    epochs with validation after every epoch, two ways, on the same model, data and seeds:

    * **lightning**: exactly what the search does per candidate: ``nasflow.training.fit`` with
      the trainer factory, optimizer and scheduler that the pipeline instantiates from
      ``conf/`` (Hydra-composed, so ``conf/trainer/lightning.yaml`` and
      ``conf/estimator/training.yaml`` are the ones the search uses). The timed region is the
      ``fit`` call: building the ``ClassifierModule`` and the ``pl.Trainer``, and fitting.
    * **plain**: a hand-written PyTorch loop over the same ``InMemoryDataModule`` loaders (same
      batch size, same seeded shuffling generator), the same optimizer and per-step cosine
      schedule over the same total number of steps, the same per-epoch figures the search
      keeps (train loss and accuracy, val loss and accuracy, and the finite-loss check once an
      epoch). The timed region is building the optimizer and schedule and the loop.

    Both start from ``torch.manual_seed(seed)`` before the network is built (as
    ``TrainingEstimator.evaluate`` does), so both train the same initial weights on the same
    batch order and should end at (nearly) the same validation accuracy; the script reports
    both as a check that the two paths do the same work.

    Runs alternate (lightning, plain, lightning, plain, ...) after one uncounted warm-up of
    each, so drifts of a noisy machine hit both. Reported: median and min seconds per path, the
    ratio of the medians (lightning / plain; the headline figure), the ratio of the mins, the
    median of the paired ratios (each lightning run over the plain run right after it) and of
    the process CPU times, and per run how many cores other processes kept busy meanwhile.
    nasflow's acceptance criterion is a ratio of at most 1.15; the exit code is 0 whatever the
    ratio: this is a measurement, not a test.

    On a small machine torch's multi-threaded kernels are very sensitive to other load (their
    OpenMP threads spin while a core is taken), so single runs can take many times longer;
    the script warns when runs vary by more than 1.5x or other processes were busy. Then raise
    ``--repeats``, rerun on a quiet machine, or compare with ``--threads 1``.

Why
    The search trains dozens of candidates for a few epochs each on small in-memory data, so a
    fixed or per-step framework cost is paid many times. This tells whether Lightning's
    convenience costs a meaningful share of the search's time on this machine.

How to run (from the repository root)
    .venv/bin/python benchmarks/lightning_overhead.py            # digits, 8 epochs, 5 repeats
    .venv/bin/python benchmarks/lightning_overhead.py --epochs 8 --repeats 5 --threads 2
    .venv/bin/python benchmarks/lightning_overhead.py --data mnist \\
        --data-root ../shared/datasets/mnist --limit 5000 \\
        --output benchmarks/results/lightning_overhead_mnist5k.json
    .venv/bin/python benchmarks/lightning_overhead.py --arch my_arch.json --profile 25
    .venv/bin/python benchmarks/lightning_overhead.py trainer.log_every_n_steps=50  # overrides

    ``--arch`` takes a chain architecture as JSON, checked against the configured search space.

    ``--profile N`` adds one uncounted cProfile'd run of each path and prints its top N functions
    by cumulative and by internal time, to see where the difference goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from report import machine_info, write_report
from torch import nn

from nasflow.cli import configure_logging
from nasflow.config import register_configs
from nasflow.data import DataSource, Digits, RawDataset, Split, TorchvisionDataset, prepare
from nasflow.search_spaces import ChainSpace
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.training import InMemoryData, InMemoryDataModule, fit
from nasflow.training.module import OptimizerFactory, SchedulerFactory

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.15
DEFAULT_ARCH: dict[str, Any] = {
    "layers": [
        {"op": "conv", "filters": 64, "kernel_h": 3, "kernel_w": 3, "skip": True},
        {"op": "max_pool"},
        {"op": "conv", "filters": 32, "kernel_h": 3, "kernel_w": 3, "skip": False},
    ]
}
# The space the default architecture belongs to (also conf/search_space/chain.yaml's bounds).
DEFAULT_SPACE: dict[str, Any] = {"min_layers": 2, "max_layers": 3, "kernel_sizes": [3]}

Metrics = dict[str, float]


# -- configuration and data ----------------------------------------------------------------


def compose_config(overrides: list[str]) -> DictConfig:
    """nasflow's configuration, composed from conf/ exactly as the pipeline stages see it."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


class Subset(DataSource):
    """The first `limit` examples (after a seeded shuffle) of another source's pool."""

    def __init__(self, source: DataSource, limit: int, seed: int) -> None:
        self.source = source
        self.limit = limit
        self.seed = seed
        self.name = f"{source.name}[:{limit}]"

    def load(self) -> RawDataset:
        raw = self.source.load()
        generator = torch.Generator().manual_seed(self.seed)
        keep = torch.randperm(len(raw.pool), generator=generator)[: self.limit]
        pool = Split(raw.pool.images[keep].contiguous(), raw.pool.labels[keep].contiguous())
        # The test split is never read by the benchmark; keep it so the split logic is unchanged.
        return RawDataset(self.name, raw.class_names, pool, raw.test)


def load_data(args: argparse.Namespace, cfg: DictConfig) -> InMemoryData:
    """Prepare the data set into a temporary folder and load train and val as the search does."""
    source: DataSource
    if args.data == "digits":
        source = Digits()
    else:
        root = Path(args.data_root)
        if not root.exists():
            sys.exit(f"--data-root {root} does not exist; MNIST needs a local torchvision copy")
        source = TorchvisionDataset(name="MNIST", root=str(root), download=False)
    if args.limit:
        source = Subset(source, args.limit, seed=cfg.data.split_seed)
    with tempfile.TemporaryDirectory(prefix="nasflow-bench-") as tmp:
        prepare(
            source,
            tmp,
            val_fraction=cfg.data.val_fraction,
            test_fraction=cfg.data.test_fraction,
            seed=cfg.data.split_seed,
        )
        return InMemoryData.load(tmp, ("train", "val"))


def load_arch(path: str | None, cfg: DictConfig) -> tuple[SearchSpace, Architecture]:
    """The default candidate in its space, or one read from `path` in the configured space."""
    if path is None:
        space: SearchSpace = ChainSpace(**DEFAULT_SPACE)
        return space, space.from_json(DEFAULT_ARCH)
    space = instantiate(cfg.search_space)
    return space, space.from_json(json.loads(Path(path).read_text()))


# -- the two paths -------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything both paths share: what to build, what to train it on and how."""

    space: SearchSpace
    arch: Architecture
    data: InMemoryData
    trainer: Callable[..., pl.Trainer]
    optimizer: OptimizerFactory
    scheduler: SchedulerFactory | None
    epochs: int
    batch_size: int
    seed: int

    def build(self) -> tuple[nn.Module, InMemoryDataModule]:
        # As TrainingEstimator.evaluate: the initial weights come from the candidate's seed.
        torch.manual_seed(self.seed)
        info = self.data.info
        network = self.space.build(self.arch, info.input_shape, info.num_classes)
        splits = self.data.splits
        datamodule = InMemoryDataModule(splits["train"], splits["val"], self.batch_size, self.seed)
        return network, datamodule


@dataclass
class Timing:
    """Wall-clock seconds of one run, and this process's CPU seconds (all its threads)."""

    wall: float
    cpu: float


class Timer:
    """`perf_counter` and `process_time` around a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.timing = Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def run_lightning(setup: Setup) -> tuple[Timing, Metrics]:
    """One candidate through nasflow's real Lightning path; its timing and final metrics."""
    with torch.random.fork_rng():
        network, datamodule = setup.build()
        with Timer() as timer:
            _, _, history = fit(
                network,
                datamodule,
                setup.data.info.num_classes,
                setup.epochs,
                setup.trainer,
                setup.optimizer,
                setup.scheduler,
            )
    final = {k: v for k, v in history[-1].items() if k != "epoch"}
    return timer.timing, final


def train_plain(
    network: nn.Module,
    datamodule: InMemoryDataModule,
    epochs: int,
    optimizer_factory: OptimizerFactory,
    scheduler_factory: SchedulerFactory | None,
) -> Metrics:
    """A plain PyTorch loop doing what ClassifierModule does, epoch for epoch."""
    train_loader = datamodule.train_dataloader()
    val_loader = datamodule.val_dataloader()
    optimizer = optimizer_factory(network.parameters())
    scheduler = None
    if scheduler_factory is not None:
        scheduler = scheduler_factory(optimizer, max(1, epochs * len(train_loader)))
    metrics: Metrics = {}
    for epoch in range(epochs):
        network.train()
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        seen = 0
        for x, y in train_loader:
            logits = network(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(dim=1) == y).sum()
            seen += len(y)
        network.eval()
        val_loss_sum = torch.zeros(())
        val_correct = torch.zeros((), dtype=torch.long)
        val_seen = 0
        with torch.inference_mode():
            for x, y in val_loader:
                logits = network(x)
                val_loss_sum += F.cross_entropy(logits, y) * len(y)
                val_correct += (logits.argmax(dim=1) == y).sum()
                val_seen += len(y)
        metrics = {
            "train_loss": float(loss_sum) / seen,
            "train_acc": float(correct) / seen,
            "val_loss": float(val_loss_sum) / max(1, val_seen),
            "val_acc": float(val_correct) / max(1, val_seen),
        }
        if not math.isfinite(metrics["train_loss"]):
            raise FloatingPointError(f"training loss became {metrics['train_loss']} in {epoch}")
    return metrics


def run_plain(setup: Setup) -> tuple[Timing, Metrics]:
    """One candidate through the plain loop; its timing and final metrics."""
    with torch.random.fork_rng():
        network, datamodule = setup.build()
        with Timer() as timer:
            final = train_plain(network, datamodule, setup.epochs, setup.optimizer, setup.scheduler)
    return timer.timing, final


PATHS: dict[str, Callable[[Setup], tuple[Timing, Metrics]]] = {
    "lightning": run_lightning,
    "plain": run_plain,
}


# -- measuring and reporting ---------------------------------------------------------------


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(run: Callable[[Setup], tuple[Timing, Metrics]], setup: Setup) -> dict[str, Any]:
    """One timed run, with how much CPU the rest of the machine used meanwhile."""
    busy = busy_cpu_seconds()
    timing, final = run(setup)
    after = busy_cpu_seconds()
    others = None if busy is None or after is None else max(0.0, after - busy - timing.cpu)
    return {
        "wall_s": timing.wall,
        "cpu_s": timing.cpu,
        # CPU seconds that other processes used during the run, per second of the run: about 0
        # on a quiet machine; near 1 means another process kept one core busy throughout.
        "others_cores": None if others is None else others / timing.wall,
        "final": final,
    }


def profile(setup: Setup, top: int) -> dict[str, str]:
    """One cProfile'd run of each path; the top `top` functions by cumulative and own time."""
    reports = {}
    for name, run in PATHS.items():
        profiler = cProfile.Profile()
        profiler.enable()
        timing, _ = run(setup)
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs()
        text.write(f"=== {name}: {timing.wall:.3f} s under cProfile ===\n")
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        reports[name] = text.getvalue()
        print(reports[name])
    return reports


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = [r["wall_s"] for r in runs]
    cpu = [r["cpu_s"] for r in runs]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "median_cpu_s": statistics.median(cpu),
        "min_cpu_s": min(cpu),
        "runs": [{k: v for k, v in r.items() if k != "final"} for r in runs],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared/datasets/mnist"))
    parser.add_argument("--limit", type=int, default=0, help="use N examples of the pool (0: all)")
    parser.add_argument("--arch", help="a chain architecture as JSON (default: conv64+skip > ...)")
    parser.add_argument("--epochs", type=int, help="default: conf/estimator epochs (8)")
    parser.add_argument("--batch-size", type=int, help="default: conf/estimator batch_size (64)")
    parser.add_argument("--seed", type=int, help="candidate seed (default: conf seed)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each path")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the uncounted warm-up")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also print cProfile's top N"
    )
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks/results/lightning_overhead.json")
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.precision=...")
    return parser.parse_args(argv)


def fmt_others(value: float | None) -> str:
    return "" if value is None else f"  (other processes: {value:.2f} cores)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()  # an entry point: Lightning as quiet as in the stages
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(args.overrides)
    space, arch = load_arch(args.arch, cfg)
    data = load_data(args, cfg)
    setup = Setup(
        space=space,
        arch=arch,
        data=data,
        # What stages/search.py hands to the estimator: partials built from conf/.
        trainer=instantiate(cfg.trainer),
        optimizer=instantiate(cfg.estimator.optimizer),
        scheduler=instantiate(cfg.estimator.scheduler) if cfg.estimator.scheduler else None,
        epochs=args.epochs or cfg.estimator.epochs,
        batch_size=args.batch_size or cfg.estimator.batch_size,
        seed=cfg.seed if args.seed is None else args.seed,
    )
    threads = torch.get_num_threads()
    n_train, n_val = len(data.splits["train"]), len(data.splits["val"])
    steps = math.ceil(n_train / setup.batch_size)
    print(
        f"{data.info.name}: {n_train} train / {n_val} val, input {tuple(data.info.input_shape)}; "
        f"{arch.describe()}; {setup.epochs} epochs x {steps} steps of {setup.batch_size}; "
        f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs"
    )

    if not args.no_warmup:
        for name, run in PATHS.items():
            warm = measure(run, setup)
            print(f"  warm-up {name:<9} {warm['wall_s']:7.3f} s{fmt_others(warm['others_cores'])}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PATHS}
    for i in range(args.repeats):
        for name, run in PATHS.items():  # interleaved: lightning, plain, lightning, plain, ...
            result = measure(run, setup)
            runs[name].append(result)
            print(
                f"  run {i + 1}/{args.repeats} {name:<9} {result['wall_s']:7.3f} s"
                f"{fmt_others(result['others_cores'])}"
            )
    if torch.get_num_threads() != threads:
        print(
            f"  note: torch threads changed during the runs: {threads} -> {torch.get_num_threads()}"
        )

    summary = {name: summarise(r) for name, r in runs.items()}
    light, plain = summary["lightning"], summary["plain"]
    ratio = light["median_s"] / plain["median_s"]
    ratio_min = light["min_s"] / plain["min_s"]
    ratio_cpu = light["median_cpu_s"] / plain["median_cpu_s"]
    # Each lightning run against the plain run right after it: neighbours share the machine's
    # state, so the median of these pairs is the figure least moved by slow drifts.
    pairs = [
        lr["wall_s"] / pr["wall_s"] for lr, pr in zip(runs["lightning"], runs["plain"], strict=True)
    ]
    ratio_paired = statistics.median(pairs)
    within = ratio <= TARGET_RATIO
    finals = {name: r[-1]["final"] for name, r in runs.items()}
    print()
    print(
        f"{'path':<10} {'median s':>9} {'min s':>8} {'max s':>8} {'cpu s':>8} "
        f"{'val acc':>8} {'val loss':>9}"
    )
    for name in PATHS:
        s, last = summary[name], finals[name]
        print(
            f"{name:<10} {s['median_s']:9.3f} {s['min_s']:8.3f} {s['max_s']:8.3f} "
            f"{s['median_cpu_s']:8.3f} {last['val_acc']:8.4f} {last['val_loss']:9.4f}"
        )
    verdict = "WITHIN" if within else "ABOVE"
    print(
        f"ratio lightning/plain: {ratio:.3f} (medians) -> {verdict} the {TARGET_RATIO}x target; "
        f"{ratio_min:.3f} (mins), {ratio_paired:.3f} (median of pairs), {ratio_cpu:.3f} "
        f"(median CPU time); overhead "
        f"{light['median_s'] - plain['median_s']:+.3f} s per candidate"
    )
    noisy = any(s["max_s"] > 1.5 * s["min_s"] for s in summary.values())
    others = [
        r["others_cores"] for rs in runs.values() for r in rs if r["others_cores"] is not None
    ]
    busy = bool(others) and statistics.median(others) > 0.25
    if noisy or busy:
        cause = (
            f"other processes kept {statistics.median(others):.2f} cores busy (median)"
            if busy
            else "run times vary by more than 1.5x"
        )
        print(
            f"warning: noisy measurement: {cause}. Trust the median of pairs more than the "
            "medians, raise --repeats, rerun on a quiet machine, or use --threads 1, which "
            "interference slows far less than it does torch's multi-threaded kernels."
        )

    profiles = profile(setup, args.profile) if args.profile else None
    report = {
        "benchmark": "lightning_overhead",
        "measured": "seconds to train one candidate: nasflow fit() (incl. Trainer construction) "
        "vs a plain PyTorch loop, same model, data, seeds, optimizer, schedule, validation",
        "data": {
            "name": data.info.name,
            "train": n_train,
            "val": n_val,
            "input_shape": list(data.info.input_shape),
            "num_classes": data.info.num_classes,
        },
        "architecture": arch.to_json(),
        "architecture_text": arch.describe(),
        "epochs": setup.epochs,
        "batch_size": setup.batch_size,
        "steps_per_epoch": steps,
        "seed": setup.seed,
        "repeats": args.repeats,
        "warmup": not args.no_warmup,
        "trainer_config": OmegaConf.to_container(cfg.trainer),
        "estimator_config": OmegaConf.to_container(cfg.estimator),
        "overrides": args.overrides,
        "lightning": light,
        "plain": plain,
        "ratio_of_medians": ratio,
        "ratio_of_mins": ratio_min,
        "ratio_of_median_cpu": ratio_cpu,
        "ratio_median_of_pairs": ratio_paired,
        "paired_ratios": pairs,
        "target_ratio": TARGET_RATIO,
        "within_target": within,
        "noisy": noisy,
        "machine_busy": busy,
        "final_metrics": finals,
        "val_acc_runs": {n: [r["final"]["val_acc"] for r in rs] for n, rs in runs.items()},
        "machine": machine_info(
            pytorch_lightning=pl.__version__,
            torchmetrics=torchmetrics.__version__,
            torch_interop_threads=torch.get_num_interop_threads(),
        ),
        "profiles": profiles,
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
