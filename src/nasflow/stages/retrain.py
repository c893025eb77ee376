"""Stage 3: train the best architecture from scratch on train+val, for longer."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nasflow.artifacts import (
    architecture_from_record,
    architecture_record,
    read_architecture,
    read_json,
    read_jsonl,
)
from nasflow.errors import NasflowError, check_int
from nasflow.interrupts import keep
from nasflow.locks import LOCK_NAME, ProcessLock
from nasflow.measure import count_flops, count_params
from nasflow.outputs import OutputSet, sha256_file
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.selection import parse_rule, ranked, select
from nasflow.tracking import OWNER_TAG, Tracker, git_commit
from nasflow.training import InMemoryData, InMemoryDataModule, fit
from nasflow.training.augment import configured
from nasflow.training.checks import check_optimizers, check_trainer

log = logging.getLogger("nasflow.retrain")


def retrain_space(cfg: DictConfig) -> SearchSpace:
    """The search space with ``retrain.search_space`` applied: the retrained network's.

    A cell space's architecture is the cell, so the same architecture builds a network
    stacked larger (more cells, more channels) than the one the search trained.
    """
    changes = cfg.retrain.get("search_space") or {}
    unknown = sorted(set(changes) - set(cfg.search_space) - {"_target_"})
    if unknown:
        settings = ", ".join(k for k in cfg.search_space if k != "_target_")
        raise NasflowError(
            f"retrain.search_space.{unknown[0]} is not a setting of the search space "
            f"(settings: {settings})"
        )
    return instantiate(OmegaConf.merge(cfg.search_space, changes))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Retrain the search's best architecture; write the checkpoint to ``paths.retrain``.

    The outputs (model.ckpt, metrics.json, model.json, which records the checkpoint's
    hash) are written aside and put in place together once training and tracking have
    succeeded, model.json last: a failed or interrupted retrain leaves the previous model
    as it was.
    """
    epochs = check_int("retrain.epochs", cfg.retrain.epochs)
    batch_size = check_int("retrain.batch_size", cfg.retrain.batch_size)
    parse_rule(cfg.retrain.select)  # a bad rule fails before any work
    check_optimizers(cfg.retrain, "retrain")
    devices, strategy = cfg.retrain.devices, cfg.retrain.strategy
    where = f"trainer with retrain.devices={devices} and retrain.strategy={strategy}"
    check_trainer(_trainer_node(cfg), "trainer" if (devices, strategy) == (1, "auto") else where)
    if _replica():
        return _train_replica(cfg, epochs, batch_size)
    top_k = check_int("retrain.top_k", cfg.retrain.top_k)
    if top_k > 1 and (devices, strategy) != (1, "auto"):
        raise NasflowError(
            f"retrain.top_k={top_k} trains one model after another on one device; with "
            f"retrain.devices={devices} retrain.strategy={strategy} use retrain.top_k=1"
        )
    outputs = OutputSet(cfg.paths.retrain, "paths.retrain", last="model.json")
    lock = ProcessLock(outputs.folder / LOCK_NAME, f"the retrain outputs {outputs.folder}")
    tracker: Tracker = instantiate(cfg.tracking)  # checks the store
    space = retrain_space(cfg)
    models = chosen_architectures(cfg, space, top_k)
    # Train and val together: the search has already used val to choose. Test stays unseen.
    data = _training_data(cfg)
    with lock, outputs:
        # A retrain that died without a word (kill -9) left its run RUNNING.
        tracker.close_stale(lock.owner)
        keep(f"the previous outputs in {outputs.folder} are unchanged; run retrain again")
        top = []
        for rank, (arch, record) in enumerate(models, 1):
            prefix = "" if rank == 1 else f"top{rank}."  # the selected model is model.*
            log.info("retraining %s for %d epochs", arch.describe(), epochs)
            tags = {
                "nasflow.stage": "retrain",
                OWNER_TAG: lock.owner,
                "nasflow.search_run_id": str(record.get("search_run_id")),
                "nasflow.arch_id": arch.id,
                "nasflow.dataset": data.info.name,
                "mlflow.source.git.commit": git_commit(),
            }
            if top_k > 1:
                tags["nasflow.top_rank"] = str(rank)
            params = {
                "retrain": OmegaConf.to_container(cfg.retrain, resolve=True),
                "arch": arch.to_json(),
                "search_space": OmegaConf.to_container(cfg.search_space, resolve=True),
                "seed": cfg.seed,
                "augment": str(data.augment or "none"),
            }
            with tracker.run(f"retrain-{arch.id}", tags, params) as run_id:
                lock.record(run_id=run_id)
                checkpoint = f"{prefix}model.ckpt"
                metrics = _train(
                    cfg, space, arch, data, epochs, batch_size, tracker, outputs, checkpoint
                )
                outputs.write_json(f"{prefix}metrics.json", metrics)
                outputs.write_json(
                    f"{prefix}model.json",
                    {
                        **record,
                        "retrain_run_id": run_id,
                        "epochs": epochs,
                        "augment": params["augment"],
                        "checkpoint": checkpoint,
                        "checkpoint_sha256": sha256_file(outputs.path(checkpoint)),
                        # How to build the network again (evaluate does): the space it
                        # was built in.
                        "search_space": OmegaConf.to_container(
                            OmegaConf.merge(
                                cfg.search_space, cfg.retrain.get("search_space") or {}
                            ),
                            resolve=True,
                        ),
                    },
                )
                top.append(
                    {"rank": rank, "model": f"{prefix}model.json", "id": arch.id,
                     "description": arch.describe(), "score": record.get("score"), **metrics}
                )  # fmt: skip
                if rank == 1:
                    first = metrics
                if rank == len(models):
                    if top_k > 1:
                        outputs.write_json("top.json", top)
                    outputs.commit()
        _remove_stale_runners_up(outputs.folder, len(models))
    return first


