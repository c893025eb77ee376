"""Estimators that wrap estimators: successive halving, Hyperband, median stopping, the
pre-filter with proxy and predictor rankers, and how the loop and strategies see them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra.utils import instantiate

from nasflow.errors import NasflowError
from nasflow.estimators import (
    CurveStopping,
    Estimator,
    Hyperband,
    PredictorRanker,
    PreFilter,
    ProxyEstimator,
    SuccessiveHalving,
    TrainingEstimator,
)
from nasflow.estimators.fidelity import ExtrapolationRule, power_law_forecast
from nasflow.estimators.filters import Ranker
from nasflow.estimators.tabular import NB201TableEstimator
from nasflow.executors import LocalExecutor
from nasflow.loop import Checkpoint, run_search
from nasflow.records import Evaluation, Task
from nasflow.search_spaces import Architecture, NB201Space
from nasflow.search_strategies import (
    LocalSearch,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    TPESearch,
)
from nasflow.training import InMemoryData
from tests.conftest import compose_config, tracking_store

SPACE = NB201Space(channels=4, cells_per_stage=1)
TABLE_SPACE = NB201Space()


def quality(arch: Architecture) -> float:
    """A fixed score in [0, 1) per architecture."""
    return int(arch.id[:8], 16) / 16**8


class Fake(Estimator):
    """Scores `quality(arch)` scaled by fidelity (full: 9 epochs), keeping every call;
    with `curve`, trains "epoch by epoch" and honours stop rules."""

    stoppable = True

    def __init__(self, epochs: int = 9) -> None:
        self.epochs = epochs
        self.calls: list[tuple[str, float | None]] = []

    def evaluate(
        self, arch: Architecture, seed: int, fidelity: float | None = None, stop: Any = None
    ) -> Evaluation:
        self.calls.append((arch.id, fidelity))
        epochs = int(fidelity or self.epochs)
        history: list[dict[str, float]] = []
        status = "ok"
        for epoch in range(epochs):
            history.append({"epoch": epoch, "val_acc": quality(arch) * (epoch + 1) / epochs})
            if stop is not None and (reason := stop(history)):
                status = "stopped"
                break
        return Evaluation(
            status=status,  # type: ignore[arg-type]
            score=history[-1]["val_acc"],
            history=history,
            fidelity=float(len(history)),
            cost=float(len(history)),
            error=reason if status == "stopped" else None,
        )


def tasks(n: int, seed: int = 0) -> list[Task]:
    rng = np.random.default_rng(seed)
    return [Task(i, arch, i) for i, arch in enumerate(SPACE.sample(rng) for _ in range(n))]


# -- successive halving and Hyperband ---------------------------------------------------------


def test_successive_halving_promotes_the_best_third_through_each_rung() -> None:
    inner = Fake(epochs=9)
    halving = SuccessiveHalving(inner, rungs=[1, 3], eta=3)
    assert halving.candidates == 9 and halving.round_size(100, 1) == 9
    round_ = tasks(9)
    results = dict((t.iteration, e) for t, e in halving.run(round_, LocalExecutor()))
    assert sorted(results) == list(range(9))  # every task comes back once
    assert [f for _, f in inner.calls] == [1.0] * 9 + [3.0] * 3 + [None]
    by_quality = sorted(round_, key=lambda t: -quality(t.arch))
    top = results[by_quality[0].iteration]
    assert top.status == "ok" and top.score == pytest.approx(quality(by_quality[0].arch))
    assert [r["fidelity"] for r in top.rungs] == [1, 3, 9]
    assert top.cost == 1 + 3 + 9
    for task in by_quality[1:3]:  # stopped after 3 epochs
        e = results[task.iteration]
        assert (e.status, e.cost, len(e.rungs)) == ("stopped", 4, 2)
        assert "eliminated at rung 2 (3 epochs)" in e.error
    for task in by_quality[3:]:
        e = results[task.iteration]
        assert (e.status, e.cost, e.fidelity) == ("stopped", 1, 1)


def test_successive_halving_settings_are_checked() -> None:
    table = NB201TableEstimator(TABLE_SPACE)
    with pytest.raises(NasflowError, match=r"rungs \[50\] are not fidelities.*12, 200"):
        SuccessiveHalving(table, rungs=[50])
    with pytest.raises(NasflowError, match="must increase"):
        SuccessiveHalving(Fake(), rungs=[3, 1])
    with pytest.raises(NasflowError, match="below the full fidelity"):
        SuccessiveHalving(Fake(epochs=9), rungs=[1, 9])
    with pytest.raises(NasflowError, match="eta must be a number above 1, got 1"):
        SuccessiveHalving(Fake(), rungs=[1], eta=1)
    with pytest.raises(NasflowError, match="positive integer, got 0"):
        SuccessiveHalving(Fake(), rungs=[1], candidates=0)


def test_hyperband_cycles_its_brackets_and_saves_which_is_next() -> None:
    inner = Fake(epochs=9)
    band = Hyperband(inner, rungs=[1, 3], eta=3)
    assert band.brackets == [(2, 9), (1, 5), (0, 3)]
    sizes, starts = [], []
    for _ in range(4):
        n = band.round_size(100, 1)
        inner.calls.clear()
        list(band.run(tasks(n), LocalExecutor()))
        sizes.append(n)
        starts.append(inner.calls[0][1])
    assert sizes == [9, 5, 3, 9] and starts == [1.0, 3.0, None, 1.0]
    again = Hyperband(Fake(), rungs=[1, 3])
    again.load_state_dict(band.state_dict())
    assert again.round_size(100, 1) == 5


def test_successive_halving_on_the_table_uses_the_12_epoch_column_below_200() -> None:
    halving = SuccessiveHalving(NB201TableEstimator(TABLE_SPACE), rungs=[12], eta=3)
    rng = np.random.default_rng(1)
    round_ = [Task(i, TABLE_SPACE.sample(rng), i) for i in range(9)]
    results = [e for _, e in halving.run(round_, LocalExecutor())]
    assert sorted(e.status for e in results) == ["ok"] * 3 + ["stopped"] * 6
    assert sorted(e.cost for e in results) == [12] * 6 + [212] * 3
    assert all(e.fidelity == 200 for e in results if e.status == "ok")


# -- median stopping ---------------------------------------------------------------------------


def test_median_stopping_stops_curves_below_the_median_and_remembers_curves() -> None:
    stopping = CurveStopping(Fake(epochs=4), grace=1, min_curves=3)
    round_ = sorted(tasks(12), key=lambda t: -quality(t.arch))  # best first
    results = [e for _, e in stopping.run(round_, LocalExecutor())]
    assert [e.status for e in results[:3]] == ["ok"] * 3  # nothing to compare with yet
    # Every later curve is below the three best ones: stopped after the grace epoch.
    for e in results[3:]:
        assert (e.status, e.fidelity, e.cost) == ("stopped", 1, 1)
        assert "median stopping after 1 epochs" in e.error
    assert len(stopping.curves["full"]) == 3
    restored = CurveStopping(Fake(epochs=4))
    restored.load_state_dict(stopping.state_dict())
    assert restored.curves == stopping.curves


def test_median_stopping_needs_an_estimator_that_trains_by_epoch() -> None:
    with pytest.raises(NasflowError, match="NB201TableEstimator does not"):
        CurveStopping(NB201TableEstimator(TABLE_SPACE))
    with pytest.raises(
        NasflowError, match="unknown learning-curve rule 'mean'; choose from median"
    ):
        CurveStopping(Fake(), rule="mean")


def test_power_law_forecasts_saturating_curves() -> None:
    curve = [0.9 - 0.5 * t**-1.0 for t in range(1, 6)]
    assert power_law_forecast(curve, 20) == pytest.approx(0.9 - 0.5 / 20, abs=1e-3)
    assert power_law_forecast([0.5, 0.6], 20) is None  # too short to fit three parameters


def test_extrapolation_stops_curves_that_cannot_catch_the_best() -> None:
    finished = [[0.5, 0.7, 0.8, 0.85, 0.9, 0.92]] * 3
    rule = ExtrapolationRule(finished, grace=3, min_curves=3, epochs=6, margin=0.02)
    slow = [{"epoch": i, "val_acc": v} for i, v in enumerate([0.2, 0.25, 0.27])]
    fast = [{"epoch": i, "val_acc": v} for i, v in enumerate([0.5, 0.72, 0.82])]
    assert "curve extrapolation after 3 epochs" in (rule(slow) or "")
    assert rule(fast) is None
    assert rule(slow[:2]) is None  # within the grace epochs
    assert ExtrapolationRule(finished[:2], 3, 3, 6, 0.02)(slow) is None  # too few curves


def test_training_honours_a_stop_rule(prepared_digits: Path) -> None:
    cfg = compose_config(["search_space.max_layers=2"])
    data = InMemoryData.load(prepared_digits, ("train", "val"))
    space = instantiate(cfg.search_space)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
    assert isinstance(estimator, TrainingEstimator)
    arch = space.sample(np.random.default_rng(0))
    evaluation = estimator.evaluate(
        arch, 0, fidelity=3, stop=lambda h: "enough" if len(h) == 2 else None
    )
    assert (evaluation.status, evaluation.error, evaluation.fidelity, evaluation.cost) == (
        "stopped",
        "enough",
        2,
        2,
    )
    assert len(evaluation.history) == 2


# -- pre-filter, proxies, predictor ----------------------------------------------------------


class ByQuality(Ranker):
    def __init__(self) -> None:
        self.observed: list[int] = []

    def scores(self, tasks: Sequence[Task], executor: Any) -> list[float]:
        return [quality(t.arch) for t in tasks]

    def observe(self, task: Task, evaluation: Evaluation) -> None:
        self.observed.append(task.iteration)


def test_prefilter_evaluates_the_top_ranked_and_filters_the_rest() -> None:
    inner, ranker = Fake(), ByQuality()
    prefilter = PreFilter(inner, ranker, proposals=10, keep=2)
    assert prefilter.round_size(100, 1) == 2 and prefilter.proposals(2) == 10
    assert prefilter.proposals(1) == 5  # the end of a budget: the same ratio
    round_ = tasks(10)
    results = list(prefilter.run(round_, LocalExecutor()))
    assert sorted(t.iteration for t, _ in results) == list(range(10))
    evaluated = [t for t, e in results if e.status != "filtered"]
    best_two = sorted(round_, key=lambda t: -quality(t.arch))[:2]
    assert {t.iteration for t in evaluated} == {t.iteration for t in best_two}
    assert len(inner.calls) == 2 and sorted(ranker.observed) == sorted(
        t.iteration for t in best_two
    )
    filtered = [e for _, e in results if e.status == "filtered"]
    assert all(e.score is None and e.cost == 0 and "ranked" in e.error for e in filtered)


class Recording(RandomSearch):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.discarded = 0
        self.told = 0

    def discard(self, arch: Architecture) -> None:
        self.discarded += 1

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        super().tell(arch, evaluation)
        self.told += 1


def test_the_loop_tells_evaluations_discards_filtered_and_counts_proposals() -> None:
    strategy = Recording(SPACE, budget=5, seed=0)
    prefilter = PreFilter(Fake(), ByQuality(), proposals=6, keep=2)
    history = run_search(strategy, prefilter, LocalExecutor(), seed=0)
    assert len(history) == 5 and strategy.told == 5
    # Rounds of 2, 2 and 1 evaluations: 6 + 6 + 3 proposals.
    assert history[-1].proposals == 15 and strategy.discarded == 10
    assert [c.iteration for c in history] == list(range(5))
    assert history[-1].cost == 5 * 9


def test_only_full_fidelity_results_become_the_best() -> None:
    halving = SuccessiveHalving(Fake(epochs=9), rungs=[3], eta=3, candidates=3)
    history = run_search(RandomSearch(SPACE, budget=6, seed=1), halving, LocalExecutor(), seed=1)
    statuses = [c.evaluation.status for c in history]
    assert statuses.count("ok") == 2 and statuses.count("stopped") == 4
    full = [c.evaluation.score for c in history if c.evaluation.status == "ok"]
    assert history[-1].best_score == max(full)
    assert history[-1].cost == 6 * 3 + 2 * 9


@pytest.mark.parametrize(
    "make",
    [
        lambda: RegularizedEvolution(SPACE, budget=30, seed=0, population_size=5, sample_size=2),
        lambda: LocalSearch(SPACE, budget=30, seed=0, n_initial=3),
        lambda: Reinforce(SPACE, budget=30, seed=0, batch_size=3),
        lambda: TPESearch(SPACE, budget=30, seed=0, n_startup_trials=5),
    ],
    ids=["evolution", "local_search", "reinforce", "tpe"],
)
def test_every_learning_strategy_runs_behind_a_prefilter(make: Any) -> None:
    strategy = make()
    history = run_search(strategy, PreFilter(Fake(), ByQuality(), 4, 1), LocalExecutor(), 0)
    assert len(history) == 30 and history[-1].proposals >= 100
    assert len({c.arch.id for c in history}) == 30
    if isinstance(strategy, Reinforce):
        assert not strategy.pending  # discarded proposals are not kept waiting
    if isinstance(strategy, TPESearch):
        assert not strategy.pending


def test_proxy_scores_are_a_function_of_the_architecture(prepared_digits: Path) -> None:
    data = InMemoryData.load(prepared_digits, ("train",))
    proxy = ProxyEstimator(SPACE, data, ["naswot", "synflow"], batch_size=16)
    arch = SPACE.sample(np.random.default_rng(3))
    first, again = proxy.evaluate(arch, seed=1), proxy.evaluate(arch, seed=2)
    assert first.status == "ok" and first.score == again.score == first.metrics["naswot"]
    assert first.cost == 0 and set(first.metrics) == {"naswot", "synflow"}
    results = list(proxy.run([Task(0, arch, 5), Task(1, arch, 6)], LocalExecutor()))
    assert [e.score for _, e in results] == [first.score] * 2


def test_proxy_estimator_errors_name_the_bad_value() -> None:
    with pytest.raises(NasflowError, match=r"unknown proxy 'synflw'; choose from .*synflow"):
        ProxyEstimator(SPACE, None, "synflw")
    with pytest.raises(NasflowError, match="proxy 'snip' needs data"):
        ProxyEstimator(SPACE, None, "snip", input_shape=[3, 8, 8], num_classes=10)
    with pytest.raises(NasflowError, match="needs input_shape and num_classes"):
        ProxyEstimator(SPACE, None, "synflow")


def test_predictor_learns_from_evaluations_and_ranks_new_proposals() -> None:
    table = NB201TableEstimator(TABLE_SPACE)
    predictor = PredictorRanker(TABLE_SPACE, min_observations=5, seed=0)
    rng = np.random.default_rng(0)
    train = [Task(i, TABLE_SPACE.sample(rng), i) for i in range(150)]
    assert predictor.scores(train[:3], LocalExecutor()) == [0.0] * 3  # too few yet
    for task in train:
        predictor.observe(task, table.evaluate(task.arch, 0))
    held_out = [Task(1000 + i, TABLE_SPACE.sample(rng), 0) for i in range(200)]
    predicted = predictor.scores(held_out, LocalExecutor())
    actual = [table.evaluate(t.arch, 0).score for t in held_out]
    from scipy.stats import spearmanr

    assert spearmanr(predicted, actual).statistic > 0.6
    restored = PredictorRanker(TABLE_SPACE, min_observations=5, seed=0)
    restored.load_state_dict(predictor.state_dict())
    assert restored.scores(held_out, LocalExecutor()) == pytest.approx(predicted)


def test_a_prefiltered_search_resumes_exactly(tmp_path: Path) -> None:
    def search(checkpoint: Checkpoint | None = None, resumed: Any = None, budget: int = 24) -> Any:
        prefilter = PreFilter(
            NB201TableEstimator(TABLE_SPACE),
            PredictorRanker(TABLE_SPACE, min_observations=6, seed=0),
            proposals=4,
            keep=2,
        )
        strategy = RegularizedEvolution(
            TABLE_SPACE, budget, seed=0, population_size=6, sample_size=3
        )
        return run_search(
            strategy, prefilter, LocalExecutor(), 0, checkpoint=checkpoint, resumed=resumed
        )

    whole = search()
    checkpoint = Checkpoint(tmp_path, "x")
    search(checkpoint, budget=12)  # "interrupted" after 12 candidates
    saved = checkpoint.load()
    assert saved is not None and len(saved["estimator"]["ranker"]["targets"]) == 12
    resumed = search(checkpoint, saved)
    assert [c.arch.id for c in resumed] == [c.arch.id for c in whole]
    assert [c.proposals for c in resumed] == [c.proposals for c in whole]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "proxy",
        "successive_halving",
        "hyperband",
        "median_stopping",
        "prefilter",
        "predictor",
        "prefilter_sh",
    ],
)
def test_every_composed_estimator_option_builds(name: str, prepared_digits: Path) -> None:
    cfg = compose_config([f"estimator={name}", "search_space.max_layers=2"])
    data = InMemoryData.load(prepared_digits, ("train", "val"))
    space = instantiate(cfg.search_space)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
    assert isinstance(estimator, Estimator)
    leaf: Any = estimator
    while hasattr(leaf, "then"):
        leaf = leaf.then
    assert isinstance(leaf, TrainingEstimator | ProxyEstimator)


@pytest.mark.parametrize("name", ["nb201_successive_halving", "nb201_prefilter", "nb201_predictor"])
def test_the_nb201_compositions_build_without_data(name: str) -> None:
    cfg = compose_config([f"estimator={name}", "search_space=nb201"])
    estimator = instantiate(cfg.estimator, space=instantiate(cfg.search_space))
    assert isinstance(estimator.then, NB201TableEstimator)


# -- the search stage --------------------------------------------------------------------------


def test_the_search_stage_runs_a_prefilter_and_successive_halving_and_logs_rungs(
    tmp_path: Path, prepared_digits: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from nasflow.stages import search

    cfg = compose_config(
        [
            "estimator=prefilter_sh",
            "strategy.budget=3",
            "estimator.then.rungs=[1]",
            "estimator.then.then.epochs=2",
            "search_space.max_layers=2",
            f"paths.prepared={prepared_digits}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
            f"tracking.uri={tracking_store(tmp_path)}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
        ]
    )
    summary = search.run(cfg)
    # 9 proposals (27 per 9 kept), 3 kept; 1 epoch each, then the best for 2 epochs.
    assert summary["proposals"] == 9 and summary["evaluated"] == 3
    assert (summary["full_fidelity"], summary["stopped"], summary["cost_epochs"]) == (1, 2, 5)
    lines = (tmp_path / "search" / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    best = next(c for c in history if c["status"] == "ok")
    assert summary["best_score"] == best["score"]
    assert [r["fidelity"] for r in best["rungs"]] == [1, 2]
    assert all("filter_score" in c["metrics"] for c in history)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    statuses = sorted(r.data.tags["nasflow.status"] for r in children)
    assert statuses == ["ok", "stopped", "stopped"]
    ok = next(r for r in children if r.data.tags["nasflow.status"] == "ok")
    rungs = client.get_metric_history(ok.info.run_id, "rung_score")
    assert [m.step for m in rungs] == [1, 2]
    assert ok.data.metrics["cost_epochs"] == 3
