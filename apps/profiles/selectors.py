"""Reads of profiles (records of the built-in `profile` schema) and of their consent history."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.profiles.models import ProfileConsentEvent
from apps.schemas import selectors as schema_selectors
from apps.schemas.builtin import PROFILE
from apps.schemas.models import DataSchema, Record
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def profile_schema(*, tenant: Tenant) -> DataSchema:
    return schema_selectors.schema_get(tenant=tenant, name=PROFILE)


def profile_get(*, tenant: Tenant, key: str) -> Record:
    return schema_selectors.record_get(tenant=tenant, schema=profile_schema(tenant=tenant), key=key)


def consent_history(*, tenant: Tenant, key: str) -> QuerySet[ProfileConsentEvent]:
    with tenant_scope(tenant):
        return ProfileConsentEvent.objects.filter(tenant=tenant, profile_key=str(key)).select_related("by")
