"""The registry of activity types: the database stores the stable string key, the registry maps
it to the class. Registering a key twice is an error, as in Sentry's `Registry`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from apps.activities.base import Activity

A = TypeVar("A", bound="type[Activity]")

_registry: dict[str, type[Activity]] = {}


class UnknownActivity(KeyError):
    pass


def register(cls: A) -> A:
    key = cls.type
    if not key:
        raise ValueError(f"{cls.__name__} has no `type`")
    if key in _registry and _registry[key] is not cls:
        raise ValueError(f"activity type {key!r} is already registered by {_registry[key].__name__}")
    _registry[key] = cls
    return cls


def get(key: str) -> Activity:
    try:
        return _registry[key]()
    except KeyError:
        raise UnknownActivity(key) from None


def exists(key: str) -> bool:
    return key in _registry


def all_types() -> dict[str, type[Activity]]:
    return dict(sorted(_registry.items()))


def load_all() -> None:
    """Import every module of this package so each activity registers itself."""
    import apps.activities as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in {"base", "registry", "apps", "population", "schedules"}:
            importlib.import_module(f"apps.activities.{module.name}")
    from django.conf import settings

    for name in getattr(settings, "EXTRA_ACTIVITY_MODULES", []):
        importlib.import_module(name)
