"""Populator for the isolation suite: a custom schema linked to profiles, with records, and
profiles. Schema names and record keys carry the tenant's slug: routes name schemas and records
by name and key, so acme's `purchase` and globex's `purchase` would both (rightly) answer 200;
distinct names make "another tenant's object" mean what the suite checks."""

from __future__ import annotations

import importlib
from typing import Any

from apps.schemas import services
from apps.schemas.builtin import PROFILE
from apps.schemas.models import DataSchema
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.world import POPULATORS, populator

PURCHASE_FIELDS = [
    {"name": "profile_id", "type": "string"},
    {"name": "amount", "type": "decimal", "indexed": True},
    {"name": "purchased_at", "type": "datetime"},
    {"name": "channel", "type": "enum", "enum_values": ["web", "store"]},
]


def purchase_schema_name(tenant: Tenant) -> str:
    return f"{tenant.slug.replace('-', '_')}_purchase"


def build_purchases(tenant: Tenant, by: Any = None) -> DataSchema:
    """A `<slug>_purchase` schema with a many-to-one link `profile` to profiles (and its reverse
    `purchases`), two profiles and three purchases."""
    purchase = services.schema_create(
        tenant=tenant, name=purchase_schema_name(tenant), label="Purchases", by=by,
        primary_key={"name": "order_id", "type": "string"}, fields=PURCHASE_FIELDS)
    with tenant_scope(tenant):
        profile = DataSchema.objects.get(name=PROFILE)
    services.link_create(tenant=tenant, schema=purchase, name="profile", target=profile, kind="many_to_one",
                         source_field="profile_id", target_field="id", reverse_name="purchases", by=by)
    slug = tenant.slug
    for n, country in ((1, "FR"), (2, "DE")):
        services.record_create(tenant=tenant, schema=profile, by=by, values={
            "id": f"{slug}-p{n}", "email": f"p{n}@{slug}.test", "first_name": f"Person{n}", "country": country})
    for n, (who, amount) in enumerate([(1, "19.90"), (1, "5"), (2, "120")], start=1):
        services.record_create(tenant=tenant, schema=purchase, by=by, values={
            "order_id": f"{slug}-o{n}", "profile_id": f"{slug}-p{who}", "amount": amount,
            "purchased_at": f"2026-01-0{n}T10:00:00Z", "channel": "web"})
    return purchase


@populator
def schemas_world(tenant: Tenant, people: dict[str, Any]) -> None:
    build_purchases(tenant, by=people["admin"].user)
    _imports_world(tenant, people)


def _imports_world(tenant: Tenant, people: dict[str, Any]) -> None:
    """The imports populator (tests/schemas/world_imports.py) lives beside this one; the suite
    only imports `world` modules, so it is called from here."""
    try:
        module = importlib.import_module("tests.schemas.world_imports")
    except ModuleNotFoundError as exc:
        if exc.name != "tests.schemas.world_imports":
            raise
        return
    for name in dir(module):
        func = getattr(module, name)
        if (name.startswith(("populate", "imports_world")) and callable(func) and func not in POPULATORS
                and getattr(func, "__module__", None) == module.__name__):
            func(tenant, people)
