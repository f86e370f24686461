"""State changes of profiles: records of the built-in `profile` schema written through the
schema services (same validation, same locks), plus the consent history that every change of an
opt-in flag appends to."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.core.errors import ApplicationError
from apps.profiles.models import CONSENT_FIELDS, ConsentChannel, ProfileConsentEvent
from apps.profiles.selectors import profile_schema
from apps.schemas import services as schema_services
from apps.schemas.models import Record
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import tenant_scope


def _consent_changes(before: dict[str, Any] | None, after: dict[str, Any], given: Any) -> list[tuple[str, bool]]:
    """The opt-in flags that `given` (the values sent) set to a new value. A default filled in at
    creation is not a consent and is not recorded."""
    changes = []
    for channel, field in CONSENT_FIELDS.items():
        if not isinstance(given, dict) or field not in given:
            continue
        new = after.get(field)
        old = before.get(field) if before is not None else None
        if isinstance(new, bool) and new != old:
            changes.append((channel, new))
    return changes


def _log_consent(*, tenant: Tenant, key: str, changes: list[tuple[str, bool]], source: str,
                 by: User | None) -> None:
    if not changes:
        return
    with tenant_scope(tenant):
        ProfileConsentEvent.objects.bulk_create([
            ProfileConsentEvent(tenant=tenant, profile_key=key, channel=channel, opted_in=opted_in,
                                source=source[:100], by=by if by is not None and by.is_authenticated else None)
            for channel, opted_in in changes
        ])


@transaction.atomic
def profile_upsert(*, tenant: Tenant, values: dict[str, Any], by: User | None, source: str = "api"
                   ) -> tuple[Record, bool]:
    """Create the profile `values` identify by `id`, or merge `values` into it. Returns
    (profile, created). A change of an opt-in flag is recorded in the consent history."""
    schema = profile_schema(tenant=tenant)
    before = None
    if isinstance(values, dict) and values.get(schema.primary_key) is not None:
        with tenant_scope(tenant):
            existing = Record.objects.filter(schema=schema, key=str(values[schema.primary_key])).first()
        before = dict(existing.attributes) if existing else None
    record, created = schema_services.record_upsert(tenant=tenant, schema=schema, values=values, by=by)
    _log_consent(tenant=tenant, key=record.key, changes=_consent_changes(None if created else before, record.attributes,
                                                                        values),
                 source=source, by=by)
    return record, created


@transaction.atomic
def profile_create(*, tenant: Tenant, values: dict[str, Any], by: User | None, source: str = "api") -> Record:
    schema = profile_schema(tenant=tenant)
    record = schema_services.record_create(tenant=tenant, schema=schema, values=values, by=by)
    _log_consent(tenant=tenant, key=record.key, changes=_consent_changes(None, record.attributes, values), source=source,
                 by=by)
    return record


@transaction.atomic
def profile_update(*, tenant: Tenant, profile: Record, values: dict[str, Any], partial: bool = True,
                   by: User | None, source: str = "api") -> Record:
    schema = profile_schema(tenant=tenant)
    before = dict(profile.attributes)
    record = schema_services.record_update(tenant=tenant, schema=schema, record=profile, values=values,
                                           partial=partial, by=by)
    _log_consent(tenant=tenant, key=record.key, changes=_consent_changes(before, record.attributes, values), source=source,
                 by=by)
    return record


@transaction.atomic
def profile_delete(*, tenant: Tenant, profile: Record, by: User | None) -> None:
    schema_services.record_delete(tenant=tenant, schema=profile_schema(tenant=tenant), record=profile, by=by)


@transaction.atomic
def profile_consent_set(*, tenant: Tenant, profile: Record, channel: str, opted_in: bool, source: str = "api",
                        by: User | None) -> ProfileConsentEvent:
    """Opt a profile in or out of a channel: its flag changes and the history records it (even
    when the flag already had that value: a repeated unsubscribe is still a fact worth keeping)."""
    if channel not in CONSENT_FIELDS:
        raise ApplicationError("Unknown channel.", fields={"channel": [
            f"Choose one of {', '.join(ConsentChannel.values)}."]})
    schema = profile_schema(tenant=tenant)
    field = CONSENT_FIELDS[ConsentChannel(channel)]
    if profile.attributes.get(field) is not opted_in:
        schema_services.record_update(tenant=tenant, schema=schema, record=profile, values={field: opted_in},
                                      partial=True, by=by)
    with tenant_scope(tenant):
        return ProfileConsentEvent.objects.create(
            tenant=tenant, profile_key=profile.key, channel=channel, opted_in=opted_in, source=(source or "api")[:100],
            by=by if by is not None and by.is_authenticated else None)