def _remove_stale_runners_up(folder: Path, kept: int) -> None:
    """Remove the files of ranks beyond `kept` that an earlier, larger top_k left."""
    for path in folder.glob("top*.*"):
        rank = path.name.split(".")[0][3:]
        if path.name == "top.json":
            if kept == 1:
                path.unlink(missing_ok=True)
        elif rank.isdigit() and int(rank) > kept:
            path.unlink(missing_ok=True)


def chosen_architectures(
    cfg: DictConfig, space: SearchSpace, top_k: int = 1
) -> list[tuple[Architecture, dict[str, Any]]]:
    """What retrain trains, from the search's outputs: the architecture ``retrain.select``
    picks, then, for ``top_k`` > 1, the runners-up (`nasflow.selection.ranked`); each
    with its record in ``best_architecture.json``'s form (the selected one says why it
    was chosen, as ``selected``). Fewer than `top_k` when the search has fewer."""
    folder = Path(cfg.paths.search)
    arch, best = read_architecture(folder / "best_architecture.json", space, produced_by="search")
    if parse_rule(cfg.retrain.select)[0] == "best" and top_k == 1:
        return [(arch, best)]
    source = folder / "history.jsonl"
    history = read_jsonl(source, produced_by="search")
    pareto = read_json(folder / "pareto.json", "search")

    def model(record: dict[str, Any], **extra: Any) -> tuple[Architecture, dict[str, Any]]:
        found = architecture_from_record(
            {**best, "architecture": record["architecture"]}, space, source
        )
        return found, architecture_record(
            space, found, score=record.get("score"), search_run_id=best.get("search_run_id"),
            searched_params=record.get("params"), **extra,
        )  # fmt: skip

    picked = select(cfg.retrain.select, history, pareto)
    if picked is None:  # best: the search's own record, and its line in the history
        models = [(arch, best)]
        first = next((r for r in history if r.get("id") == best.get("id")), best)
    else:
        log.info("retrain.select=%s: %s", cfg.retrain.select, picked["selected"])
        models = [model(picked, selected=picked["selected"], best_score=best.get("score"))]
        first = picked
    models += [
        model(record) for record in ranked(cfg.retrain.select, history, pareto, first, top_k)[1:]
    ]
    if len(models) < top_k:
        log.info("retrain.top_k=%d: the search has %d to retrain", top_k, len(models))
    return models


