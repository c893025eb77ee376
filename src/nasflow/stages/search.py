"""Stage 2: search the space with the configured strategy (and, for an ask/tell strategy,
estimator and executor)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import architecture_record
from nasflow.constraints import CHEAP, Screen, parse_constraints
from nasflow.errors import NasflowError, check_optional_int
from nasflow.inheritance import WeightStore
from nasflow.interrupts import keep
from nasflow.locks import ProcessLock
from nasflow.loop import Checkpoint, Stopping
from nasflow.measure import cheap_measures, check_latency_device
from nasflow.outputs import OutputSet, check_writable
from nasflow.pareto import (
    Objective,
    front_objectives,
    parse_objectives,
    reference_point,
    scalarization,
)
from nasflow.search_strategies.base import SearchStrategy
from nasflow.searching import SearchContext, Searcher, SearchOutcome
from nasflow.tracking import OWNER_TAG, Tracker, TrackingError, git_commit
from nasflow.training import InMemoryData
from nasflow.training.augment import configured
from nasflow.training.checks import check_optimizers, check_trainer

log = logging.getLogger("nasflow.search")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Search, then write the best architecture, the history and a summary to ``paths.search``.

    Any strategy, ask/tell or one-shot, runs through the one interface of
    `nasflow.searching`: the stage builds its context and writes its outcome. The output
    locations and the tracking store are checked before any work; one process at a time
    holds the search's checkpoint; the outputs are written together at the end.

    Returns:
        The summary (also the stage's DVC metrics).
    """
    stopping = Stopping(
        cfg.search.max_seconds,
        cfg.search.patience,
        cfg.search.max_cost,
        check_optional_int("search.max_consecutive_failures", cfg.search.max_consecutive_failures),
    )
    # Torch and Lightning check their settings when they build an optimizer or a Trainer:
    # here once, before any work, not in every candidate.
    check_optimizers(cfg.estimator, "estimator")
    check_optimizers(cfg.strategy, "strategy")
    check_trainer(cfg.trainer)
    outputs = OutputSet(cfg.paths.search, "paths.search", last="best_architecture.json")
    check_writable(cfg.paths.checkpoints, "paths.checkpoints")
    tracker: Tracker = instantiate(cfg.tracking)  # checks the store
    # Only train and val are loaded: the test split is never seen while searching.
    data = InMemoryData.load(cfg.paths.prepared, ("train", "val"))
    data.augment = configured(cfg.data.get("augment"), candidates=True)
    space = instantiate(cfg.search_space)
    strategy: Searcher = instantiate(cfg.strategy, space=space)
    # What the search optimises and may train: checked before any work.
    screen, objectives, reference = _objectives_and_screen(cfg, space, data)
    scalarize = scalarization(cfg.search.scalarize, list(cfg.search.weights), objectives, reference)
    if scalarize is not None and hasattr(strategy, "objectives"):
        raise NasflowError(
            f"strategy={strategy.name} optimises search.objectives itself; "
            "search.scalarize is for the single-objective strategies"
        )
    trainer = instantiate(cfg.trainer)
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    checkpoint = Checkpoint(cfg.paths.checkpoints, _fingerprint(config, data.info.content_hash))
    weights = _weight_store(cfg, strategy, checkpoint)
    lock = ProcessLock(
        checkpoint.path.with_suffix(".lock"), f"the search checkpoint {checkpoint.path}"
    )
    with lock:
        resumed = checkpoint.load() if cfg.search.resume else None
        if resumed is None and weights is not None:
            weights.clear()  # a search that starts afresh inherits nothing from an old one
        run_id = resumed["meta"].get("run_id") if resumed else None
        # A run opened under this lock and still open was left by a process that died
        # (kill -9), unless it is the one this search continues.
        tracker.close_stale(lock.owner, keep=run_id)
        tags = {**_tags(cfg, strategy.name, space.name, data), OWNER_TAG: lock.owner}
        name = f"search-{strategy.name}-{space.name}"
        kept = f"the checkpoint {checkpoint.path} keeps what finished; run the search again"
        with tracker.run(name, tags, config, resume_run_id=run_id) as run_id:
            checkpoint.meta["run_id"] = run_id
            lock.record(run_id=run_id)
            keep(f"{kept} to resume")

            def on_epoch(record: dict[str, Any]) -> None:
                reference = space.reference(space.from_json(record["arch"]))
                record.update(reference)
                if reference:
                    tracker.log_metrics(reference, step=int(record["epoch"]))
                _log_epoch(record)

            context = SearchContext(
                data=data,
                trainer=trainer,
                tracker=tracker,
                seed=cfg.seed,
                estimator=lambda: instantiate(
                    cfg.estimator, space=space, data=data, trainer=trainer
                ),
                executor=lambda: instantiate(cfg.executor),
                stopping=stopping,
                checkpoint=checkpoint,
                resumed=resumed,
                failure_log=Path(cfg.paths.search) / "failures.log",
                on_epoch=on_epoch,
                screen=screen,
                objectives=objectives,
                reference=reference,
                scalarize=scalarize,
                weights=weights,
            )
            try:
                outcome = strategy.run(context)
                summary = {**outcome.summary, **space.reference(outcome.arch)}
                finals = {f"final_{k}": float(v) for k, v in summary.items() if v is not None}
                tracker.log_metrics(finals)
                record = architecture_record(
                    space, outcome.arch, score=outcome.score, search_run_id=run_id
                )
                tracker.log_dict(record, "best_architecture.json")
            except TrackingError as error:
                # Nothing finished is lost: the checkpoint holds it, and a rerun catches
                # the tracking up (what a dead store did not record is logged then).
                raise TrackingError(f"{error}; {kept} once the store works") from error
            _write_outputs(outputs, record, outcome, summary)
        checkpoint.remove()  # the search is complete: a rerun starts afresh
        lock.path.unlink(missing_ok=True)
    log.info("best %.4f: %s", outcome.score, outcome.arch.describe())
    if outcome.pareto:
        log.info(
            "the front over %s (%d, pareto.json):", ", ".join(outcome.pareto_objectives),
            len(outcome.pareto),
        )  # fmt: skip
        for member in outcome.pareto:
            values = "  ".join(f"{k} {v:.4g}" for k, v in member["objectives"].items())
            log.info("  #%d  %s  %s", member["iteration"] + 1, values, member["description"])
    return summary


