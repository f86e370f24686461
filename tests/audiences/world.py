"""Populator for the isolation suite: a static and a dynamic audience of profiles."""

from __future__ import annotations

from typing import Any

from apps.audiences import services
from apps.profiles.services import profile_upsert
from apps.tenants.models import Tenant
from tests.world import populator


@populator
def audiences_world(tenant: Tenant, people: dict[str, Any]) -> None:
    by = people["marketer"].user
    # Populators run in app order (audiences before schemas): bring the profile it lists.
    profile_upsert(tenant=tenant, values={"id": f"{tenant.slug}-a1", "country": "FR"}, by=by)
    services.audience_create(tenant=tenant, name="Best customers", kind="static", keys=[f"{tenant.slug}-a1"],
                             by=by)
    services.audience_create(tenant=tenant, name="French profiles", kind="dynamic",
                             filter={"field": "country", "op": "eq", "value": "FR"}, by=by)
