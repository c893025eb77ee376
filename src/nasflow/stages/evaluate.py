"""Stage 4: score the retrained network on the test split, the first time it is read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from nasflow.artifacts import read_architecture, read_json
from nasflow.errors import NasflowError, first_line
from nasflow.outputs import OutputSet, sha256_file
from nasflow.search_spaces.base import Architecture
from nasflow.tracking import Tracker, git_commit
from nasflow.training import InMemoryData

log = logging.getLogger("nasflow.evaluate")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write test accuracy, per-class accuracy and predictions to ``paths.evaluate``
    (together, once they are also tracked)."""
    # Here, not at the top: export and predict read the retrained network through this
    # module, and torchmetrics loads torchvision (seconds of every such start).
    from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

    outputs = OutputSet(cfg.paths.evaluate, "paths.evaluate", last="metrics.json")
    tracker: Tracker = instantiate(cfg.tracking)  # checks the store
    data = InMemoryData.load(cfg.paths.prepared, ("test",))
    info = data.info
    network, arch, record = retrained_network(cfg, info.input_shape, info.num_classes)

    images, labels = data.splits["test"].tensors
    with torch.no_grad():
        logits = torch.cat([network(batch) for batch in images.split(512)])
    predictions = logits.argmax(dim=1)
    per_class = MulticlassAccuracy(info.num_classes, average=None)(logits, labels)
    confusion = MulticlassConfusionMatrix(info.num_classes)(logits, labels)
    metrics: dict[str, Any] = {
        "test_acc": float((predictions == labels).float().mean()),
        "test_loss": float(F.cross_entropy(logits, labels)),
        "per_class_acc": {
            name: round(float(acc), 6)
            for name, acc in zip(info.class_names, per_class, strict=True)
        },
    }

    tags = {
        "nasflow.stage": "evaluate",
        "nasflow.search_run_id": str(record.get("search_run_id")),
        "nasflow.retrain_run_id": str(record.get("retrain_run_id")),
        "nasflow.arch_id": arch.id,
        "nasflow.dataset": info.name,
        "mlflow.source.git.commit": git_commit(),
    }
    with outputs, tracker.run(f"evaluate-{arch.id}", tags, {"arch": arch.to_json()}):
        outputs.write_json("metrics.json", metrics)
        confusion_file = outputs.write_json(
            "confusion_matrix.json",
            {"classes": list(info.class_names), "matrix": confusion.tolist()},
        )
        predictions_file = outputs.write_csv(
            "predictions.csv",
            ["actual", "predicted"],
            (
                [info.class_names[y], info.class_names[p]]
                for y, p in zip(labels.tolist(), predictions.tolist(), strict=True)
            ),
        )
        tracker.log_metrics({"test_acc": metrics["test_acc"], "test_loss": metrics["test_loss"]})
        tracker.log_metrics({f"test_acc_class_{k}": v for k, v in metrics["per_class_acc"].items()})
        tracker.log_artifact(str(confusion_file))
        tracker.log_artifact(str(predictions_file))
        outputs.commit()
    log.info("test accuracy %.4f on %d images", metrics["test_acc"], len(labels))
    return metrics


def retrained_network(
    cfg: DictConfig, input_shape: Any, num_classes: int
) -> tuple[torch.nn.Module, Architecture, dict[str, Any]]:
    """The retrained network in eval mode, its architecture and model.json's record, from
    ``paths.retrain`` (its checkpoint checked against the hash model.json records)."""
    model_dir = Path(cfg.paths.retrain)
    # Built in the space retrain built it in (which may be stacked larger than the search's).
    model = read_json(model_dir / "model.json", produced_by="retrain")
    built_in = model.get("search_space") if isinstance(model, dict) else None
    space = instantiate(built_in or cfg.search_space)
    arch, record = read_architecture(model_dir / "model.json", space, produced_by="retrain")
    weights = _network_weights(model_dir / "model.ckpt", record.get("checkpoint_sha256"))
    network = space.build(arch, input_shape, num_classes)
    network.load_state_dict(weights)
    network.eval()
    return network, arch, record


def _network_weights(checkpoint: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """The network's weights from the Lightning checkpoint of a ClassifierModule that
    model.json pins by its hash; a NasflowError for a missing, foreign or corrupt one."""
    rerun = "run the retrain stage again"
    if not checkpoint.is_file():
        raise NasflowError(f"{checkpoint} not found; run the retrain stage first")
    if sha256 is None:
        raise NasflowError(
            f"{checkpoint.parent / 'model.json'} records no checkpoint hash (written by an "
            f"older nasflow), so {checkpoint} cannot be checked; {rerun}"
        )
    if sha256_file(checkpoint) != sha256:
        raise NasflowError(
            f"{checkpoint} is not the checkpoint {checkpoint.parent / 'model.json'} describes "
            f"(its SHA-256 differs); {rerun}"
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as error:
        raise NasflowError(f"{checkpoint} cannot be read ({first_line(error)}); {rerun}") from None
    prefix = "network."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
