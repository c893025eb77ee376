"""Stage 2: search the space with the configured strategy and estimator."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import architecture_record, write_csv, write_json, write_text_atomic
from nasflow.errors import NasflowError
from nasflow.loop import Candidate, Checkpoint, Stopping, run_search
from nasflow.measure import count_flops, count_params
from nasflow.oneshot.search import OneShotStrategy
from nasflow.search_spaces.base import Architecture
from nasflow.search_spaces.nb201 import NB201Architecture
from nasflow.tabular.nb201 import load_table
from nasflow.tracking import Tracker, git_commit
from nasflow.training import InMemoryData

log = logging.getLogger("nasflow.search")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Search, then write the best architecture, the history and a summary to ``paths.search``.

    Returns:
        The summary (also the stage's DVC metrics).
    """
    # Only train and val are loaded: the test split is never seen while searching.
    data = InMemoryData.load(cfg.paths.prepared, ("train", "val"))
    space = instantiate(cfg.search_space)
    strategy = instantiate(cfg.strategy, space=space)
    tracker: Tracker = instantiate(cfg.tracking)
    if getattr(strategy, "one_shot", False):
        return _run_one_shot(cfg, strategy, data, tracker)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
    executor = instantiate(cfg.executor)

    tags = _tags(cfg, strategy.name, space.name, data)
    log.info(
        "%s search over the %s space (%s architectures), budget %d, on %s",
        strategy.name,
        space.name,
        f"{space.size():,}",
        strategy.budget,
        data.info.name,
    )
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    checkpoint = Checkpoint(cfg.paths.checkpoints, _fingerprint(config, data.info.content_hash))
    resumed = checkpoint.load() if cfg.search.resume else None
    run_id = resumed["meta"].get("run_id") if resumed else None
    name = f"search-{strategy.name}-{space.name}"
    with tracker.run(name, tags, config, resume_run_id=run_id) as run_id:
        checkpoint.meta["run_id"] = run_id
        history = run_search(
            strategy,
            estimator,
            executor,
            cfg.seed,
            lambda candidate: tracker.log_candidate(candidate, space.graphs(candidate.arch)),
            Stopping(cfg.search.max_seconds, cfg.search.patience, cfg.search.max_cost),
            checkpoint,
            resumed,
        )
        # Only full-fidelity results compete: a stopped candidate's score is partial.
        ok = [c for c in history if c.evaluation.status == "ok" and c.evaluation.score is not None]
        if not ok:
            failed = [c for c in history if c.evaluation.status == "failed"]
            raise NasflowError(
                f"no candidate of {len(history)} was evaluated at full fidelity "
                f"({len(failed)} failed; first error: "
                f"{failed[0].evaluation.error if failed else 'none'})"
            )
        best = max(ok, key=lambda c: c.evaluation.score)  # type: ignore[arg-type,return-value]
        statuses = [c.evaluation.status for c in history]
        summary = {
            "best_score": best.evaluation.score,
            "best_params": best.evaluation.params,
            "best_flops": best.evaluation.flops,
            "evaluated": len(history),
            "full_fidelity": len(ok),
            "stopped": statuses.count("stopped"),
            "failed": statuses.count("failed"),
            "proposals": history[-1].proposals,
            "cost_epochs": history[-1].cost,
            "seconds": round(history[-1].elapsed, 2),
        }
        tracker.log_metrics({f"final_{k}": float(v) for k, v in summary.items() if v is not None})
        record = architecture_record(
            space, best.arch, score=best.evaluation.score, search_run_id=run_id
        )
        tracker.log_dict(record, "best_architecture.json")
        _write_outputs(Path(cfg.paths.search), record, history, summary)
    checkpoint.remove()  # the search is complete: a rerun starts afresh
    log.info("best %.4f: %s", best.evaluation.score, best.arch.describe())
    return summary


