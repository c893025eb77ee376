"""What every benchmark script records beside its figures: the machine, and where it wrote."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def machine_info(**extra: Any) -> dict[str, Any]:
    """The machine and software the figures were measured on, plus `extra` entries."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **extra,
    }


def write_report(report: dict[str, Any], output: str | Path) -> None:
    """Write the report as indented JSON, creating the folder, and say where."""
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


ROOT = Path(__file__).resolve().parents[1]


def run_stage(stage: str, overrides: list[str]) -> float:
    """Run the pipeline's entry point for `stage` with Hydra `overrides` from the
    repository root (its output hidden, a failure raised); returns its wall seconds."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / f"{stage}.py"), *overrides],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return round(time.perf_counter() - start, 2)
