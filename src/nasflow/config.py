"""Typed schemas of every config group, registered in Hydra's ConfigStore.

Each option file under `conf/<group>/` starts from one of these schemas (its defaults list
names ``/schema/<group>/<kind>@_here_``), so a misspelt key or a value of the wrong type
fails when the config is composed, with a message naming the key, instead of deep inside
a run. The schemas also hold each option's `_target_`, so YAML files never repeat it.

`register_configs` runs when Hydra starts in any process where nasflow is installed,
DVC's own composition included, through the `hydra_plugins.nasflow_schemas` module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, SI

# -- data -------------------------------------------------------------------------------


@dataclass
class DigitsSource:
    _target_: str = "nasflow.data.Digits"


@dataclass
class TorchvisionSource:
    _target_: str = "nasflow.data.TorchvisionDataset"
    name: str = MISSING  # MNIST, FashionMNIST, CIFAR10 or CIFAR100
    root: str = "data/raw"  # torchvision's layout under this folder
    download: bool = False  # fetch into root when it is missing (needs internet)


@dataclass
class ImageFolderSource:
    _target_: str = "nasflow.data.ImageFolder"
    root: str = MISSING  # root/<class>/*.jpg, or root/train/<class>/… and root/test/<class>/…
    image_size: int = 32  # images are resized to image_size x image_size
    channels: int = 3  # 1 = grayscale, 3 = RGB


@dataclass
class DataConfig:
    source: Any = MISSING
    val_fraction: float = 0.15  # of the non-test examples, held out to score candidates
    test_fraction: float = 0.2  # used only when the source has no official test split
    split_seed: int = 0  # its own seed: changing the search seed must not re-split the data


# -- search space, strategy ---------------------------------------------------------------


@dataclass
class ChainSpaceConfig:
    _target_: str = "nasflow.search_spaces.ChainSpace"
    min_layers: int = 1
    max_layers: int = 4
    ops: list[str] = field(default_factory=lambda: ["conv", "max_pool", "avg_pool", "gap", "dense"])
    filters: list[int] = field(default_factory=lambda: [32, 64])
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 5])
    skip: bool = True
    dense_units: list[int] = field(default_factory=lambda: [128])
    activations: list[str] = field(default_factory=lambda: ["relu"])
    max_pooling: int = 2


@dataclass
class NB201SpaceConfig:
    _target_: str = "nasflow.search_spaces.NB201Space"
    channels: int = 16  # C of the first stage; NAS-Bench-201 uses 16 (then 32, 64)
    cells_per_stage: int = 5  # NAS-Bench-201 uses 5
    ops: list[str] = field(
        default_factory=lambda: [
            "none",
            "skip_connect",
            "nor_conv_1x1",
            "nor_conv_3x3",
            "avg_pool_3x3",
        ]
    )


@dataclass
class DartsSpaceConfig:
    _target_: str = "nasflow.search_spaces.DartsSpace"
    channels: int = 16  # DARTS searches at 16 and evaluates at 36
    layers: int = 8  # cells in all; DARTS searches with 8 and evaluates with 20
    stem_multiplier: int = 3
    ops: list[str] = field(
        default_factory=lambda: [
            "max_pool_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "sep_conv_3x3",
            "sep_conv_5x5",
            "dil_conv_3x3",
            "dil_conv_5x5",
        ]
    )


@dataclass
class NASNetSpaceConfig:
    _target_: str = "nasflow.search_spaces.NASNetSpace"
    cells_per_stage: int = 2  # N; NASNet-A is evaluated at N=6 on CIFAR-10
    filters: int = 8  # F; NASNet-A "6 @ 768" has F=32 (768 = 24 F penultimate filters)
    blocks: int = 5  # B blocks per cell
    ops: list[str] | None = None  # None: all 15 (the paper lists 13: no 5x5, 7x7 avg pool)
    combinations: list[str] = field(default_factory=lambda: ["add", "concat"])


@dataclass
class RandomSearchConfig:
    _target_: str = "nasflow.search_strategies.RandomSearch"
    budget: int = 20  # candidates to evaluate
    seed: int = SI("${seed}")


@dataclass
class GridSearchConfig:
    _target_: str = "nasflow.search_strategies.GridSearch"
    budget: int = 100  # grid search refuses a space with more architectures than this
    seed: int = SI("${seed}")


@dataclass
class EvolutionConfig:
    _target_: str = "nasflow.search_strategies.RegularizedEvolution"
    budget: int = 20
    seed: int = SI("${seed}")
    population_size: int = 20  # the first this many are random; then the oldest leaves
    sample_size: int = 5  # the tournament: the best of this many members is mutated
    max_tries: int = 100  # mutations drawn per ask to find an unseen architecture


@dataclass
class LocalSearchConfig:
    _target_: str = "nasflow.search_strategies.LocalSearch"
    budget: int = 20
    seed: int = SI("${seed}")
    n_initial: int = 10  # climb from the best of this many random architectures
    first_improvement: bool = True  # move to the first better neighbour (else the best)
    max_tries: int = 100


@dataclass
class TPEConfig:
    _target_: str = "nasflow.search_strategies.TPESearch"
    budget: int = 20
    seed: int = SI("${seed}")
    n_startup_trials: int = 10  # random trials before the model proposes
    multivariate: bool = True
    n_ei_candidates: int = 24
    constant_liar: bool = True  # for proposals asked before earlier ones are told
    max_tries: int = 20


@dataclass
class ReinforceConfig:
    _target_: str = "nasflow.search_strategies.Reinforce"
    budget: int = 20
    seed: int = SI("${seed}")
    batch_size: int = 10  # children per policy update
    learning_rate: float = 0.05  # Adam
    entropy_weight: float = 0.1  # bonus that keeps the controller exploring
    baseline_decay: float = 0.5  # of the moving-average baseline
    hidden_size: int = 32  # LSTM width
    init_range: float = 0.1  # controller weights start uniform in +-init_range
    max_tries: int = 1000  # draws per ask to find an unseen architecture


@dataclass
class DartsSearchConfig:
    """One-shot: DARTS (softmax), GDAS (gumbel) or DrNAS (dirichlet) on a supernet of the
    nb201 or darts space; no estimator is used."""

    _target_: str = "nasflow.oneshot.DartsSearch"
    seed: int = SI("${seed}")
    relaxation: str = "softmax"  # softmax (DARTS), gumbel (GDAS) or dirichlet (DrNAS)
    order: int = 1  # the architect: 1 (first order) or 2 (unrolled, second order)
    epochs: int = 10  # passes over the train split (weights) and the val split (alphas)
    batch_size: int = 64
    w_lr: float = 0.025  # the weights' SGD, cosine-annealed to w_lr_min
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 0.0003
    grad_clip: float | None = 5.0
    arch_lr: float = 0.0003  # the alphas' Adam
    arch_weight_decay: float = 0.001  # DrNAS' l2 regulariser
    warmup_epochs: int = 0  # first epochs train the weights only (alphas stay uniform)
    kl_weight: float = 0.0  # DrNAS' KL regulariser towards Dirichlet(1); dirichlet only
    prune_epoch: int | None = None  # DrNAS' progressive shrinking: from this epoch (from 0)...
    keep_ops: int = 3  # ...each edge keeps its keep_ops strongest ops (and warms up again)
    selection: str = "magnitude"  # or perturbation (DARTS-PT; nb201): by accuracy drop
    tune_epochs: int = 1  # perturbation: weight-tuning epochs after each edge decision
    channels: int | None = None  # the supernet's size; None: the search space's
    cells: int | None = None  # nb201: cells per stage; darts: layers
    train_limit: int | None = None  # at most this many examples (a seeded subset)
    val_limit: int | None = None


@dataclass
class EnasSearchConfig:
    """One-shot: ENAS, an LSTM controller sampling child networks of a shared supernet."""

    _target_: str = "nasflow.oneshot.EnasSearch"
    seed: int = SI("${seed}")
    epochs: int = 10
    batch_size: int = 64
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 0.0003
    grad_clip: float | None = 5.0
    channels: int | None = None
    cells: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    controller_steps: int = 20  # architectures rewarded per epoch
    controller_batch: int = 10  # rewards per controller update
    controller_lr: float = 0.05
    entropy_weight: float = 0.1
    baseline_decay: float = 0.5
    controller_hidden: int = 32
    final_samples: int = 10  # sampled at the end; the best on val is the result


# -- estimation and training ---------------------------------------------------------------


@dataclass
class TrainingEstimatorConfig:
    _target_: str = "nasflow.estimators.TrainingEstimator"
    _partial_: bool = False  # true when wrapped: the wrapper supplies space, data, trainer
    epochs: int = 10
    batch_size: int = 64
    optimizer: Any = MISSING  # a `_partial_` optimizer; the module supplies the parameters
    scheduler: Any = None  # a `_partial_` schedule called with (optimizer, total_steps)


@dataclass
class NB201TableEstimatorConfig:
    _target_: str = "nasflow.estimators.tabular.NB201TableEstimator"
    _partial_: bool = False  # true when wrapped
    dataset: str = "cifar10"  # cifar10, cifar100 or imagenet16
    signal: str = "valid"  # the table's validation accuracy is the search signal
    epochs: int = 200  # 200 (cifar10) or 12: which training length's accuracy is the signal


@dataclass
class ProxyEstimatorConfig:
    """Zero-cost proxies of the untrained network; the first proxy is the score."""

    _target_: str = "nasflow.estimators.ProxyEstimator"
    _partial_: bool = False
    proxies: Any = "synflow"  # a name or a list (see nasflow.proxies.PROXIES)
    batch_size: int = 64  # the one minibatch, drawn from the train split
    seed: int = 0  # the minibatch and (with each architecture's id) the initial weights
    input_shape: list[int] | None = None  # without data only (data-free proxies)
    num_classes: int | None = None


@dataclass
class SuccessiveHalvingConfig:
    _target_: str = "nasflow.estimators.SuccessiveHalving"
    _partial_: bool = False
    then: Any = MISSING  # the wrapped estimator: its full fidelity is the top rung
    rungs: list[float] = MISSING  # the lower fidelities (epochs), increasing
    eta: float = 3.0  # each rung keeps the best ceil(n / eta)
    candidates: int | None = None  # per bracket; None: eta ** len(rungs)


@dataclass
class HyperbandConfig:
    _target_: str = "nasflow.estimators.Hyperband"
    _partial_: bool = False
    then: Any = MISSING
    rungs: list[float] = MISSING
    eta: float = 3.0


@dataclass
class CurveStoppingConfig:
    _target_: str = "nasflow.estimators.CurveStopping"
    _partial_: bool = False
    then: Any = MISSING  # must train epoch by epoch (training)
    rule: str = "median"  # or extrapolate (a power law fitted to the curve so far)
    grace: int = 1  # epochs before a candidate may be stopped
    min_curves: int = 3  # finished curves needed before any is stopped
    margin: float = 0.02  # extrapolate: how far below the best a forecast must fall


@dataclass
class PreFilterConfig:
    _target_: str = "nasflow.estimators.PreFilter"
    _partial_: bool = False
    then: Any = MISSING  # evaluates the kept proposals
    ranker: Any = MISSING  # ranks the proposals (schema/ranker/*)
    proposals: int = 10  # ranked per round
    keep: int = 1  # evaluated per round


@dataclass
class ProxyRankerConfig:
    _target_: str = "nasflow.estimators.ProxyRanker"
    _partial_: bool = True  # the pre-filter supplies space and data
    proxies: Any = "synflow"  # a name, or a list for a rank vote
    batch_size: int = 64
    seed: int = 0
    input_shape: list[int] | None = None
    num_classes: int | None = None


@dataclass
class PredictorRankerConfig:
    _target_: str = "nasflow.estimators.PredictorRanker"
    _partial_: bool = True
    model: str = "random_forest"  # or gradient_boosting (scikit-learn)
    min_observations: int = 10  # evaluations before the model ranks
    proxies: list[str] = field(default_factory=list)  # extra features; empty: encoding only
    seed: int = 0
    batch_size: int = 64
    input_shape: list[int] | None = None
    num_classes: int | None = None


@dataclass
class TrainerConfig:
    _target_: str = "pytorch_lightning.Trainer"
    _partial_: bool = True  # max_epochs, callbacks and logger are supplied per run
    accelerator: str = "auto"  # a GPU when there is one
    devices: int = 1
    precision: str = "32-true"  # "16-mixed" or "bf16-mixed" on a GPU
    enable_progress_bar: bool = False
    enable_model_summary: bool = False
    enable_checkpointing: bool = False
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 1


@dataclass
class LocalExecutorConfig:
    _target_: str = "nasflow.executors.LocalExecutor"


# -- tracking ------------------------------------------------------------------------------


@dataclass
class MlflowTrackingConfig:
    _target_: str = "nasflow.tracking.mlflow_tracker.MlflowTracker"
    uri: str = "sqlite:///mlflow.db"  # any MLflow tracking URI
    experiment: str = "nasflow"
    artifact_location: str = "mlartifacts"  # for new experiments, relative to the working dir


@dataclass
class NoTrackingConfig:
    _target_: str = "nasflow.tracking.Tracker"


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


SCHEMAS: dict[str, dict[str, Any]] = {
    "data": {
        "digits": DataConfig(source=DigitsSource()),
        "torchvision": DataConfig(source=TorchvisionSource()),
        "image_folder": DataConfig(source=ImageFolderSource()),
    },
    "search_space": {
        "chain": ChainSpaceConfig,
        "nb201": NB201SpaceConfig,
        "darts": DartsSpaceConfig,
        "nasnet": NASNetSpaceConfig,
    },
    "strategy": {
        "random": RandomSearchConfig,
        "grid": GridSearchConfig,
        "evolution": EvolutionConfig,
        "local_search": LocalSearchConfig,
        "tpe": TPEConfig,
        "reinforce": ReinforceConfig,
        "darts": DartsSearchConfig,
        "enas": EnasSearchConfig,
    },
    "estimator": {
        "training": TrainingEstimatorConfig,
        "nb201_table": NB201TableEstimatorConfig,
        "proxy": ProxyEstimatorConfig,
        "successive_halving": SuccessiveHalvingConfig,
        "hyperband": HyperbandConfig,
        "curve_stopping": CurveStoppingConfig,
        "prefilter": PreFilterConfig,
    },
    "ranker": {"proxy": ProxyRankerConfig, "predictor": PredictorRankerConfig},
    "trainer": {"lightning": TrainerConfig},
    "executor": {"local": LocalExecutorConfig},
    "tracking": {"mlflow": MlflowTrackingConfig, "none": NoTrackingConfig},
}


def register_configs() -> None:
    """Store the root schema and every group schema in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(name="nasflow_schema", node=NasflowConfig)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=f"schema/{group}", name=name, node=node)