def _run_one_shot(
    cfg: DictConfig, strategy: OneShotStrategy, data: InMemoryData, tracker: Tracker
) -> dict[str, Any]:
    """A weight-sharing search (DARTS, GDAS, DrNAS, ENAS): one supernet trained once, the
    derived architecture written as a discrete search writes its best, so retrain and
    evaluate run unchanged. The history holds one record per supernet epoch."""
    space = strategy.space
    log.info(
        "%s one-shot search over the %s space on %s", strategy.name, space.name, data.info.name
    )
    tags = _tags(cfg, strategy.name, space.name, data)
    config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    with tracker.run(f"search-{strategy.name}-{space.name}", tags, config) as run_id:

        def on_epoch(record: dict[str, Any]) -> None:
            reference = table_reference(space.from_json(record["arch"]))
            record.update(reference)
            if reference:
                tracker.log_metrics(reference, step=int(record["epoch"]))
            _log_epoch(record)

        result = strategy.search(data, instantiate(cfg.trainer), tracker, on_epoch)
        final = result.epochs[-1]
        network = space.build(result.arch, data.info.input_shape, data.info.num_classes)
        summary = {
            "best_score": result.score,  # the derived network's val accuracy in the supernet
            "best_params": count_params(network),
            "best_flops": count_flops(network, data.info.input_shape),
            "supernet_val_acc": final["val_acc"],
            "parameter_free": final["parameter_free"],
            "epochs": len(result.epochs),
            "seconds": round(result.seconds, 2),
            **table_reference(result.arch),
        }
        tracker.log_metrics({f"final_{k}": float(v) for k, v in summary.items()})
        record = architecture_record(space, result.arch, score=result.score, search_run_id=run_id)
        tracker.log_dict(record, "best_architecture.json")
        out = Path(cfg.paths.search)
        lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in result.epochs)
        write_text_atomic(out / "history.jsonl", lines)
        write_csv(
            out / "progress.csv",
            ["iteration", "score", "best_score", "val_acc", "entropy", "parameter_free"],
            (
                [
                    r["epoch"],
                    r["score"],
                    r["score"],
                    r["val_acc"],
                    r["entropy"],
                    r["parameter_free"],
                ]
                for r in result.epochs
            ),
        )
        write_json(out / "summary.json", summary)
        write_json(out / "best_architecture.json", record)
    log.info("derived %s (val_acc %.4f)", result.arch.describe(), result.score)
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


def table_reference(arch: Architecture) -> dict[str, float]:
    """For an NB201 cell, what the NAS-Bench-201 table says of it (whatever data the
    search ran on): its CIFAR-10 test accuracy after 200 epochs in the benchmark's own
    network and training, and the percentage of the 15,625 cells that beat it. Nothing
    for other spaces."""
    if not isinstance(arch, NB201Architecture):
        return {}
    table = load_table()
    accuracies = table.columns["cifar10_test_acc"]
    accuracy = float(accuracies[table.index_of(arch.describe())])
    return {
        "nb201_cifar10_test_acc": accuracy,
        "nb201_top_percent": round(100.0 * float((accuracies > accuracy).mean()), 3),
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
    out: Path, record: dict[str, Any], history: list[Candidate], summary: dict[str, Any]
) -> None:
    lines = "".join(json.dumps(c.to_json(), sort_keys=True) + "\n" for c in history)
    write_text_atomic(out / "history.jsonl", lines)
    write_csv(
        out / "progress.csv",
        ["iteration", "score", "best_score", "params", "seconds", "status", "cost", "total_cost"],
        (
            [
                c.iteration,
                c.evaluation.score if c.evaluation.score is not None else "",
                c.best_score,
                c.evaluation.params,
                round(c.evaluation.seconds, 3),
                c.evaluation.status,
                c.evaluation.cost,
                c.cost,
            ]
            for c in history
        ),
    )
    write_json(out / "summary.json", summary)
    # Written last: retrain depends on it, so it only appears once everything else has.
    write_json(out / "best_architecture.json", record)