def _weight_store(
    cfg: DictConfig, strategy: Searcher, checkpoint: Checkpoint
) -> WeightStore | None:
    """Where the search keeps candidates' trained weights (beside its checkpoint, as long
    as the checkpoint's fingerprint names the same search), or None when it keeps none:
    ``search.keep_weights``, or by default as many as the strategy inherits from."""
    needed = strategy.weights_kept() if isinstance(strategy, SearchStrategy) else 0
    keep = needed if cfg.search.keep_weights is None else int(cfg.search.keep_weights)
    if needed and not keep:
        raise NasflowError(
            f"search.keep_weights=0, but strategy={strategy.name} starts candidates from their "
            f"parents' trained weights; set it to at least 1 (null: {needed}, what it needs)"
        )
    return WeightStore(checkpoint.path.with_suffix(".weights"), keep) if keep else None


def _objectives_and_screen(
    cfg: DictConfig, space: Any, data: InMemoryData
) -> tuple[Screen | None, list[Objective], list[float] | None]:
    """The search's objectives, its hypervolume reference point (None when not given)
    and the screen that measures proposals before training (None when no constraint or
    objective needs a cheap measure); bad settings fail here, before any work."""
    objectives = parse_objectives(cfg.search.objectives)
    if len(objectives) == 1:
        raise NasflowError(
            f"search.objectives names one objective ({objectives[0]}); name two or more "
            "for a front, e.g. [val_acc:max,params:min], or none to search on the score"
        )
    reference = None
    if cfg.search.reference:
        front = front_objectives(objectives)
        reference = reference_point(cfg.search.reference, front, "search.reference")
    constraints = parse_constraints(cfg.search.constraints)
    needed = sorted({c.name for c in constraints} | {o.name for o in objectives} & set(CHEAP))
    if not needed:
        return None, objectives, reference
    info = data.info
    latency = cast(dict[str, Any], OmegaConf.to_container(cfg.latency, resolve=True))
    check_latency_device(str(latency["device"]))

    def measure(arch: Any, names: Sequence[str]) -> dict[str, float]:
        return cheap_measures(
            lambda: space.build(arch, info.input_shape, info.num_classes),
            info.input_shape,
            names,
            latency,
        )

    return Screen(measure, constraints, needed), objectives, reference


