"""Every kind of component by name: spaces, strategies, estimators, rankers, executors,
trackers, data sources and proxies.

A component registers itself where it is defined (a subclass that sets ``name`` is added
to its base's registry; a proxy is decorated), so a new one is one module plus one option
file under ``conf/``. The config schemas (`nasflow.schemas`), the README's configuration
reference and the contract tests are all generated from these registries; none of them
holds a hand-written list.

`Registry.load` imports every module of the packages a kind lives in, and the modules
named in the ``NASFLOW_PLUGINS`` environment variable (comma-separated), so components
outside the package (your own project's) register the same way.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from nasflow.errors import NasflowError

T = TypeVar("T")

#: Modules with components of the user's own, imported by every `Registry.load`.
PLUGINS_VARIABLE = "NASFLOW_PLUGINS"


@dataclass
class Registry(Mapping[str, T], Generic[T]):
    """The components of one kind, by name.

    Attributes:
        kind: What they are, for messages ("strategy").
        group: The config group whose options build them (``conf/<group>/``).
        packages: Where they live; `load` imports every module under these.
        injected: Constructor arguments the stages pass at build time (the space, the
            data), which are therefore not settings.
        interpolate: Settings that follow another config value rather than a default,
            e.g. a strategy's ``seed`` follows the top-level ``${seed}``.
        partial: The default of ``_partial_`` in the schema (None: no such key). Wrapped
            estimators are built partially and completed by their wrapper.
    """

    kind: str
    group: str
    packages: tuple[str, ...] = ()
    injected: tuple[str, ...] = ()
    interpolate: dict[str, str] = field(default_factory=dict)
    partial: bool | None = None
    _items: dict[str, T] = field(default_factory=dict, repr=False)

    def add(self, name: str, component: T) -> T:
        """Register `component` as `name`; a second, different one of that name is a bug."""
        known = self._items.get(name)
        if known is not None and _qualname(known) != _qualname(component):
            raise ValueError(
                f"two {self.kind} components named {name!r}: "
                f"{_qualname(known)} and {_qualname(component)}"
            )
        self._items[name] = component
        return component

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers what it decorates as `name`."""
        return lambda component: self.add(name, component)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise NasflowError(f"unknown {self.kind} {name!r}; choose from {choices}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def load(self) -> Registry[T]:
        """Import every module of `packages` and of ``NASFLOW_PLUGINS``, so that all of
        this kind have registered; returns the registry."""
        for package in self.packages:
            module = importlib.import_module(package)
            for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{package}."):
                importlib.import_module(info.name)
        load_plugins()
        return self


def load_plugins() -> None:
    """Import the modules named in ``NASFLOW_PLUGINS``; one line naming a missing one."""
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            raise NasflowError(
                f"{PLUGINS_VARIABLE} names module {name!r}, which cannot be imported ({error})"
            ) from None


def _qualname(component: Any) -> str:
    return f"{getattr(component, '__module__', '?')}.{getattr(component, '__qualname__', '?')}"


SPACES: Registry[Any] = Registry("search space", "search_space", ("nasflow.search_spaces",))
STRATEGIES: Registry[Any] = Registry(
    "strategy",
    "strategy",
    ("nasflow.search_strategies", "nasflow.oneshot"),
    injected=("space",),
    # A multi-objective strategy optimises what the search is asked to.
    interpolate={
        "seed": "${seed}",
        "objectives": "${search.objectives}",
        "reference": "${search.reference}",
    },
)
ESTIMATORS: Registry[Any] = Registry(
    "estimator",
    "estimator",
    ("nasflow.estimators",),
    injected=("space", "data", "trainer"),
    partial=False,
)
RANKERS: Registry[Any] = Registry(
    "ranker", "ranker", ("nasflow.estimators",), injected=("space", "data"), partial=True
)
EXECUTORS: Registry[Any] = Registry("executor", "executor", ("nasflow.executors",))
TRACKERS: Registry[Any] = Registry("tracker", "tracking", ("nasflow.tracking",))
DATA_SOURCES: Registry[Any] = Registry("data source", "data", ("nasflow.data",))
PROXIES: Registry[Any] = Registry("proxy", "proxy", ("nasflow.proxies",))

#: Every registry of a class whose options are built from ``conf/<group>/``.
COMPONENTS: tuple[Registry[Any], ...] = (
    SPACES,
    STRATEGIES,
    ESTIMATORS,
    RANKERS,
    EXECUTORS,
    TRACKERS,
    DATA_SOURCES,
)


class Component:
    """Base of every registered class: a class that sets ``name`` in its own body is added
    to the ``registry`` its base names."""

    name: str  # a class attribute; an instance may replace it (a data source's dataset)
    registry: ClassVar[Registry[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls.registry.add(cls.__dict__["name"], cls)
