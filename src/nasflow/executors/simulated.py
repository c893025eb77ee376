"""A pool of workers in simulated time, for comparing asynchronous strategies on a table.

A table lookup takes microseconds, so on a table every strategy is sequential in effect.
What parallel evaluation changes, which candidates a strategy proposes before the
results of the ones still training come back, only shows when each query takes the time
its training would. This executor is a discrete-event simulation of `workers` workers in
the manner of Syne Tune's simulator backend: each submitted task is looked up at once,
given a duration by a cost model, and handed back when the simulated clock reaches its
end; the loop then proposes the next while the others are still "training". The clock
(`clock`) is simulated seconds, so stopping rules and the history's `elapsed` are too.

The cost model: a task "takes" its training epochs (`Evaluation.cost`) times the seconds
of one epoch, ``seconds_per_epoch + seconds_per_gflop * flops / 1e9`` where `flops` is
the network's forward FLOPs per image (`Evaluation.flops`; the NB201 table estimator
reports them), i.e. an epoch's time grows linearly with the network's compute on top of a
fixed cost (data loading, evaluation). With the defaults the costliest NB201 cell (440
MFLOPs) takes 21.6 s an epoch and the cheapest (16 MFLOPs) 4.6 s; only such ratios
matter to a comparison at equal simulated time, not the scale.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from nasflow.executors.base import Executor
from nasflow.ranges import NonNegativeFloat, PositiveInt
from nasflow.records import EvaluateFn, Evaluation, Task


class SimulatedExecutor(Executor):
    """`workers` simulated workers; each task lasts what the cost model says.

    Args:
        workers: Tasks in flight at once.
        seconds_per_epoch: Simulated seconds of one training epoch of a network with no
            compute (the fixed part).
        seconds_per_gflop: Simulated seconds an epoch grows by per GFLOP of the
            network's forward pass per image.

    Evaluations come back with `seconds` set to their simulated duration. Tasks that end
    at the same simulated time come back in the order they were submitted, so a search
    in simulated time is as deterministic as a sequential one.
    """

    name = "simulated"

    def __init__(
        self,
        workers: PositiveInt = 4,
        seconds_per_epoch: NonNegativeFloat = 4.0,
        seconds_per_gflop: NonNegativeFloat = 40.0,
    ) -> None:
        super().__init__()
        self.slots = workers
        self.seconds_per_epoch = seconds_per_epoch
        self.seconds_per_gflop = seconds_per_gflop
        self.now = 0.0
        self._running: list[tuple[float, int, Task, Evaluation]] = []  # a heap by end time
        self._submitted = 0

    def duration(self, evaluation: Evaluation) -> float:
        """The simulated seconds of an evaluation (the cost model)."""
        gflops = (evaluation.flops or 0) / 1e9
        return evaluation.cost * (self.seconds_per_epoch + self.seconds_per_gflop * gflops)

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        evaluation = evaluate(task)
        seconds = self.duration(evaluation)
        end = self.now + seconds
        heapq.heappush(
            self._running, (end, self._submitted, task, replace(evaluation, seconds=seconds))
        )
        self._submitted += 1

    def wait(self) -> list[tuple[Task, Evaluation]]:
        end, _, task, evaluation = heapq.heappop(self._running)
        self.now = max(self.now, end)
        return [(task, evaluation)]

    def in_flight(self) -> int:
        return len(self._running)

    def clock(self) -> float:
        return self.now
