"""Candidates as Ray tasks: all of a machine's cores and GPUs, or a whole Ray cluster.

Each candidate is one Ray task with `num_cpus` CPUs and `num_gpus` GPUs (fractional, so
four candidates share one GPU at 0.25 each; Ray sets ``CUDA_VISIBLE_DEVICES`` for the
task, so Lightning inside it sees exactly its device). What the tasks share, the
estimator with the prepared data, goes into Ray's object store once per search, and each
worker process loads it once. A worker sets torch's threads to its CPUs: two processes
with torch's default threads on the same cores slow each other down many times over.

The search process (the driver) stays the only writer of the checkpoint and of MLflow:
each task is a Ray generator that yields its candidate's finished epochs as they come and
then its evaluation, and the driver hands the epochs to the loop while it waits (no
process besides the workers). A task whose worker dies (its process killed, its node
lost, out of memory) is run again by Ray up to `max_retries` times, then comes back as a
failed candidate with the reason; a candidate that raises is a failed candidate already
(the estimator catches it), so it is not retried. A task run again yields only what its
first run had not yet delivered (Ray's generators replay by position), so each epoch
reaches the loop once.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
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
        poll_seconds: The longest the driver waits on Ray at a time (epochs are passed
            on as they arrive; between waits it can take an interrupt).
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
        self._remote: Any = None
        self._shared: dict[tuple[int, str], Any] = {}  # the object-store copy of each evaluator
        self._running: dict[Any, Task] = {}  # task's generator -> task, in submission order
        #: Where each running candidate trains, by proposal: (node address, worker PID),
        #: as its latest epoch report says.
        self.placement: dict[int, tuple[str, int]] = {}

    def _start(self) -> None:
        import ray

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
        self._remote = ray.remote(_evaluate).options(
            num_returns="streaming",
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
        generator = self._remote.remote(self._share(evaluate), task, self.num_cpus)
        self._running[generator] = task

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
            # The tasks whose next item (an epoch, or the evaluation) has arrived.
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=self.poll_seconds)
            if ready:
                ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
            finished = []
            for generator in ready:
                task = self._running[generator]
                evaluation = self._take(generator, task)
                if evaluation is not None:
                    del self._running[generator]
                    self.placement.pop(task.iteration, None)
                    finished.append((task, evaluation))
            if finished:
                return finished

    def _take(self, generator: Any, task: Task) -> Evaluation | None:
        """The task's next item: an epoch, handed to the loop (None), or its evaluation."""
        from ray import exceptions

        try:
            item, where = self._ray.get(next(generator))
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
        known = self.placement.get(task.iteration)
        if known is not None and known != where:
            log.info("  #%d runs again (its worker died)", task.iteration + 1)
        self.placement[task.iteration] = where
        if isinstance(item, Evaluation):
            return item
        self.on_epoch(task, item)
        return None

    def in_flight(self) -> int:
        return len(self._running)

    def close(self) -> None:
        if self._ray is None:
            return
        for generator in self._running:
            self._ray.cancel(generator, force=True)
        self._running.clear()
        if self._owns_ray:
            self._ray.shutdown()
        self._ray = None


#: What a worker process has loaded, by object reference: the estimator of each search.
_LOADED: dict[Any, EvaluateFn] = {}


def _evaluate(
    shared: list[Any], task: Task, cpus: float
) -> Iterator[tuple[dict[str, Any] | Evaluation, tuple[str, int]]]:
    """A candidate in a Ray worker, as a generator: each finished epoch as it comes, then
    the evaluation, each with where it ran (node address, worker PID).

    The evaluator is loaded once per process and torch gets the task's CPUs. The training
    runs in a thread of its own: its epochs come from deep inside Lightning, and this
    generator yields them to the driver while it goes on."""
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

    items: queue.SimpleQueue[dict[str, Any] | _Ended] = queue.SimpleQueue()

    def train() -> None:
        with reporting(items.put):
            try:
                items.put(_Ended(evaluate(task)))
            except BaseException as error:  # raised in the task, as Ray reports it
                items.put(_Ended(error))

    threading.Thread(target=train, name=f"candidate #{task.iteration + 1}", daemon=True).start()
    while not isinstance(item := items.get(), _Ended):
        yield item, where
    if isinstance(item.outcome, BaseException):
        raise item.outcome
    yield item.outcome, where


class _Ended:
    """The training thread's last word: the evaluation, or what it raised."""

    def __init__(self, outcome: Evaluation | BaseException) -> None:
        self.outcome = outcome
