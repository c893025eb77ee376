"""How much faster two trainings at once run than one, on this machine, with no search,
no executor and no data loading: the ceiling any two-worker executor works under.

A fixed training loop (a small convolutional network on random 28x28 images, torch on
one thread, the size of a digits candidate's steps) runs in one process alone, then in
two processes started together; `--rounds` rounds alternate the two. The ceiling is
twice the time alone over the time each takes beside the other: 2.0 when two cores
train as fast together as apart, less when they share something (a memory bus, a cache,
a host core under the virtual machine's two).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/two_cores.py

Writes benchmarks/results/two_cores.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from report import ROOT, machine_info, write_report


def train(steps: int) -> float:
    """Seconds `steps` optimiser steps take, on one torch thread."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    optimizer = torch.optim.AdamW(net.parameters())
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for _ in range(5):  # warm up the allocator and kernels: not timed
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="optimiser steps per training")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/two_cores.json"))
    args = parser.parse_args()

    alone: list[float] = []
    together: list[list[float]] = []
    walls: list[float] = []  # of each pair: both must have run at once (about max, not sum)
    # Both pools are started (and torch imported in them) before anything is timed.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(train, [1, 1])
        for round_ in range(args.rounds):
            alone.append(pool.apply(train, (args.steps,)))
            start = time.perf_counter()
            together.append(pool.map(train, [args.steps, args.steps], chunksize=1))
            walls.append(time.perf_counter() - start)
            print(
                f"round {round_ + 1}: alone {alone[-1]:.2f} s, together "
                f"{together[-1][0]:.2f} s and {together[-1][1]:.2f} s ({walls[-1]:.2f} s wall)"
            )
    # Two trainings in the time the slower of the pair took, against one alone.
    ceilings = [2 * a / max(t) for a, t in zip(alone, together, strict=True)]
    report: dict[str, Any] = {
        "machine": machine_info(),
        "steps": args.steps,
        "rounds": [
            {"alone_seconds": a, "together_seconds": t, "pair_wall_seconds": w, "ceiling": c}
            for a, t, w, c in zip(alone, together, walls, ceilings, strict=True)
        ],
        "median_alone_seconds": statistics.median(alone),
        "median_together_seconds": statistics.median(max(t) for t in together),
        "median_ceiling": statistics.median(ceilings),
    }
    print(
        f"two at once: each {statistics.median(max(t) for t in together):.2f} s against "
        f"{statistics.median(alone):.2f} s alone; ceiling x{report['median_ceiling']:.2f}"
    )
    write_report(report, args.output)


if __name__ == "__main__":
    main()
