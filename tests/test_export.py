"""The export stage: ONNX and TorchScript of the retrained network, checked against
PyTorch, logged to MLflow, and the ONNX file runnable with ONNX Runtime and numpy alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from nasflow.errors import NasflowError
from nasflow.stages import evaluate, export, retrain, search

# Runs an ONNX file on zeros of each batch size with a finder that refuses torch and
# nasflow, so the file needs nothing but onnxruntime and numpy.
ONNX_ONLY = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "nasflow"):
                raise ImportError(f"{name} may not be imported here")

    sys.meta_path.insert(0, Refuse())
    import numpy as np
    import onnxruntime

    path, shape = sys.argv[1], json.loads(sys.argv[2])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = [session.run(None, {"images": np.ones((b, *shape), np.float32)})[0].tolist()
           for b in (1, 5)]
    try:
        import torch
    except ImportError:
        print(json.dumps(out))
    """
)


@pytest.fixture
def retrained(tiny_cfg: DictConfig) -> DictConfig:
    tiny_cfg.paths.export = str(Path(tiny_cfg.paths.evaluate).parent / "export")
    search.run(tiny_cfg)
    retrain.run(tiny_cfg)
    evaluate.run(tiny_cfg)
    return tiny_cfg


@pytest.mark.slow
def test_export_writes_formats_that_agree_with_pytorch_and_runs_without_it(
    retrained: DictConfig,
) -> None:
    cfg = retrained
    metrics = export.run(cfg)
    out = Path(cfg.paths.export)
    assert {p.name for p in out.iterdir()} >= {
        "model.onnx",
        "model.torchscript.pt",
        "preprocessing.json",
        "metrics.json",
    }
    assert not list(out.glob("*.data")), "the ONNX file holds its weights"
    assert metrics["max_abs_difference"]["onnx"] <= 1e-4
    assert metrics["max_abs_difference"]["torchscript"] <= 1e-4
    assert metrics["bytes"]["onnx"] == (out / "model.onnx").stat().st_size
    assert all(v > 0 for v in metrics["latency_ms"].values())
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))

    meta = json.loads((Path(cfg.paths.prepared) / "meta.json").read_text())
    preprocessing = json.loads((out / "preprocessing.json").read_text())
    assert preprocessing["mean"] == meta["mean"] and preprocessing["std"] == meta["std"]
    assert preprocessing["class_names"] == meta["class_names"]

    # ONNX Runtime alone, any batch size, the logits PyTorch gives.
    shape = meta["input_shape"]
    done = subprocess.run(
        [sys.executable, "-c", ONNX_ONLY, str(out / "model.onnx"), json.dumps(shape)],
        capture_output=True,
        text=True,
        check=True,
    )
    single, five = (np.array(x) for x in json.loads(done.stdout))
    assert single.shape == (1, len(meta["class_names"])) and five.shape[0] == 5
    network, _, _ = evaluate.retrained_network(cfg, shape, meta["num_classes"])
    with torch.no_grad():
        expected = network(torch.ones(5, *shape)).numpy()
    assert np.abs(five - expected).max() <= 1e-4
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    assert torch.allclose(
        scripted(torch.ones(2, *shape)), torch.from_numpy(expected[:2]), atol=1e-4
    )

    client = mlflow.tracking.MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`nasflow.stage` = 'export'")
    (run,) = runs
    assert run.data.metrics["onnx_max_abs_difference"] <= 1e-4
    models = client.search_logged_models([experiment.experiment_id])
    assert any(m.source_run_id == run.info.run_id and m.name == "onnx_model" for m in models)


@pytest.mark.slow
def test_an_export_beyond_the_tolerance_fails_and_writes_nothing(retrained: DictConfig) -> None:
    retrained.export.tolerance = 1e-30
    with pytest.raises(NasflowError, match=r"differs from PyTorch by .* nothing was written"):
        export.run(retrained)
    assert not Path(retrained.paths.export, "metrics.json").exists()


def _write_test_pngs(cfg: DictConfig, folder: Path, count: int) -> None:
    """The first `count` test images as PNGs (uint8, as prepared), in test order."""
    from PIL import Image

    images = torch.load(Path(cfg.paths.prepared) / "test.pt", weights_only=True)["images"]
    folder.mkdir()
    for i, image in enumerate(images[:count]):
        array = image.numpy()
        mode = "L" if array.shape[0] == 1 else "RGB"
        picture = array[0] if mode == "L" else array.transpose(1, 2, 0)
        Image.fromarray(picture, mode).save(folder / f"{i:03d}.png")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["onnx", "ckpt"])
def test_predict_on_pngs_of_the_test_split_gives_evaluate_s_predictions(
    retrained: DictConfig, tmp_path: Path, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    from PIL import Image

    from nasflow.stages import predict

    cfg = retrained
    if model == "onnx":
        export.run(cfg)
    folder = tmp_path / "new"
    _write_test_pngs(cfg, folder, 20)
    (folder / "notes.txt").write_text("not an image")
    Image.new("RGBA", (8, 8)).save(folder / "zz_alpha.png")
    cfg.predict.inputs = str(folder)
    cfg.predict.model = model
    cfg.predict.output = str(tmp_path / "predictions.csv")
    summary = predict.run(cfg)
    assert summary == {"predicted": 20, "skipped": 2, "output": cfg.predict.output}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("notes.txt: not an image" in w for w in warnings)
    assert any("zz_alpha.png: has 4 channels (RGBA)" in w for w in warnings)

    rows = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
    predicted = [row.split(",")[1] for row in rows]
    evaluated = (Path(cfg.paths.evaluate) / "predictions.csv").read_text().splitlines()[1:21]
    assert predicted == [row.split(",")[1] for row in evaluated]
    assert all(0 < float(row.split(",")[2]) <= 1 for row in rows)


def test_predict_refuses_an_empty_folder_and_an_unknown_model(tmp_path: Path) -> None:
    from nasflow.stages import predict
    from tests.conftest import compose_config

    cfg = compose_config([f"predict.inputs={tmp_path}"])
    with pytest.raises(NasflowError, match=r"is an empty folder"):
        predict.run(cfg)
    cfg.predict.model = "tflite"
    with pytest.raises(NasflowError, match=r"predict\.model=tflite is not a model; choose from"):
        predict.run(cfg)
