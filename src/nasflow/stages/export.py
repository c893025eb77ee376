"""Stage 5: the retrained network in the formats people ship, checked against PyTorch.

Writes to ``paths.export``:

* ``model.onnx``: ONNX with a dynamic batch dimension (input ``images``, output
  ``logits``), through torch's exporter; it runs with ONNX Runtime and numpy alone.
* ``model.torchscript.pt``: TorchScript, traced (``torch.jit.load`` runs it without
  nasflow).
* ``preprocessing.json``: what an image needs before either sees it, as the prepare
  stage recorded it (input shape, per-channel mean and std, class names).
* ``metrics.json``: each format's largest absolute difference from PyTorch's logits on
  the test batch (at most ``export.tolerance``, or the stage fails and writes nothing),
  file sizes, parameters, FLOPs, and each format's latency measured the same way
  (``latency.*``: median of timed batches after untimed ones).

The ONNX model is also logged to MLflow as a model (ONNX flavour) with its signature and
an input example.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from nasflow.errors import NasflowError, first_line
from nasflow.measure import check_latency_device, count_flops, count_params, latency_ms, median_ms
from nasflow.outputs import OutputSet
from nasflow.stages.evaluate import retrained_network
from nasflow.tracking import Tracker, git_commit
from nasflow.training import InMemoryData

log = logging.getLogger("nasflow.export")

ONNX, TORCHSCRIPT = "model.onnx", "model.torchscript.pt"
INPUT, OUTPUT = "images", "logits"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Export the retrained network; the metrics (also the stage's DVC metrics)."""
    settings = cfg.export
    tolerance = float(settings.tolerance)
    latency = dict(cfg.latency)
    check_latency_device(str(latency["device"]))
    outputs = OutputSet(cfg.paths.export, "paths.export", last="metrics.json")
    tracker: Tracker = instantiate(cfg.tracking)  # checks the store
    data = InMemoryData.load(cfg.paths.prepared, ("test",))
    info = data.info
    network, arch, record = retrained_network(cfg, info.input_shape, info.num_classes)
    images = data.splits["test"].tensors[0][: int(settings.test_batch)]
    with torch.inference_mode():
        expected = network(images).numpy()

    tags = {
        "nasflow.stage": "export",
        "nasflow.retrain_run_id": str(record.get("retrain_run_id")),
        "nasflow.arch_id": arch.id,
        "nasflow.dataset": info.name,
        "mlflow.source.git.commit": git_commit(),
    }
    with outputs:
        onnx_path, script_path = outputs.path(ONNX), outputs.path(TORCHSCRIPT)
        export_onnx(network, images, onnx_path)
        export_torchscript(network, images, script_path)
        session = onnx_session(onnx_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation
            script = torch.jit.load(str(script_path))
        differences = {
            "onnx": _max_difference(session.run(None, {INPUT: images.numpy()})[0], expected),
            "torchscript": _max_difference(_script_logits(script, images), expected),
        }
        if (worst := max(differences, key=lambda k: differences[k])) and differences[
            worst
        ] > tolerance:
            raise NasflowError(
                f"the {worst} export differs from PyTorch by {differences[worst]:.3g} on the test "
                f"batch (export.tolerance={tolerance:g}); nothing was written"
            )
        shape = tuple(info.input_shape)
        metrics: dict[str, Any] = {
            "max_abs_difference": differences,
            "test_batch": len(images),
            "bytes": {"onnx": onnx_path.stat().st_size, "torchscript": script_path.stat().st_size},
            "params": count_params(network),
            "flops": count_flops(network, shape),
            "latency_ms": {
                "torch": latency_ms(network, shape, **latency),
                "torchscript": latency_ms(script, shape, **latency),
                "onnxruntime": onnx_latency_ms(onnx_path, shape, **latency),
            },
            "latency": latency,
        }
        outputs.write_json(
            "preprocessing.json",
            {
                "input": INPUT,
                "output": OUTPUT,
                "input_shape": list(shape),
                "mean": list(info.mean),
                "std": list(info.std),
                "class_names": list(info.class_names),
                "dataset": info.name,
                "arch": record.get("description"),
            },
        )
        outputs.write_json("metrics.json", metrics)
        with tracker.run(f"export-{arch.id}", tags, {"arch": arch.to_json(), "latency": latency}):
            tracker.log_metrics(
                {
                    "onnx_max_abs_difference": differences["onnx"],
                    "torchscript_max_abs_difference": differences["torchscript"],
                    **{f"latency_ms_{k}": v for k, v in metrics["latency_ms"].items()},
                    **{f"bytes_{k}": float(v) for k, v in metrics["bytes"].items()},
                }
            )
            tracker.log_onnx_model(str(onnx_path), images[:4].numpy(), expected[:4])
            tracker.log_artifact(str(script_path))
            outputs.commit()
    log.info(
        "exported %s: ONNX and TorchScript within %.2g of PyTorch; latency (ms) %s",
        arch.describe(), max(differences.values()),
        ", ".join(f"{k} {v:.3f}" for k, v in metrics["latency_ms"].items()),
    )  # fmt: skip
    return metrics


def export_onnx(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """`network` as ONNX at `path`, the batch dimension dynamic; a NasflowError if torch's
    exporter cannot trace it."""
    try:
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                network,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                external_data=False,  # one self-contained file
                verbose=False,
            )
    except Exception as error:
        raise NasflowError(
            f"the network could not be exported to ONNX ({first_line(error)})"
        ) from None


def export_torchscript(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """`network` traced to TorchScript at `path`."""
    with warnings.catch_warnings():
        # torch 2.14 deprecates TorchScript in favour of torch.export; it still is what
        # C++ and mobile runtimes load.
        warnings.simplefilter("ignore", FutureWarning)
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(network, example)
        traced.save(str(path))


def onnx_session(path: Path, threads: int = 1) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency_ms(
    path: Path,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 30,
    device: str = "cpu",
) -> float:
    """ONNX Runtime's median time (ms) for one batch on the CPU, timed as `latency_ms`."""
    session = onnx_session(path, threads)
    batch = {INPUT: np.zeros((batch_size, *input_shape), dtype=np.float32)}
    return median_ms(lambda: session.run(None, batch), warmup, repeats)


def _script_logits(script: Any, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return script(images).numpy()  # type: ignore[no-any-return]


def _max_difference(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(found, dtype=np.float64) - expected).max())


class _quiet_exporter:
    """Silence torch.onnx's progress lines (it logs each pass at INFO) for a block."""

    def __enter__(self) -> None:
        self.loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for logger, level in zip(self.loggers, self.levels, strict=True):
            logger.setLevel(level)
