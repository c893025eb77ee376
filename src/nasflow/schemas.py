"""Config schemas generated from the components' constructor signatures.

A component's constructor is the one home of its defaults: this module reads each
registered class's signature and turns it into a structured-config dataclass, stored in
Hydra's ConfigStore as ``schema/<group>/<name>``. An option file under ``conf/<group>/``
builds on that schema and states only what it chooses differently, so a misspelt key or
a value of the wrong type still fails at composition, naming the key, while no default
is written down twice.

How a signature becomes a schema:

* ``_target_`` is the class; ``_partial_`` is added for kinds that are built partially
  (`Registry.partial`).
* Arguments the stages pass at build time (`Registry.injected`: the space, the data, the
  trainer) are not settings and are left out.
* Annotations become the types OmegaConf checks (int, float, bool, str, their optionals,
  lists and string-keyed dicts of them); anything richer is ``Any``.
* A numeric setting's range is part of its annotation (``Annotated[int, Ge(1)]``,
  `nasflow.ranges`): OmegaConf checks the base type, the description records the range
  (``"range": {"ge": 1}``) and `nasflow.config.check_settings` enforces it when a stage
  starts.
* A required argument is ``MISSING`` (the option file must set it).
* ``**kwargs`` adds the keyword arguments of ``cls.extra_settings`` when the class names the
  callable (a dataclass, say) that checks them; otherwise nothing.
* `Registry.interpolate` replaces a default with an interpolation, e.g. a strategy's
  ``seed`` follows the top-level ``${seed}`` (OmegaConf checks the type of what it
  resolves to).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

from omegaconf import MISSING

from nasflow.ranges import declared, unwrapped
from nasflow.registry import Registry, load_plugins


def settings(component: Callable[..., Any], registry: Registry[Any]) -> dict[str, Any]:
    """The settings of `component` with their defaults (`MISSING` where required), in
    signature order, as the schema holds them (before interpolation)."""
    return {name: default for name, _, default, _ in _parameters(component, registry)}


def describe(component: type, registry: Registry[Any]) -> dict[str, Any]:
    """The schema of `component` as JSON: its target, its ``_partial_`` default (or None)
    and each setting's name, config type (a name `_TYPES` knows), default and, for a
    numeric one, its declared range (see `describe_setting`)."""
    fields = []
    for name, kind, default, annotation in _parameters(component, registry):
        if name in registry.interpolate and default is not MISSING:
            default = registry.interpolate[name]  # a typed node holds "${...}" as it is
        fields.append(describe_setting(name, kind, default, annotation))
    return {
        "target": f"{component.__module__}.{component.__qualname__}",
        "partial": registry.partial,
        "fields": fields,
    }


def describe_setting(name: str, kind: str, default: Any, annotation: Any) -> dict[str, Any]:
    """The description of one setting: name, config type, default and, when the type is
    numeric (int or float, or a list, dict or optional of them) and `annotation` declares
    bounds, ``range`` (e.g. ``{"ge": 1}``; of each element for a list or dict)."""
    described = {"name": name, "type": kind, "default": _jsonable(default)}
    bounds = declared(annotation)
    if number_kind(kind) is not None and bounds is not None:
        described["range"] = bounds
    return described


def number_kind(kind: str) -> str | None:
    """ "int" or "float" when the config type `kind` holds numbers (itself, or as the
    elements of an optional, list or dict); None otherwise."""
    for wrapper in ("Optional[", "list[", "dict[str, "):
        if kind.startswith(wrapper):
            kind = kind[len(wrapper) : -1]
    return kind if kind in ("int", "float") else None


def dataclass_fields(cls: type) -> list[dict[str, Any]]:
    """The `describe_setting` descriptions of a structured-config dataclass's own fields (the stage
    settings of `nasflow.config`), with the dataclass of a nested one as its ``type``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    found = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            found.append({"name": f.name, "type": hint, "default": None})
        else:
            found.append(describe_setting(f.name, _config_type(hint), f.default, hint))
    return found


def schema(description: dict[str, Any]) -> type:
    """The structured-config dataclass a `describe` result stands for."""
    target = description["target"]
    fields: list[tuple[str, Any, Any]] = [("_target_", str, dataclasses.field(default=target))]
    if description["partial"] is not None:
        fields.append(("_partial_", bool, dataclasses.field(default=description["partial"])))
    for f in description["fields"]:
        fields.append((f["name"], _TYPES[f["type"]], _field(f["default"])))
    return dataclasses.make_dataclass(f"{target.rpartition('.')[2]}Schema", fields)


def generate(registries: Sequence[Registry[Any]]) -> dict[str, dict[str, Any]]:
    """Every registered component's description, by group and name."""
    return {
        registry.group: {
            name: describe(component, registry)
            for name, component in sorted(registry.load().items())
        }
        for registry in registries
    }


