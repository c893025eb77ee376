"""The stage-level settings (paths, the search's limits, retraining, the benchmarks), and
the registration of every schema in Hydra's ConfigStore.

The components' schemas (spaces, strategies, estimators, ...) are not written here: they
are generated from the constructors (`nasflow.schemas`, which commits the result as
schemas.json so that Hydra starts without importing every component), and the
constructors are their one home. Each option file under `conf/<group>/` starts from one
(its defaults list names ``/schema/<group>/<name>@_here_``), so a misspelt key or a value
of the wrong type fails when the config is composed, with a message naming the key,
instead of deep inside a run.

A numeric setting's range is part of its annotation, next to its default (here for the
stage settings, in the constructor for a component's; see `nasflow.ranges`), and
`check_settings`, which every stage runs first (`nasflow.cli.stage`), refuses a value
outside it in one line naming the key.

`register_configs` runs when Hydra starts in any process where nasflow is installed,
DVC's own composition included, through the `hydra_plugins.nasflow_schemas` module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from annotated_types import Ge, Interval
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from nasflow.ranges import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Seed, check
from nasflow.registry import COMPONENTS, DATA_SOURCES
from nasflow.schemas import cached, dataclass_fields, number_kind, schema

#: A share of the examples: more than none, less than all.
Fraction = Annotated[float, Interval(gt=0, lt=1)]


@dataclass
class AugmentConfig:
    """What is done to each training image (`nasflow.training.augment`), never to val or
    test: the final training's, and the candidates' too with ``candidates: true``."""

    crop_padding: NonNegativeInt = 0  # pad by this many pixels, crop back at random; 0: off
    hflip: bool = False  # flip left to right with probability 0.5
    candidates: bool = False  # also while searching (else the retrain only)


@dataclass
class DataConfig:
    source: Any = MISSING
    val_fraction: Fraction = 0.15  # of the non-test examples, held out to score candidates
    test_fraction: Fraction = 0.2  # used only when the source has no official test split
    split_seed: Seed = 0  # its own seed: changing the search seed must not re-split the data
    # At most this many train (val) examples, a class-stratified random subset; None: all.
    # For a quick run on a large data set: the test split is never cut.
    train_size: PositiveInt | None = None
    val_size: PositiveInt | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# -- stages ---------------------------------------------------------------------------------


@dataclass
class PathsConfig:
    prepared: str = "data/prepared"
    search: str = "results/search"
    retrain: str = "results/retrain"
    evaluate: str = "results/evaluate"
    export: str = "results/export"
    # In-progress searches, to resume after an interruption; not a DVC output, because DVC
    # deletes a stage's outputs before running it again.
    checkpoints: str = "checkpoints"


@dataclass
class SearchConfig:
    """When the search loop stops besides `strategy.budget`, whether it resumes, and what
    it optimises when that is more than one score."""

    max_seconds: PositiveFloat | None = None  # wall-clock limit for the whole search; None: none
    patience: PositiveInt | None = None  # stop after this many evaluations without a better one
    max_cost: PositiveFloat | None = None  # stop once this many training epochs are spent
    resume: bool = True  # continue an interrupted search of the same configuration
    # Stop with an error once this many candidates in a row have failed (a bug, most
    # likely); the tracebacks are in <paths.search>/failures.log. null: never.
    max_consecutive_failures: PositiveInt | None = 5
    # Several objectives, e.g. [val_acc:max,params:min] (nasflow.pareto): what the
    # multi-objective strategies (nsga2, mo_evolution) optimise. Empty: the score alone.
    objectives: list[Any] = field(default_factory=list)
    # The hypervolume's reference point, a value per objective, e.g. {val_acc:0.85,params:1.6e6}.
    reference: dict[str, Any] = field(default_factory=dict)
    # A single-objective strategy on several objectives: weighted or chebyshev
    # (nasflow.pareto.Scalarization), with a weight per objective (none: equal weights).
    scalarize: str | None = None
    weights: list[NonNegativeFloat] = field(default_factory=list)
    # Bounds on what a proposal measures before training (nasflow.constraints), e.g.
    # ["params<=5e4", "latency_ms<5"]: a proposal that breaks one is never trained.
    constraints: list[str] = field(default_factory=list)
    # Trained weights kept for candidates to inherit (nasflow.inheritance): the best and the
    # most recent this many each, beside the checkpoint. null: what the strategy needs
    # (strategy=morphism, evolution with inherit_weights), else none.
    keep_weights: NonNegativeInt | None = None


@dataclass
class LatencyConfig:
    """How `latency_ms` is measured (`nasflow.measure.latency_ms`): with torch, in eval
    mode, the median of `repeats` forward passes after `warmup` untimed ones."""

    device: str = "cpu"  # the target: cpu, or cuda / cuda:N
    batch_size: PositiveInt = 1  # images per forward pass
    threads: PositiveInt = 1  # torch's threads on the CPU
    warmup: NonNegativeInt = 10
    repeats: PositiveInt = 30


@dataclass
class ExportConfig:
    """The export stage (`nasflow.stages.export`): ONNX and TorchScript, checked."""

    # The largest absolute difference from PyTorch's logits an export may have.
    tolerance: PositiveFloat = 1e-4
    test_batch: PositiveInt = 256  # test images the formats are compared on


@dataclass
class PredictConfig:
    """`pipelines/predict.py`: classes for new images."""

    inputs: str | None = None  # an image file, or a folder of them (not searched below)
    model: str = "onnx"  # onnx: <paths.export>/model.onnx; ckpt: the retrained checkpoint
    output: str = "predictions.csv"  # file, class, probability: one row per image read


@dataclass
class RetrainConfig:
    epochs: PositiveInt = 40
    batch_size: PositiveInt = 64
    # The final training's own optimizer and schedule (`_partial_`s, as the training
    # estimator's): the search may train nothing (a proxy, a table) or train differently.
    optimizer: Any = MISSING
    scheduler: Any = None
    # Settings of search_space to change for the retrained network only: a cell found
    # on a small network is retrained stacked larger, e.g. {channels: 36, layers: 20}.
    search_space: dict[str, Any] = field(default_factory=dict)
    # Lightning's `devices` and `strategy` for the final training alone (a candidate
    # trains on one device): devices=-1 strategy=ddp trains on all of a machine's GPUs,
    # one process each; on a machine without GPUs, devices=N runs N CPU processes (gloo).
    devices: Any = 1
    strategy: str = "auto"
    # Which searched candidate to retrain (nasflow.selection): best (the best score), knee
    # (of the front), smallest_within:0.5 (the fewest parameters within 0.5 points of
    # the best score) or an index into the front (pareto.json, best first).
    select: Any = "best"
    # Retrain this many: the selected one (model.ckpt) and the next by the select rule's
    # order (top2.model.ckpt, ...; listed in top.json).
    top_k: PositiveInt = 1


@dataclass
class BenchmarkConfig:
    """`pipelines/benchmark.py`: a strategy on the NAS-Bench-201 table, over many seeds."""

    seeds: PositiveInt = 100  # searches per strategy: seeds 0..seeds-1
    # The cost budget of a search, in full-fidelity queries: with estimator=nb201_table the
    # strategy's budget; composite estimators spend queries x full epochs training epochs.
    queries: PositiveInt = 150
    output: str = "results/benchmark"  # <output>/<name>.json and comparison.png
    tracking: bool = False  # one MLflow parent run per strategy, through `tracking`
    name: str | None = None  # file and legend name; None: the strategy's name


#: A proxy's minibatch: NASWOT's kernel and the Jacobian covariance compare two images at least.
ProxyBatch = Annotated[int, Ge(2)]


@dataclass
class ProxyBenchmarkConfig:
    """`pipelines/proxy_benchmark.py`: zero-cost proxies against the NAS-Bench-201 table."""

    # Distinct NB201 cells, drawn with `seed`; a rank correlation needs at least three.
    samples: Annotated[int, Ge(3)] = 1000
    batch_size: ProxyBatch = 64  # images in the one minibatch the proxies see
    # Per-proxy batch sizes: NASWOT's paper reports its CIFAR-10 correlation at 128.
    batch_sizes: dict[str, ProxyBatch] = field(default_factory=lambda: {"naswot": 128})
    proxies: list[str] = field(default_factory=list)  # empty: every proxy
    vote: list[str] = field(default_factory=lambda: ["synflow", "naswot", "jacob_cov"])
    data_root: str = "../shared/datasets/cifar10-jpeg"  # else the prepared data
    seed: Seed = 0
    output: str = "results/proxy_benchmark"
    from_scores: str | None = None  # an earlier proxies.json: correlate its scores again


@dataclass
class InspectConfig:
    """`pipelines/inspect_arch.py`: one architecture's parameters, FLOPs and diagram."""

    arch: str = "results/search/best_architecture.json"  # a file, or the architecture as text
    input_shape: list[PositiveInt] | None = None  # None: the prepared data's
    num_classes: PositiveInt | None = None  # None: the prepared data's
    diagram: str = "inspect/architecture.svg"  # .svg or .png


