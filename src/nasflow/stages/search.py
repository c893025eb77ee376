"""Stage 2: search the space with the configured strategy (and, for an ask/tell strategy,
estimator and executor)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import architecture_record, write_csv, write_json, write_text_atomic
from nasflow.errors import check_optional_int
from nasflow.loop import Checkpoint, Stopping
from nasflow.searching import SearchContext, Searcher, SearchOutcome
from nasflow.tracking import Tracker, git_commit
from nasflow.training import InMemoryData

log = logging.getLogger("nasflow.search")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Search, then write the best architecture, the history and a summary to ``paths.search``.

    Any strategy, ask/tell or one-shot, runs through the one interface of
    `nasflow.searching`: the stage builds its context and writes its outcome.

    Returns:
        The summary (also the stage's DVC metrics).
    """
    # Only train and val are loaded: the test split is never seen while searching.
    data = InMemoryData.load(cfg.paths.prepared, ("train", "val"))
    space = instantiate(cfg.search_space)
    strategy: Searcher = instantiate(cfg.strategy, space=space)
    tracker: Tracker = instantiate(cfg.tracking)
    trainer = instantiate(cfg.trainer)
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    checkpoint = Checkpoint(cfg.paths.checkpoints, _fingerprint(config, data.info.content_hash))
    resumed = checkpoint.load() if cfg.search.resume else None
    run_id = resumed["meta"].get("run_id") if resumed else None
    tags = _tags(cfg, strategy.name, space.name, data)
    name = f"search-{strategy.name}-{space.name}"
    with tracker.run(name, tags, config, resume_run_id=run_id) as run_id:
        checkpoint.meta["run_id"] = run_id

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
            estimator=lambda: instantiate(cfg.estimator, space=space, data=data, trainer=trainer),
            executor=lambda: instantiate(cfg.executor),
            stopping=Stopping(
                cfg.search.max_seconds,
                cfg.search.patience,
                cfg.search.max_cost,
                check_optional_int(
                    "search.max_consecutive_failures", cfg.search.max_consecutive_failures
                ),
            ),
            checkpoint=checkpoint,
            resumed=resumed,
            failure_log=Path(cfg.paths.search) / "failures.log",
            on_epoch=on_epoch,
        )
        outcome = strategy.run(context)
        summary = {**outcome.summary, **space.reference(outcome.arch)}
        tracker.log_metrics({f"final_{k}": float(v) for k, v in summary.items() if v is not None})
        record = architecture_record(space, outcome.arch, score=outcome.score, search_run_id=run_id)
        tracker.log_dict(record, "best_architecture.json")
        _write_outputs(Path(cfg.paths.search), record, outcome, summary)
    checkpoint.remove()  # the search is complete: a rerun starts afresh
    log.info("best %.4f: %s", outcome.score, outcome.arch.describe())
    return summary


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
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_outputs(
    out: Path, record: dict[str, Any], outcome: SearchOutcome, summary: dict[str, Any]
) -> None:
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in outcome.history)
    write_text_atomic(out / "history.jsonl", lines)
    write_csv(out / "progress.csv", outcome.progress_columns, outcome.progress)
    write_json(out / "summary.json", summary)
    # Written last: retrain depends on it, so it only appears once everything else has.
    write_json(out / "best_architecture.json", record)
