"""Does every network NB201Space builds have exactly the benchmark's parameter count?

What is checked
    For each of the 15,625 rows of the shipped NAS-Bench-201 table
    (``nasflow/tabular/data/nb201.csv.gz``), the row's official arch string is parsed with
    ``NB201Space.parse`` (it must print back as the same string) and the CIFAR-10 network is
    built with the benchmark's settings (C=16, N=5, input 3x32x32, 10 classes). Its number
    of parameters must equal the table's ``params_m`` column, which the benchmark gives in
    millions rounded to 6 decimals, i.e. to the parameter: ``round(count / 1e6, 6) ==
    params_m``. Every mismatch is listed in the report with both figures.

    The table's figure is the benchmark's mean over the trials (seeds) of a cell, and for a
    couple of hundred cells the trials did not all record the same network. So for each
    mismatch the script also looks for the simplest explanation of that kind: the mean of
    2 or 3 trials, some of which had a network with one or two convolutions more or fewer
    than the cell's (``explanation``; null when none is found). A mismatch with an
    explanation is a property of the table, not of nasflow's networks.

    Networks are built under ``torch.device("meta")``: tensors get shapes but no storage
    and initialisation does no work, so a build costs a few milliseconds of pure Python and
    the count (``numel``) is exact. ``--workers`` processes share the rows.

Why
    The table is only a valid stand-in for training if our networks are the benchmark's
    networks. The parameter count of each of the 15,625 cells is the one published figure
    that pins down the whole construction (stem, cell ops, residual blocks, head, batch
    norm affinity), edge by edge; one wrong module changes it for thousands of cells.
    ``tests/test_nb201.py`` checks ~30 rows on every test run; this checks them all.

How to run (from the repository root)
    .venv/bin/python benchmarks/nb201_params.py                # all rows, 2 workers
    .venv/bin/python benchmarks/nb201_params.py --workers 1 --limit 500

    Writes ``benchmarks/results/nb201_params.json`` (``--output``): rows checked,
    mismatches, seconds and machine info. Exits 0 whatever it finds (a measurement, not a
    test); exits 2 only if the table cannot be read.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import torch
from report import machine_info, write_report

from nasflow.errors import NasflowError
from nasflow.search_spaces.nb201 import NB201Space, edge_op
from nasflow.tabular.nb201 import load_table

ROOT = Path(__file__).resolve().parent.parent
# The benchmark's CIFAR-10 network, for which the table gives its parameter counts.
INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10

Row = tuple[int, str, float]  # arch_index, arch string, params_m


def check(row: Row) -> dict[str, Any] | None:
    """None if the row's string round-trips and its network's count matches; else the problem."""
    index, text, params_m = row
    space = NB201Space()
    try:
        arch = space.parse(text)
    except NasflowError as error:
        return {"arch_index": index, "arch": text, "problem": str(error)}
    if arch.describe() != text:
        return {"arch_index": index, "arch": text, "problem": f"prints as {arch.describe()}"}
    with torch.device("meta"):
        network = space.build(arch, INPUT_SHAPE, NUM_CLASSES)
    count = sum(p.numel() for p in network.parameters())
    if round(count / 1e6, 6) != params_m:
        return {"arch_index": index, "arch": text, "params_m": params_m, "built": count}
    return None


def op_params(space: NB201Space) -> dict[str, int]:
    """Parameters one more edge with each convolution adds to the whole network."""
    widths = [space.channels * 2**stage for stage in range(3)]
    return {
        op: space.cells_per_stage
        * sum(sum(p.numel() for p in edge_op(op, width).parameters()) for width in widths)
        for op in ("nor_conv_1x1", "nor_conv_3x3")
    }


def explain(built: int, params_m: float, per_op: dict[str, int]) -> dict[str, Any] | None:
    """The simplest mix of trials whose mean parameter count rounds to `params_m`.

    Tried in order of simplicity: the fewest convolutions changed, then 2 before 3 trials;
    the other trials share one network that differs from `built` by whole convolutions.
    """
    conv1, conv3 = per_op["nor_conv_1x1"], per_op["nor_conv_3x3"]
    for changed in (1, 2, 3):
        for trials in (2, 3):
            for others in range(1, trials):
                for d1 in range(-changed, changed + 1):
                    for d3 in sorted({changed - abs(d1), abs(d1) - changed}):
                        other = built + d1 * conv1 + d3 * conv3
                        mean = (others * other + (trials - others) * built) / trials
                        if other > 0 and round(mean / 1e6, 6) == params_m:
                            return {
                                "trials": trials,
                                "trials_with_other_network": others,
                                "other_network_params": other,
                                "nor_conv_1x1_delta": d1,
                                "nor_conv_3x3_delta": d3,
                            }
    return None


def init_worker() -> None:
    # Meta builds do no tensor work; one thread per process avoids oversubscribing the cores.
    torch.set_num_threads(1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="processes (1: no pool)")
    parser.add_argument("--limit", type=int, default=0, help="check the first N rows (0: all)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/nb201_params.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        table = load_table()
    except NasflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    columns = table.columns
    rows: list[Row] = [
        (int(i), str(a), float(p))
        for i, a, p in zip(columns["arch_index"], columns["arch"], columns["params_m"], strict=True)
    ]
    if args.limit:
        rows = rows[: args.limit]
    print(f"checking {len(rows)} NB201 networks on {args.workers} worker(s) ...")

    start, cpu_start = time.perf_counter(), time.process_time()
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers, init_worker) as pool:
            results = pool.map(check, rows, chunksize=256)
    else:
        init_worker()
        results = [check(row) for row in rows]
    seconds = time.perf_counter() - start
    mismatches = [r for r in results if r is not None]
    per_op = op_params(NB201Space())
    for problem in mismatches:
        if "built" in problem:
            problem["explanation"] = explain(problem["built"], problem["params_m"], per_op)
    explained = sum(1 for m in mismatches if m.get("explanation"))

    print(
        f"{len(mismatches)} mismatches among {len(rows)} networks; {seconds:.1f} s "
        f"({1000 * seconds / len(rows):.2f} ms per network, {args.workers} worker(s))"
    )
    print(f"{explained} of them: the table's mean over trials that recorded other networks")
    for problem in mismatches[:10]:
        print(f"  {problem}")
    report = {
        "benchmark": "nb201_params",
        "checked": "for each table row: the official string round-trips through "
        "NB201Space.parse/describe, and round(parameters / 1e6, 6) of the built CIFAR-10 "
        "network (C=16, N=5, 3x32x32, 10 classes) equals params_m",
        "rows_checked": len(rows),
        "mismatch_count": len(mismatches),
        "explained_count": explained,
        "params_per_extra_edge": per_op,
        "mismatches": mismatches,
        "distinct_params_m_in_table": len({p for _, _, p in rows}),
        "seconds": seconds,
        "main_process_cpu_s": time.process_time() - cpu_start,
        "ms_per_network": 1000 * seconds / len(rows),
        "workers": args.workers,
        "device": "meta",
        "machine": machine_info(),
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