@dataclass
class NasflowConfig:
    seed: Seed = 0  # seeds the strategy and the candidates' training
    paths: PathsConfig = field(default_factory=PathsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    proxy_benchmark: ProxyBenchmarkConfig = field(default_factory=ProxyBenchmarkConfig)
    data: Any = MISSING
    search_space: Any = MISSING
    strategy: Any = MISSING
    estimator: Any = MISSING
    trainer: Any = MISSING
    executor: Any = MISSING
    tracking: Any = MISSING


#: The descriptions `register_configs` last stored, as JSON: storing the same again is
#: skipped (each store builds a structured config from a dataclass: 0.1 s in all).
_registered: str | None = None


def register_configs() -> None:
    """Store the root schema, and a schema generated from its constructor for every
    registered component (`nasflow.schemas`), in Hydra's ConfigStore: again only when
    the components changed (a plugin registered one) or the store was emptied."""
    global _registered
    store = ConfigStore.instance()
    descriptions = cached(COMPONENTS)
    key = json.dumps(descriptions, sort_keys=True, default=str)
    if key == _registered and "nasflow_schema.yaml" in store.repo:
        return
    store.store(name="nasflow_schema", node=NasflowConfig)
    for group, described in descriptions.items():
        for name, description in described.items():
            node: Any = schema(description)
            if group == DATA_SOURCES.group:
                # A data option is the prepare stage's split settings around a source.
                node = DataConfig(source=node())
            store.store(group=f"schema/{group}", name=name, node=node)
    _registered = key


def check_settings(cfg: DictConfig) -> None:
    """Check every numeric setting of a composed config against the range its annotation
    declares (`nasflow.ranges`): the stage settings above, and each node whose
    ``_target_`` is a registered component (nested ones too: ``estimator.then``,
    ``estimator.ranker``), by its description. An interpolation is checked as it
    resolves, after every value written as it is: a bad value is named where it was
    written, not where it is followed. A value left unset (``???``) is the stage's to
    report.

    Raises:
        NasflowError: The first value out of its range, in one line naming its full key,
            e.g. "estimator.epochs must be a positive integer, got 0".
    """
    # Plain containers walk far faster than DictConfigs; interpolations stay as written.
    raw = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    found = list(_settings(raw, "", dataclass_fields(NasflowConfig)))
    if isinstance(raw.get("data"), dict):  # the prepare stage's split settings
        found += _settings(raw["data"], "data", dataclass_fields(DataConfig))
    by_target = {
        description["target"]: description["fields"]
        for described in cached(COMPONENTS).values()
        for description in described.values()
    }
    found += _components(raw, "", by_target)
    # The settings retraining changes are the search space's own.
    changed = raw.get("retrain", {}).get("search_space")
    space = by_target.get(str(raw.get("search_space", {}).get("_target_")))
    if isinstance(changed, dict) and space is not None:
        found += _settings(changed, "retrain.search_space", space)
    found.sort(key=lambda setting: _interpolation(setting[1]))  # stable: config order
    for key, value, described in found:
        _check(cfg, key, value, described)


#: A setting found in a composed config: its full key, its value as written (an
#: interpolation unresolved) and its description (`nasflow.schemas.describe_setting`).
Setting = tuple[str, Any, dict[str, Any]]


def _settings(node: dict[str, Any], where: str, fields: list[dict[str, Any]]) -> Iterator[Setting]:
    """The settings of `node` (a plain container, at key `where`) that `fields` describe
    with a range; a nested dataclass's in turn."""
    for described in fields:
        name = described["name"]
        key = f"{where}.{name}" if where else name
        if name not in node or node[name] == MISSING:
            continue
        if isinstance(described["type"], type):  # a nested stage dataclass
            if isinstance(node[name], dict):
                yield from _settings(node[name], key, dataclass_fields(described["type"]))
        elif number_kind(described["type"]) is not None and "range" in described:
            yield key, node[name], described


def _components(
    node: Any, where: str, by_target: dict[str, list[dict[str, Any]]]
) -> Iterator[Setting]:
    """The settings of every registered component at or under `node` (a plain
    container, at key `where`). An interpolation's target is checked where it is written."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target in by_target:
            yield from _settings(node, where, by_target[target])
        for name, child in node.items():
            yield from _components(child, f"{where}.{name}" if where else str(name), by_target)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _components(child, f"{where}[{i}]", by_target)


def _check(cfg: DictConfig, key: str, value: Any, described: dict[str, Any]) -> None:
    """`nasflow.ranges.check` of one setting of `cfg`, each element of a list or dict."""
    kind, bounds = number_kind(described["type"]), described["range"]
    assert kind is not None
    value = _resolved(cfg, key, value)
    if isinstance(value, list):
        for i, item in enumerate(value):
            check(f"{key}[{i}]", _resolved(cfg, f"{key}[{i}]", item), kind, bounds, False)
    elif isinstance(value, dict):
        for name, item in value.items():
            check(f"{key}.{name}", _resolved(cfg, f"{key}.{name}", item), kind, bounds, False)
    else:
        check(key, value, kind, bounds, described["type"].startswith("Optional["))


def _interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _resolved(cfg: DictConfig, key: str, value: Any) -> Any:
    """`value`, the setting `key` of `cfg` as written, with an interpolation resolved."""
    if _interpolation(value):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    return value