def _trainer_node(cfg: DictConfig) -> DictConfig:
    """The Trainer of the final training: the candidates' with retrain's devices and
    strategy."""
    node = OmegaConf.create(OmegaConf.to_container(cfg.trainer, resolve=True))
    assert isinstance(node, DictConfig)
    node.devices, node.strategy = cfg.retrain.devices, cfg.retrain.strategy
    return node


def _replica() -> bool:
    """Whether this process is one that Lightning's ``ddp`` strategy started for another
    device: it runs the stage's script again (with ``LOCAL_RANK`` set), and only trains."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("RANK", "0")) > 0


def _training_data(cfg: DictConfig) -> InMemoryData:
    """Train and val, with the augmentation ``data.augment`` gives the final training."""
    data = InMemoryData.load(cfg.paths.prepared, ("train", "val"))
    data.augment = configured(cfg.data.get("augment"))
    return data


def _fit(
    cfg: DictConfig,
    space: SearchSpace,
    arch: Architecture,
    data: InMemoryData,
    epochs: int,
    batch_size: int,
    logger: Any,
) -> tuple[Any, Any, list[dict[str, float]]]:
    """Train the network (in every process of a distributed training); the network, the
    trainer and the per-epoch metrics (over all processes)."""
    info = data.info
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        network = space.build(arch, info.input_shape, info.num_classes)
        datamodule = InMemoryDataModule(
            [data.splits["train"], data.splits["val"]],
            None,
            batch_size,
            cfg.seed,
            augment=data.augment,
        )
        optimizer = instantiate(cfg.retrain.optimizer)
        scheduler = instantiate(cfg.retrain.scheduler) if cfg.retrain.scheduler else None
        _, trainer, history = fit(
            network,
            datamodule,
            info.num_classes,
            epochs,
            instantiate(_trainer_node(cfg)),
            optimizer,
            scheduler,
            logger=logger,
        )
    return network, trainer, history


def _train_replica(cfg: DictConfig, epochs: int, batch_size: int) -> dict[str, Any]:
    """A distributed training's process for another device: train beside the first
    process and take part in its checkpoint (which that one writes); nothing else. The
    outputs, the lock and the tracking are the first process's."""
    space = retrain_space(cfg)
    arch, _ = chosen_architectures(cfg, space)[0]
    data = _training_data(cfg)
    _, trainer, _ = _fit(cfg, space, arch, data, epochs, batch_size, logger=False)
    with tempfile.TemporaryDirectory() as unused:  # only the first process writes
        trainer.save_checkpoint(Path(unused) / "model.ckpt")
    return {}


def _train(
    cfg: DictConfig,
    space: SearchSpace,
    arch: Architecture,
    data: InMemoryData,
    epochs: int,
    batch_size: int,
    tracker: Tracker,
    outputs: OutputSet,
    checkpoint: str = "model.ckpt",
) -> dict[str, Any]:
    """Train the network, stage its checkpoint in `outputs` as `checkpoint`, log it; its
    metrics."""
    info = data.info
    start = time.perf_counter()
    network, trainer, history = _fit(
        cfg, space, arch, data, epochs, batch_size, tracker.lightning_logger()
    )
    seconds = time.perf_counter() - start
    # Every process of a distributed training takes part; the first one writes.
    trainer.save_checkpoint(outputs.path(checkpoint))
    final = history[-1]
    metrics = {
        "train_loss": final["train_loss"],
        "train_acc": final["train_acc"],
        "params": count_params(network),
        "flops": count_flops(network, info.input_shape),
        "seconds": round(seconds, 2),
    }
    tracker.log_metrics(metrics)
    example = data.splits["val"].tensors[0][:4].numpy()
    tracker.log_model(network.cpu(), example)
    log.info("train acc %.4f after %d epochs (%.1fs)", final["train_acc"], len(history), seconds)
    return metrics
