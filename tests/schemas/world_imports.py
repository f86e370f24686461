"""Populator for the isolation suite: one finished import per schema of the tenant (called from
tests/schemas/world.py after the schemas exist), so that every import route has an object."""

from __future__ import annotations

from typing import Any

from apps.schemas.models import DataSchema, ImportJob, ImportStatus
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def populate_imports(tenant: Tenant, people: dict[str, Any]) -> None:
    with tenant_scope(tenant):
        for schema in DataSchema.objects.all():
            ImportJob.objects.create(
                schema=schema, created_by=people["admin"].user, file=f"imports/{tenant.pk}/gone",
                original_name="seed.csv", status=ImportStatus.SUCCEEDED,
                rows_read=1, rows_valid=1, rows_inserted=1)
