"""Executors: where candidates are evaluated (this process, a Ray cluster, or a simulated
pool of workers for table benchmarks).

Each executor is one module that registers itself (`nasflow.registry.EXECUTORS`); the
names below are imported only when used, so a local search never imports Ray.
"""

from typing import TYPE_CHECKING

from nasflow.lazy import exports

if TYPE_CHECKING:
    from nasflow.executors.base import Executor, ForwardingExecutor, LocalExecutor
    from nasflow.executors.ray_executor import RayExecutor
    from nasflow.executors.simulated import SimulatedExecutor

__all__ = ["Executor", "ForwardingExecutor", "LocalExecutor", "RayExecutor", "SimulatedExecutor"]

__getattr__, __dir__ = exports(
    __name__,
    {
        "Executor": "base",
        "ForwardingExecutor": "base",
        "LocalExecutor": "base",
        "RayExecutor": "ray_executor",
        "SimulatedExecutor": "simulated",
    },
)