# The descriptions of nasflow's own components, written by `python -m nasflow.schemas`
# (`make params`) and checked against a fresh `generate` by the tests. Hydra starts in
# every stage and in every `dvc exp run`: reading this file instead of importing every
# component (torch, Lightning, MLflow, ...) keeps that start-up under a second.
CACHE = Path(__file__).with_name("schemas.json")


def cached(registries: Sequence[Registry[Any]]) -> dict[str, dict[str, Any]]:
    """The committed descriptions, plus those of components the ``NASFLOW_PLUGINS``
    modules register (generated live: they are not nasflow's)."""
    found: dict[str, dict[str, Any]] = json.loads(CACHE.read_text())
    load_plugins()
    for registry in registries:
        for name, component in registry.items():
            if not component.__module__.startswith("nasflow."):
                found.setdefault(registry.group, {})[name] = describe(component, registry)
    return found


def write_cache(registries: Sequence[Registry[Any]]) -> None:
    CACHE.write_text(json.dumps(generate(registries), indent=1, sort_keys=True) + "\n")


def _parameters(
    component: Callable[..., Any], registry: Registry[Any]
) -> Iterator[tuple[str, str, Any, Any]]:
    """(name, config type's name, default, annotation) of each setting of `component`."""
    seen: set[str] = set(registry.injected)
    for target in _targets(component):
        hints = _hints(target)
        for parameter in inspect.signature(target).parameters.values():
            if parameter.name in seen or parameter.kind in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                continue
            seen.add(parameter.name)
            default = MISSING if parameter.default is parameter.empty else parameter.default
            annotation = hints.get(parameter.name, Any)
            yield parameter.name, _config_type(annotation), default, annotation


def _targets(component: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The component, then what checks its ``**kwargs`` (``component.extra_settings``), if any."""
    targets = [component]
    keywords = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(component).parameters.values()
    )
    extra = getattr(component, "extra_settings", None)
    if keywords and callable(extra):
        targets.append(extra)
    return targets


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The evaluated annotations of `target`'s parameters; one that cannot be evaluated
    (a name imported only for type checkers) counts as Any."""
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    if not hasattr(function, "__module__"):  # object's own __init__: no parameters
        return {}
    namespace = vars(sys.modules[function.__module__])
    hints: dict[str, Any] = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:
                annotation = Any
        hints[name] = annotation
    return hints


def _config_type(annotation: Any) -> str:
    """The name (a key of `_TYPES`) of the type OmegaConf should enforce for a setting
    annotated `annotation`."""
    annotation = unwrapped(annotation)  # a declared range is checked by nasflow.ranges
    if annotation in _SCALAR_NAMES:
        return _SCALAR_NAMES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        others = [a for a in args if a is not type(None)]
        inner = _config_type(others[0]) if len(others) == 1 else "Any"
        return "Any" if inner == "Any" else f"Optional[{inner}]"
    if origin is Literal and args and all(isinstance(a, str) for a in args):
        return "str"
    if origin in (list, tuple, Sequence) and args and (len(args) == 1 or args[1] is Ellipsis):
        return f"list[{_SCALAR_NAMES.get(unwrapped(args[0]), 'Any')}]"
    if origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
        return f"dict[str, {_SCALAR_NAMES.get(unwrapped(args[1]), 'Any')}]"
    return "Any"


# Every type `_config_type` names, by its name (what schemas.json holds).
_SCALAR_NAMES: dict[Any, str] = {int: "int", float: "float", bool: "bool", str: "str"}
_TYPES: dict[str, Any] = {"Any": Any}
for _element, _name in [*_SCALAR_NAMES.items(), (Any, "Any")]:
    _TYPES |= {
        f"list[{_name}]": list[_element],  # type: ignore[valid-type]
        f"dict[str, {_name}]": dict[str, _element],  # type: ignore[valid-type]
    }
_TYPES |= {name: kind for kind, name in _SCALAR_NAMES.items()}
_TYPES |= {f"Optional[{n}]": Optional[k] for n, k in list(_TYPES.items()) if n != "Any"}  # noqa: UP045 (OmegaConf reads it)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _field(default: Any) -> Any:
    """A dataclass field of `default` (mutable ones through a factory, as dataclasses
    require)."""
    if isinstance(default, list | tuple):
        items = list(default)
        return dataclasses.field(default_factory=lambda: list(items))
    if isinstance(default, dict):
        mapping = dict(default)
        return dataclasses.field(default_factory=lambda: dict(mapping))
    return dataclasses.field(default=default)


if __name__ == "__main__":
    from nasflow.registry import COMPONENTS

    write_cache(COMPONENTS)
