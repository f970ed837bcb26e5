"""The model registry: name -> (class, config dataclass, one-line description).

Models register themselves with `@register(...)` in their own module; `models/__init__.py`
imports every model module explicitly, so the registry is complete after ``import models``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from models.base import Recommender

M = TypeVar("M", bound=type[Recommender])


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[Recommender]
    config_cls: type[Any]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, config_cls: type[Any], description: str) -> Callable[[M], M]:
    """Class decorator: record a model under `name` with its frozen config dataclass."""

    def wrap(cls: M) -> M:
        if name in _REGISTRY:
            msg = f"model {name!r} is already registered"
            raise KeyError(msg)
        if not dataclasses.is_dataclass(config_cls):
            msg = f"config of {name!r} must be a dataclass, got {config_cls!r}"
            raise TypeError(msg)
        cls.name = name
        _REGISTRY[name] = ModelEntry(name, cls, config_cls, description)
        return cls

    return wrap


def list_models() -> list[ModelEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        msg = f"unknown model {name!r}; expected one of {sorted(_REGISTRY)}"
        raise KeyError(msg)
    return _REGISTRY[name]


def make_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The model's config dataclass with `overrides` applied; unknown keys and wrong types raise."""
    entry = get(name)
    overrides = dict(overrides or {})
    known = {f.name: f for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        msg = f"model {name!r}: unknown config keys {unknown}; expected some of {sorted(known)}"
        raise ValueError(msg)
    defaults = entry.config_cls()
    for key, value in overrides.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            overrides[key] = float(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            msg = f"model {name!r}: config key {key!r} must be {expected.__name__}, got {value!r}"
            raise ValueError(msg)
    return dataclasses.replace(defaults, **overrides)


def create(name: str, *, n_items: int, config: Any = None) -> Recommender:
    """Build model `name` for a catalogue of `n_items` items (ids 1..n_items).

    `config` is the model's config dataclass, a mapping of overrides, or None for the defaults.
    """
    entry = get(name)
    if config is None or isinstance(config, Mapping):
        config = make_config(name, config)
    elif not isinstance(config, entry.config_cls):
        msg = f"model {name!r} expects a {entry.config_cls.__name__}, got {type(config).__name__}"
        raise TypeError(msg)
    return entry.cls(n_items=n_items, config=config)  # type: ignore[call-arg]
