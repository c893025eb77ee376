"""The stage-level settings (paths, the search's limits, retraining, the benchmarks), and
the registration of every schema in Hydra's ConfigStore.

The components' schemas (spaces, strategies, estimators, ...) are not written here: they
are generated from the constructors (`nasflow.schemas`, which commits the result as
schemas.json so that Hydra starts without importing every component), and the
constructors are their one home. Each option file under `conf/<group>/` starts from one
(its defaults list names ``/schema/<group>/<name>@_here_``), so a misspelt key or a value
of the wrong type fails when the config is composed, with a message naming the key,
instead of deep inside a run.

`register_configs` runs when Hydra starts in any process where nasflow is installed,
DVC's own composition included, through the `hydra_plugins.nasflow_schemas` module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from nasflow.registry import COMPONENTS, DATA_SOURCES
from nasflow.schemas import cached, schema


@dataclass
class DataConfig:
    source: Any = MISSING
    val_fraction: float = 0.15  # of the non-test examples, held out to score candidates
    test_fraction: float = 0.2  # used only when the source has no official test split
    split_seed: int = 0  # its own seed: changing the search seed must not re-split the data


# -- stages ---------------------------------------------------------------------------------


@dataclass
class PathsConfig:
    prepared: str = "data/prepared"
    search: str = "results/search"
    retrain: str = "results/retrain"
    evaluate: str = "results/evaluate"
    # In-progress searches, to resume after an interruption; not a DVC output, because DVC
    # deletes a stage's outputs before running it again.
    checkpoints: str = "checkpoints"


@dataclass
class SearchConfig:
    """When the search loop stops besides `strategy.budget`, and whether it resumes."""

    max_seconds: float | None = None  # wall-clock limit for the whole search; None: none
    patience: int | None = None  # stop after this many evaluations without a better one
    max_cost: float | None = None  # stop once this many training epochs are spent; None: none
    resume: bool = True  # continue an interrupted search of the same configuration
    # Stop with an error once this many candidates in a row have failed (a bug, most
    # likely); the tracebacks are in <paths.search>/failures.log. null: never.
    max_consecutive_failures: int | None = 5


@dataclass
class RetrainConfig:
    epochs: int = 40
    batch_size: int = 64
    # The final training's own optimizer and schedule (`_partial_`s, as the training
    # estimator's): the search may train nothing (a proxy, a table) or train differently.
    optimizer: Any = MISSING
    scheduler: Any = None
    # Settings of search_space to change for the retrained network only: a cell found
    # on a small network is retrained stacked larger, e.g. {channels: 36, layers: 20}.
    search_space: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkConfig:
    """`pipelines/benchmark.py`: a strategy on the NAS-Bench-201 table, over many seeds."""

    seeds: int = 100  # searches per strategy: seeds 0..seeds-1
    # The cost budget of a search, in full-fidelity queries: with estimator=nb201_table the
    # strategy's budget; composite estimators spend queries x full epochs training epochs.
    queries: int = 150
    output: str = "results/benchmark"  # <output>/<name>.json and comparison.png
    tracking: bool = False  # one MLflow parent run per strategy, through `tracking`
    name: str | None = None  # file and legend name; None: the strategy's name


@dataclass
class ProxyBenchmarkConfig:
    """`pipelines/proxy_benchmark.py`: zero-cost proxies against the NAS-Bench-201 table."""

    samples: int = 1000  # distinct NB201 cells, drawn with `seed`
    batch_size: int = 64  # images in the one minibatch the proxies see
    # Per-proxy batch sizes: NASWOT's paper reports its CIFAR-10 correlation at 128.
    batch_sizes: dict[str, int] = field(default_factory=lambda: {"naswot": 128})
    proxies: list[str] = field(default_factory=list)  # empty: every proxy
    vote: list[str] = field(default_factory=lambda: ["synflow", "naswot", "jacob_cov"])
    data_root: str = "../shared/datasets/cifar10-jpeg"  # else the prepared data
    seed: int = 0
    output: str = "results/proxy_benchmark"
    from_scores: str | None = None  # an earlier proxies.json: correlate its scores again


@dataclass
class InspectConfig:
    """`pipelines/inspect_arch.py`: one architecture's parameters, FLOPs and diagram."""

    arch: str = "results/search/best_architecture.json"  # a file, or the architecture as text
    input_shape: list[int] | None = None  # None: the prepared data's
    num_classes: int | None = None  # None: the prepared data's
    diagram: str = "inspect/architecture.svg"  # .svg or .png


@dataclass
class NasflowConfig:
    seed: int = 0  # seeds the strategy and the candidates' training
    paths: PathsConfig = field(default_factory=PathsConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
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


def register_configs() -> None:
    """Store the root schema, and a schema generated from its constructor for every
    registered component (`nasflow.schemas`), in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(name="nasflow_schema", node=NasflowConfig)
    for group, described in cached(COMPONENTS).items():
        for name, description in described.items():
            node: Any = schema(description)
            if group == DATA_SOURCES.group:
                # A data option is the prepare stage's split settings around a source.
                node = DataConfig(source=node())
            store.store(group=f"schema/{group}", name=name, node=node)
