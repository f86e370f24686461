"""A populated world for route-walking tests: every app registers a populator that creates at
least one object of each kind it serves through the API, for a given tenant. The isolation suite
(tests/test_isolation.py) builds the world for `acme` and `globex` and then discovers routes by
itself; when a new list route shows no acme object, the fix is a populator here, not a change
to the suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.tenants.models import Tenant

Populator = Callable[[Tenant, dict[str, Any]], None]
POPULATORS: list[Populator] = []


def populator(func: Populator) -> Populator:
    POPULATORS.append(func)
    return func


def build_world(tenant: Tenant, people: dict[str, Any]) -> None:
    """Run every populator for `tenant`; `people` maps role -> Person of that tenant."""
    _import_populators()
    for func in POPULATORS:
        func(tenant, people)


def _import_populators() -> None:
    # Each app's test package may define `tests/<app>/world.py`; importing it registers its
    # populators.
    import importlib
    import pkgutil

    import tests

    for module in pkgutil.iter_modules(tests.__path__):
        if module.ispkg:
            try:
                importlib.import_module(f"tests.{module.name}.world")
            except ModuleNotFoundError as exc:
                if exc.name != f"tests.{module.name}.world":
                    raise
