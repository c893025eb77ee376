"""Estimation before training: zero-cost proxies, learned predictors, and the pre-filter
that uses either to train only the most promising proposals.

* `ProxyEstimator` scores an untrained network with zero-cost proxies (`nasflow.proxies`)
  on one fixed minibatch: on its own it is a search signal that costs no training.
* `PreFilter` asks the strategy for `proposals` architectures per `keep` it evaluates,
  ranks them with a `Ranker` and hands the top `keep` to the wrapped estimator; the rest
  come back "filtered" (the loop discards them, the strategy is not told a score).
* Rankers: `ProxyRanker` (one proxy, or a rank vote of several, as Abdelfattah et al.
  2021 combine them) and `PredictorRanker`, a regression model fitted online on every
  candidate evaluated so far (architecture encoding, optionally with proxy scores as
  extra features, White et al. 2021) that ranks the next proposals.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge

from nasflow.errors import NasflowError, check_int
from nasflow.estimators.base import Estimator
from nasflow.estimators.fidelity import EstimatorFactory, Wrapper
from nasflow.executors import Executor, LocalExecutor
from nasflow.proxies import PROXIES
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation, StopRule, Task
from nasflow.registry import RANKERS, Component
from nasflow.search_spaces.base import Architecture, SearchSpace

# Proxies that score the network alone; the others need images (and labels).
DATA_FREE = ("synflow", "params", "flops")


class ProxyEstimator(Estimator):
    """Scores an untrained network with zero-cost proxies; no training, cost 0.

    The score is the first proxy's value, and `metrics` holds every proxy's. The network's
    initial weights are seeded from the architecture's id (and `seed`), and every network
    sees the same minibatch, so a score is a function of the architecture alone: scores
    are remembered per architecture for the rest of the search.

    Args:
        space: Builds the networks.
        data: In-memory splits; one minibatch of `batch_size` is drawn from "train".
        proxies: A proxy name or several (see `nasflow.proxies.PROXIES`).
        batch_size: Images in the minibatch.
        seed: Seeds the minibatch draw and, with each architecture's id, its weights.
        input_shape, num_classes: The network's input and classes when there is no
            `data` (data-free proxies only, e.g. synflow on the NB201 benchmark).
        **ignored: Other stage-supplied arguments (``trainer``).
    """

    name = "proxy"

    # Round by round, so that `run` answers remembered architectures without the executor.
    asynchronous = False

    def __init__(
        self,
        space: SearchSpace,
        data: Any = None,
        proxies: str | Sequence[str] = "synflow",
        batch_size: Annotated[int, Ge(2)] = 64,
        seed: Seed = 0,
        input_shape: Sequence[PositiveInt] | None = None,
        num_classes: PositiveInt | None = None,
        **ignored: Any,
    ) -> None:
        names = [proxies] if isinstance(proxies, str) else list(proxies)
        if not names:
            raise NasflowError(f"name at least one proxy; choose from {', '.join(PROXIES)}")
        if unknown := [name for name in names if name not in PROXIES]:
            raise NasflowError(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
        check_int("estimator.batch_size", batch_size, minimum=2)
        self.space = space
        self.proxies = names
        self.seed = seed
        self.memo: dict[str, Evaluation] = {}
        if data is not None:
            images, labels = data.splits["train"].tensors
            pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
            pick = pick[:batch_size]
            self.images, self.labels = images[pick], labels[pick]
            self.input_shape = tuple(data.info.input_shape)
            self.num_classes = int(data.info.num_classes)
        else:
            if needs := [name for name in names if name not in DATA_FREE]:
                raise NasflowError(
                    f"proxy {needs[0]!r} needs data; without it only {', '.join(DATA_FREE)} work"
                )
            if input_shape is None or num_classes is None:
                raise NasflowError(
                    "without data, the proxy estimator needs input_shape and num_classes"
                )
            self.input_shape = tuple(input_shape)
            self.num_classes = int(num_classes)
            # Synflow feeds its own all-ones input; the others here ignore the batch.
            self.images = torch.ones(1, *self.input_shape)
            self.labels = torch.zeros(1, dtype=torch.long)

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        start = time.perf_counter()
        weights_seed = int(
            np.random.SeedSequence([self.seed, int(arch.id[:15], 16)]).generate_state(1)[0]
        )
        with torch.random.fork_rng():
            torch.manual_seed(weights_seed)
            try:
                network = self.space.build(arch, self.input_shape, self.num_classes)
                scores = {
                    name: float(PROXIES[name](network, self.images, self.labels, self.num_classes))
                    for name in self.proxies
                }
            except Exception as error:  # a candidate's own failure ends only that candidate
                return Evaluation.failure(error, seconds=time.perf_counter() - start)
        if not all(math.isfinite(v) for v in scores.values()):
            return Evaluation(
                status="failed",
                metrics=scores,
                seconds=time.perf_counter() - start,
                error=f"a proxy was not finite: {scores}",
            )
        return Evaluation(
            status="ok",
            score=scores[self.proxies[0]],
            metrics=scores,
            seconds=time.perf_counter() - start,
        )

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        """Remembered architectures are answered at once; the rest go to the executor."""
        fresh = [task for task in tasks if task.arch.id not in self.memo]
        for task in tasks:
            if task.arch.id in self.memo:
                yield task, self.memo[task.arch.id]
        for task, evaluation in executor.run(self.evaluate_task, fresh):
            self.memo[task.arch.id] = evaluation
            yield task, evaluation


class Ranker(Component, ABC):
    """Orders proposals by promise before any is trained; may learn from evaluations."""

    registry = RANKERS

    @abstractmethod
    def scores(self, tasks: Sequence[Task], executor: Executor) -> list[float]:
        """One score per task, higher is more promising (comparable within the round)."""

    def observe(self, task: Task, evaluation: Evaluation) -> None:
        """Learn from an evaluation of a task this ranker let through."""

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Average ranks from 0 (lowest); ties share their mean rank."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=float)) - 1


class ProxyRanker(Ranker):
    """Ranks by a zero-cost proxy, or by the mean rank under several (a rank vote).

    Args: as `ProxyEstimator` (which it uses), with `proxies` a name or a list.
    """

    name = "proxy"
    extra_settings = ProxyEstimator  # what checks **options: their schema too

    def __init__(
        self,
        space: SearchSpace,
        data: Any = None,
        proxies: str | Sequence[str] = "synflow",
        **options: Any,
    ) -> None:
        self.estimator = ProxyEstimator(space, data, proxies, **options)

    def scores(self, tasks: Sequence[Task], executor: Executor) -> list[float]:
        found = dict(
            (task.iteration, evaluation) for task, evaluation in self.estimator.run(tasks, executor)
        )
        names = self.estimator.proxies
        # A proposal whose proxies failed ranks below every other.
        table = np.array(
            [
                [
                    found[t.iteration].metrics.get(n, -math.inf)
                    if found[t.iteration].status == "ok"
                    else -math.inf
                    for n in names
                ]
                for t in tasks
            ]
        )
        if len(names) == 1:
            return table[:, 0].tolist()
        return np.mean([ranks(table[:, j]) for j in range(len(names))], axis=0).tolist()


class PredictorRanker(Ranker):
    """A regression model from architecture to score, refitted on every evaluated
    candidate before each round, ranks the proposals.

    Args:
        space: Encodes architectures (`SearchSpace.features`, one-hot decisions).
        data: Passed to the proxy estimator when `proxies` are used as features.
        model: ``random_forest`` (scikit-learn's RandomForestRegressor) or
            ``gradient_boosting`` (its GradientBoostingRegressor).
        min_observations: Evaluations needed before the model ranks; until then the
            proxies rank (if any), else the strategy's own order stands.
        proxies: Zero-cost proxies added to the features (their log-magnitude); empty
            for the encoding alone.
        seed: Seeds the model.
        **options: Passed to the proxy estimator (batch_size, input_shape, ...).

    Only full-fidelity ("ok") evaluations are learnt from; the training set is saved with
    the search, so a resumed search ranks as the uninterrupted one would.
    """

    name = "predictor"
    extra_settings = ProxyEstimator  # **options go to the proxies' estimator

    MODELS = ("random_forest", "gradient_boosting")

    def __init__(
        self,
        space: SearchSpace,
        data: Any = None,
        model: str = "random_forest",
        min_observations: Annotated[int, Ge(2)] = 10,
        proxies: Sequence[str] = (),
        seed: Seed = 0,
        **options: Any,
    ) -> None:
        if model not in self.MODELS:
            raise NasflowError(
                f"unknown predictor model {model!r}; choose from {', '.join(self.MODELS)}"
            )
        check_int("estimator.ranker.min_observations", min_observations, minimum=2)
        self.space = space
        self.model_name = model
        self.min_observations = min_observations
        self.seed = seed
        self.proxy = (
            ProxyRanker(space, data, list(proxies), seed=seed, **options) if proxies else None
        )
        self.features: list[list[float]] = []
        self.targets: list[float] = []
        self.latest: dict[str, float] = {}

    def _encode(self, tasks: Sequence[Task], executor: Executor) -> np.ndarray:
        rows = np.array([self.space.features(task.arch) for task in tasks], dtype=float)
        if self.proxy is None:
            return rows
        found = dict((t.iteration, e) for t, e in self.proxy.estimator.run(tasks, executor))
        extra = np.array(
            [
                [
                    _signed_log(found[t.iteration].metrics.get(n, 0.0))
                    for n in self.proxy.estimator.proxies
                ]
                for t in tasks
            ]
        )
        return np.hstack([rows, extra])

    def _model(self) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        if self.model_name == "random_forest":
            return RandomForestRegressor(
                n_estimators=100, min_samples_leaf=2, random_state=self.seed, n_jobs=1
            )
        return GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=self.seed)

    def scores(self, tasks: Sequence[Task], executor: Executor) -> list[float]:
        if len(self.targets) < self.min_observations:
            if self.proxy is not None:
                return self.proxy.scores(tasks, executor)
            return [0.0] * len(tasks)  # all equal: the strategy's order decides
        model = self._model().fit(np.array(self.features), np.array(self.targets))
        return model.predict(self._encode(tasks, executor)).tolist()

    def observe(self, task: Task, evaluation: Evaluation) -> None:
        if evaluation.status != "ok" or evaluation.score is None:
            return
        self.features.append(self._encode([task], _INLINE)[0].tolist())
        self.targets.append(float(evaluation.score))

    def metrics(self) -> dict[str, float]:
        return {"predictor_observations": float(len(self.targets))}

    def state_dict(self) -> dict[str, Any]:
        return {"features": [list(f) for f in self.features], "targets": list(self.targets)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.features = [list(f) for f in state.get("features", [])]
        self.targets = list(state.get("targets", []))


def _signed_log(value: float) -> float:
    return math.copysign(math.log1p(abs(value)), value)


# The few proxy scores a predictor needs for one observation are computed here, in this
# process (usually none: they are remembered from the round that proposed it).
_INLINE = LocalExecutor()


class PreFilter(Wrapper):
    """Rank `proposals` proposals, evaluate the best `keep` with `then`, filter the rest.

    Args:
        then: Evaluates the kept proposals (training, successive halving, ...).
        ranker: A `Ranker` or its factory (a Hydra ``_partial_``, given `space` and `data`).
        proposals: Proposals ranked per round.
        keep: Of those, how many are evaluated.
        **context: Passed to the factories of `then` and `ranker`.
    """

    name = "prefilter"

    # Proposals are ranked against each other: run round by round.
    asynchronous = False

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        ranker: Ranker | Any,
        proposals: PositiveInt = 10,
        keep: PositiveInt = 1,
        **context: Any,
    ) -> None:
        super().__init__(then, context)
        check_int("estimator.proposals", proposals)
        check_int("estimator.keep", keep)
        if keep > proposals:
            raise NasflowError(
                f"estimator.keep ({keep}) must not exceed estimator.proposals ({proposals})"
            )
        self.ranker = (
            ranker
            if isinstance(ranker, Ranker)
            else ranker(space=context.get("space"), data=context.get("data"))
        )
        self.proposals_per_round = proposals
        self.keep = keep

    def round_size(self, remaining: int, slots: int) -> int:
        return min(self.keep, remaining)

    def proposals(self, wanted: int) -> int:
        return math.ceil(wanted * self.proposals_per_round / self.keep)

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        scores = self.ranker.scores(tasks, executor)
        keep = min(len(tasks), max(1, round(len(tasks) * self.keep / self.proposals_per_round)))
        # Best first; among equal scores the earlier proposal (stable sort).
        order = sorted(range(len(tasks)), key=lambda i: -scores[i])
        kept = sorted(order[:keep])
        for place, i in enumerate(order[keep:], start=keep + 1):
            yield (
                tasks[i],
                Evaluation(
                    status="filtered",
                    metrics={"filter_score": scores[i]} if math.isfinite(scores[i]) else {},
                    error=f"ranked {place} of {len(tasks)} by the pre-filter; "
                    f"the best {keep} go on",
                ),
            )
        score_of = {tasks[i].iteration: scores[i] for i in kept}
        for task, evaluation in self.then.run([tasks[i] for i in kept], executor):
            self.ranker.observe(task, evaluation)
            if math.isfinite(score_of[task.iteration]):
                evaluation.metrics["filter_score"] = score_of[task.iteration]
            yield task, evaluation

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ranker": self.ranker.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ranker.load_state_dict(state.get("ranker", {}))