def _tags(cfg: DictConfig, strategy: str, space: str, data: InMemoryData) -> dict[str, str]:
    """The search run's MLflow tags."""
    return {
        "nasflow.stage": "search",
        "nasflow.strategy": strategy,
        "nasflow.search_space": space,
        "nasflow.dataset": data.info.name,
        "nasflow.data_hash": data.info.content_hash,
        "nasflow.seed": str(cfg.seed),
        "mlflow.source.git.commit": git_commit(),
    }


def _log_epoch(record: dict[str, Any]) -> None:
    reference = ""
    if "nb201_cifar10_test_acc" in record:
        reference = (
            f"  (NB201 table: CIFAR-10 test {record['nb201_cifar10_test_acc']:.2f}, "
            f"top {record['nb201_top_percent']:.1f} %)"
        )
    log.info(
        "epoch %d  supernet val_acc %.4f  derived val_acc %.4f  entropy %.3f  "
        "parameter-free ops %d  %s%s",
        record["epoch"] + 1,
        record["val_acc"],
        record["score"],
        record["entropy"],
        record["parameter_free"],
        record["arch_description"],
        reference,
    )


def _fingerprint(config: dict[str, Any], data_hash: str) -> str:
    """What identifies a search for resuming: everything that changes what it proposes or
    how candidates score, but not the stopping rules or where results go."""
    keys = ("seed", "search_space", "strategy", "estimator", "trainer", "executor")
    identity = {key: config[key] for key in keys} | {"data": data_hash}
    settings = config.get("search", {})
    if constraints := settings.get("constraints"):  # they change what trains
        identity |= {"constraints": constraints, "latency": config.get("latency")}
    if settings.get("scalarize"):  # it changes what the strategy learns
        learnt = ("scalarize", "weights", "objectives", "reference")
        identity |= {key: settings.get(key) for key in learnt}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_outputs(
    outputs: OutputSet, record: dict[str, Any], outcome: SearchOutcome, summary: dict[str, Any]
) -> None:
    """Write the outputs together, best_architecture.json (what retrain reads) last."""
    with outputs:
        outputs.write_jsonl("history.jsonl", outcome.history)
        outputs.write_csv("progress.csv", outcome.progress_columns, outcome.progress)
        outputs.write_jsonl("filtered.jsonl", outcome.filtered)
        outputs.write_json(
            "pareto.json", {"objectives": outcome.pareto_objectives, "front": outcome.pareto}
        )
        # The DVC plot reads fixed columns (first against second objective); each
        # objective also has its own, by name.
        names = list(outcome.pareto[0]["objectives"]) if outcome.pareto else []
        rows = [
            [
                r["iteration"],
                *(list(r["objectives"].values())[:2]),
                *(r["objectives"][n] for n in names),
                r["description"],
            ]
            for r in outcome.pareto
        ]
        columns = ["iteration", "first_objective", "second_objective", *names, "description"]
        outputs.write_csv("pareto.csv", columns, rows)
        outputs.write_json("summary.json", summary)
        outputs.write_json("best_architecture.json", record)
