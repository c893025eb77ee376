"""Candidates as Ray tasks: all of a machine's cores and GPUs, or a whole Ray cluster.

Each candidate is one Ray task with `num_cpus` CPUs and `num_gpus` GPUs (fractional, so
four candidates share one GPU at 0.25 each; Ray sets ``CUDA_VISIBLE_DEVICES`` for the
task, so Lightning inside it sees exactly its device). What the tasks share, the
estimator with the prepared data, goes into Ray's object store once per search, and each
worker process loads it once. A worker sets torch's threads to its CPUs: two processes
with torch's default threads on the same cores slow each other down many times over.

The search process (the driver) stays the only writer of the checkpoint and of MLflow:
workers send each finished epoch back through a Ray queue, and the driver hands them to
the loop while it waits. A task whose worker dies (its process killed, its node lost,
out of memory) is run again by Ray up to `max_retries` times, then comes back as a
failed candidate with the reason; a candidate that raises is a failed candidate already
(the estimator catches it), so it is not retried.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

from nasflow.errors import NasflowError, first_line
from nasflow.executors.base import Executor
from nasflow.progress import reporting
from nasflow.ranges import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from nasflow.records import EvaluateFn, Evaluation, Task

log = logging.getLogger("nasflow.search")


class RayExecutor(Executor):
    """Runs candidates as Ray tasks, `workers` at a time.

    Args:
        workers: Candidates in flight at once.
        address: None: start a Ray instance on this machine sized for `workers`
            (``workers * num_cpus`` CPUs and the GPUs it has), shut down when the search
            ends. ``auto``: join the Ray cluster running on this machine (``ray start``);
            ``ray://host:10001``: a remote cluster through Ray Client; any other
            ``host:port``: that cluster's head.
        num_cpus: CPUs each candidate reserves; torch inside uses as many threads.
        num_gpus: GPUs each candidate reserves, fractions allowed (0: CPU only).
        max_retries: Times a candidate whose worker died is run again before it is
            recorded as failed.
        poll_seconds: How often the driver passes on the epochs workers report while it
            waits for a candidate to finish.
    """

    name = "ray"

    def __init__(
        self,
        workers: PositiveInt = 2,
        address: str | None = None,
        num_cpus: PositiveFloat = 1,
        num_gpus: NonNegativeFloat = 0,
        max_retries: NonNegativeInt = 2,
        poll_seconds: PositiveFloat = 0.5,
    ) -> None:
        super().__init__()
        self.slots = workers
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.poll_seconds = poll_seconds
        self._ray: Any = None
        self._owns_ray = False
        self._queue: Any = None
        self._remote: Any = None
        self._shared: dict[tuple[int, str], Any] = {}  # the object-store copy of each evaluator
        self._running: dict[Any, Task] = {}  # object ref -> task, in submission order
        self._epochs: dict[tuple[int, float | None], int] = {}  # last epoch passed on
        #: Where each running candidate trains, by proposal: (node address, worker PID),
        #: as its latest epoch report says.
        self.placement: dict[int, tuple[str, int]] = {}

    def _start(self) -> None:
        import ray
        from ray.util.queue import Queue

        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "configure_logging": False,
                "log_to_driver": False,  # a worker's output is its candidate's business
            }
            if self.address is None:
                options["num_cpus"] = math.ceil(self.slots * self.num_cpus)
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                first = first_line(error)[:300]
                raise NasflowError(
                    f"executor.address={self.address} could not be joined ({first}); start "
                    "the cluster (ray start --head), fix the address, or leave it unset to "
                    "start Ray on this machine"
                ) from None
            self._owns_ray = True
        self._check_resources(ray.cluster_resources())
        self._ray = ray
        # Epochs from the workers; the queue is a tiny actor that needs no CPU of its own.
        self._queue = Queue(actor_options={"num_cpus": 0})
        self._remote = ray.remote(_evaluate).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )

    def _check_resources(self, available: dict[str, float]) -> None:
        for key, wanted in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
            if wanted and available.get(key, 0) < wanted:
                setting = f"executor.num_{key.lower()}s={wanted:g}"
                raise NasflowError(
                    f"{setting} but the Ray cluster has {available.get(key, 0):g} {key}s; "
                    f"lower {setting} or add nodes with {key}s"
                )

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        if self._ray is None:
            self._start()
        ref = self._remote.remote(self._share(evaluate), task, self._queue, self.num_cpus)
        self._running[ref] = task

    def _share(self, evaluate: EvaluateFn) -> list[Any]:
        """`evaluate` in the object store, put there once (in a list, so that Ray hands
        the worker the reference, which it loads once, rather than a copy per task)."""
        owner = getattr(evaluate, "__self__", evaluate)
        key = (id(owner), getattr(evaluate, "__name__", ""))
        if key not in self._shared:
            self._shared[key] = self._ray.put(evaluate)
        return [self._shared[key]]

    def wait(self) -> list[tuple[Task, Evaluation]]:
        ray = self._ray
        while True:
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=self.poll_seconds)
            self._pass_on_epochs()
            if ready:
                break
        ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        finished = []
        for ref in ready:
            task = self._running.pop(ref)
            finished.append((task, self._result(ref, task)))
        return finished

    def _result(self, ref: Any, task: Task) -> Evaluation:
        from ray import exceptions

        try:
            return self._ray.get(ref)  # type: ignore[no-any-return]
        except (
            exceptions.WorkerCrashedError,
            exceptions.OutOfMemoryError,
            exceptions.NodeDiedError,
            exceptions.ObjectLostError,
            exceptions.RayTaskError,
            exceptions.TaskUnschedulableError,
        ) as error:
            reason = first_line(error)[:300]
            log.warning("  #%d: its worker failed: %s", task.iteration + 1, reason)
            return Evaluation.failure(
                RuntimeError(
                    f"the worker died ({type(error).__name__}; "
                    f"after {self.max_retries} retries): {reason}"
                )
            )
        finally:
            self._epochs.pop((task.iteration, task.fidelity), None)
            self.placement.pop(task.iteration, None)

    def _pass_on_epochs(self) -> None:
        """Hand the loop every epoch the workers have reported since the last call, each
        once: a retried candidate reports its first epochs again."""
        waiting = self._queue.qsize()
        reports = self._queue.get_nowait_batch(waiting) if waiting else []
        for task, record, where in reports:
            self.placement[task.iteration] = where
            key = (task.iteration, task.fidelity)
            epoch = int(record.get("epoch", 0))
            if epoch <= self._epochs.get(key, -1):
                if epoch == 0:
                    log.info("  #%d runs again (its worker died)", task.iteration + 1)
                continue
            self._epochs[key] = epoch
            self.on_epoch(task, record)

    def in_flight(self) -> int:
        return len(self._running)

    def close(self) -> None:
        if self._ray is None:
            return
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()
        self._ray.kill(self._queue.actor)
        if self._owns_ray:
            self._ray.shutdown()
        self._ray = None


#: What a worker process has loaded, by object reference: the estimator of each search.
_LOADED: dict[Any, EvaluateFn] = {}


def _evaluate(shared: list[Any], task: Task, queue: Any, cpus: float) -> Evaluation:
    """A candidate in a Ray worker: load the search's evaluator once per process, give
    torch the task's CPUs, and send each finished epoch back to the driver."""
    import ray
    import torch

    from nasflow.cli import quiet_libraries

    threads = max(1, math.floor(cpus))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    quiet_libraries()
    ref = shared[0]
    if ref not in _LOADED:
        _LOADED.clear()  # a new search: the last one's data can go
        _LOADED[ref] = ray.get(ref)
    evaluate: Callable[[Task], Evaluation] = _LOADED[ref]

    where = (ray.util.get_node_ip_address(), os.getpid())

    def send(record: dict[str, Any]) -> None:
        queue.put((task, record, where))

    with reporting(send):
        return evaluate(task)
