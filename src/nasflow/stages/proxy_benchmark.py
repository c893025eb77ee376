"""How well does each zero-cost proxy rank NAS-Bench-201 cells? Not a DVC stage.

``python pipelines/proxy_benchmark.py proxy_benchmark.samples=1000`` draws that many distinct
NB201 cells (seeded), builds each one's real CIFAR-10 network with `NB201Space` (weights
initialised from the cell's index, so reruns score the same networks), scores it with every
proxy of `nasflow.proxies` on one minibatch, and reports the Spearman rank correlation of
each proxy with the table's accuracies, the time each proxy takes per network, and the
correlation of a rank vote over `proxy_benchmark.vote` (each cell's mean rank under those
proxies).

The minibatch: CIFAR-10 images from `proxy_benchmark.data_root` (an ImageFolder of the
standard split, ``<root>/train/<class>/*.jpg``) when that folder exists, normalised with
CIFAR-10's channel statistics; otherwise the prepared data (`paths.prepared`). Synflow
needs no data (it scores an all-ones input).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import spearmanr

from nasflow.artifacts import write_json
from nasflow.errors import NasflowError
from nasflow.proxies import PROXIES
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.tabular.nb201 import load_table

log = logging.getLogger("nasflow.proxy_benchmark")

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# The first is what Abdelfattah et al. 2021 correlate with (their nasbench2_pred.py reads
# `cifar10-valid`'s 200-epoch "test-accuracy": trained on the 25k train split, tested on
# the CIFAR-10 test set); the others are the usual test figure and the search signal.
ACCURACIES = ("cifar10_valid_test_acc", "cifar10_test_acc", "cifar10_valid_acc")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Score the sampled cells with every proxy; write the correlations to `output`.

    With ``proxy_benchmark.from_scores`` set to an earlier run's proxies.json, its scores
    are correlated again (with the table columns of this version) instead of recomputed.
    """
    settings = cfg.proxy_benchmark
    if settings.from_scores:
        return _rescore(Path(settings.from_scores), settings)
    names = list(settings.proxies) or list(PROXIES)
    unknown = [n for n in [*names, *settings.vote] if n not in PROXIES]
    if unknown:
        raise NasflowError(f"unknown proxy {unknown[0]!r}; choose from {', '.join(PROXIES)}")
    if settings.samples < 3:
        raise NasflowError(f"proxy_benchmark.samples must be at least 3, got {settings.samples}")
    sizes = {name: settings.batch_sizes.get(name, settings.batch_size) for name in names}
    bad = {n: b for n, b in sizes.items() if isinstance(b, bool) or not isinstance(b, int) or b < 2}
    if bad:
        name, size = next(iter(bad.items()))
        raise NasflowError(f"the batch size of {name} must be an integer >= 2, got {size!r}")
    # One draw of the largest size; a proxy with a smaller batch sees its first images.
    images, labels, source = minibatch(
        settings.data_root, cfg.paths.prepared, max(sizes.values()), settings.seed
    )
    num_classes = int(labels.max()) + 1 if source == "prepared" else 10
    table = load_table()
    space = NB201Space()
    rng = np.random.default_rng(settings.seed)
    rows = rng.choice(len(table), size=min(settings.samples, len(table)), replace=False)
    log.info(
        "%d NB201 cells, %d proxies, a minibatch of %d from %s",
        len(rows),
        len(names),
        len(labels),
        source,
    )

    scores: dict[str, list[float]] = {name: [] for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for done, row in enumerate(rows, start=1):
        arch = space.parse(str(table.columns["arch"][row]))
        torch.manual_seed(int(row))  # the same initial weights for a cell in every run
        network = space.build(arch, tuple(images.shape[1:]), num_classes)
        for name in names:
            start = time.perf_counter()
            size = sizes[name]
            scores[name].append(PROXIES[name](network, images[:size], labels[:size], num_classes))
            seconds[name].append(time.perf_counter() - start)
        if done % 25 == 0 or done == len(rows):
            log.info("%d/%d cells scored", done, len(rows))

    result: dict[str, Any] = {
        "settings": OmegaConf.to_container(settings, resolve=True),
        "minibatch": source,
        "batch_sizes": sizes,
        "cells": len(rows),
        "proxies": {
            name: {"ms_per_network": 1000 * statistics.median(seconds[name])} for name in names
        },
        "cells_scored": [
            {"arch": str(table.columns["arch"][row]), **{n: scores[n][i] for n in names}}
            for i, row in enumerate(rows)
        ],
    }
    return _finish(result, list(settings.vote), Path(settings.output))


def _rescore(source: Path, settings: DictConfig) -> dict[str, Any]:
    """The correlations of the scores saved in `source`, written to ``settings.output``."""
    try:
        result = json.loads(source.read_text())
        if not isinstance(result["cells_scored"][0]["arch"], str):
            raise TypeError("cells_scored[0].arch is not a string")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise NasflowError(
            f"proxy_benchmark.from_scores={str(source)!r} is not a proxies.json written by "
            f"this benchmark ({type(error).__name__}: {error})"
        ) from None
    result["rescored_from"] = str(source)
    return _finish(result, list(settings.vote), Path(settings.output))


def _finish(result: dict[str, Any], vote: list[str], output: Path) -> dict[str, Any]:
    """Add each proxy's and the vote's Spearman rho with every column of ACCURACIES, write
    ``proxies.json`` to `output` and log the figures."""
    table = load_table()
    cells = result["cells_scored"]
    rows = [table.index_of(cell["arch"]) for cell in cells]
    accuracy = {column: table.columns[column][rows] for column in ACCURACIES}
    scores = {name: [cell[name] for cell in cells] for name in result["proxies"]}
    for name, figures in result["proxies"].items():
        figures.update({f"spearman_{c}": _spearman(scores[name], accuracy[c]) for c in ACCURACIES})
    voters = [name for name in vote if name in scores]
    if voters:
        ranks = np.mean([_ranks(scores[name]) for name in voters], axis=0)
        result["vote"] = {
            "proxies": voters,
            **{f"spearman_{c}": _spearman(ranks, accuracy[c]) for c in ACCURACIES},
        }
    # The cells last: the figures lead the file.
    result["cells_scored"] = result.pop("cells_scored")
    out = output / "proxies.json"
    write_json(out, result)
    log.info("Spearman rho with %s (%s):", ACCURACIES[0], ", ".join(ACCURACIES[1:]))
    for name, figures in result["proxies"].items():
        log.info(
            "%-10s rho %.3f (%s)  %7.1f ms",
            name,
            figures[f"spearman_{ACCURACIES[0]}"],
            ", ".join(f"{figures[f'spearman_{c}']:.3f}" for c in ACCURACIES[1:]),
            figures["ms_per_network"],
        )
    if voters:
        figures = result["vote"]
        log.info(
            "vote(%s) rho %.3f (%s)",
            "+".join(voters),
            figures[f"spearman_{ACCURACIES[0]}"],
            ", ".join(f"{figures[f'spearman_{c}']:.3f}" for c in ACCURACIES[1:]),
        )
    log.info("wrote %s", out)
    return result


def minibatch(
    data_root: str, prepared: str, size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """`size` seeded images and labels: CIFAR-10 from `data_root`, else the prepared data."""
    generator = torch.Generator().manual_seed(seed)
    train = Path(data_root) / "train"
    if train.is_dir():
        from torchvision import datasets, transforms

        folder = datasets.ImageFolder(
            str(train),
            transforms.Compose(
                [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
            ),
        )
        picks = torch.randperm(len(folder), generator=generator)[:size].tolist()
        pairs = [folder[i] for i in picks]
        images = torch.stack([image for image, _ in pairs])
        labels = torch.tensor([label for _, label in pairs])
        return images, labels, f"CIFAR-10 images in {data_root}"
    from nasflow.training import InMemoryData

    try:
        split = InMemoryData.load(prepared, ("train",)).splits["train"]
    except NasflowError:
        raise NasflowError(
            f"no CIFAR-10 ImageFolder at {train} and no prepared data in {prepared}: "
            "set proxy_benchmark.data_root or run `dvc repro prepare`"
        ) from None
    all_images, all_labels = split.tensors
    chosen = torch.randperm(len(all_labels), generator=generator)[:size]
    return all_images[chosen], all_labels[chosen], "prepared"


def _ranks(values: list[float] | np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(values, dtype=float))).astype(float)


def _spearman(scores: list[float] | np.ndarray, accuracy: np.ndarray) -> float:
    rho = spearmanr(np.asarray(scores, dtype=float), accuracy).statistic
    return float(rho)
