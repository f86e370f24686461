"""Reads of channel settings, deliveries and messages."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.channels import content as content_module
from apps.channels.models import ChannelSettings, Delivery, Message, MessageStatus
from apps.core.errors import ApplicationError, NotFound
from apps.schemas import selectors as schema_selectors
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def channel_settings_get(*, tenant: Tenant) -> ChannelSettings:
    """The tenant's settings (an unsaved default row if it never saved any)."""
    with tenant_scope(tenant):
        found = ChannelSettings.objects.filter(tenant=tenant).first()
    return found or ChannelSettings(tenant=tenant)


def content_problems(*, tenant: Tenant, channel: str, content: Any, schema: str = "profile",
                     variables: list[str] | None = None) -> list[dict[str, Any]]:
    """What is wrong with `content` for `channel`, checked against the fields of `schema` and the
    declared `variables` (None: variables are not checked)."""
    try:
        data_schema = schema_selectors.schema_get(tenant=tenant, name=schema)
    except NotFound:
        raise ApplicationError("Unknown schema.", fields={"schema": [f"No schema named {schema!r}."]}) from None
    fields = {f.name for f in schema_selectors.field_list(tenant=tenant, schema=data_schema)}
    problems = content_module.content_problems(channel, content, fields=fields,
                                               variables=set(variables) if variables is not None else None)
    return [p.as_dict() for p in problems]


def delivery_list(*, tenant: Tenant, filters: dict[str, Any] | None = None) -> QuerySet[Delivery]:
    filters = filters or {}
    with tenant_scope(tenant):
        qs = Delivery.objects.filter(tenant=tenant).select_related("campaign")
    for name in ("campaign", "run"):
        if filters.get(name):
            try:
                qs = qs.filter(**{f"{name}_id": int(filters[name])})
            except (TypeError, ValueError):
                raise ApplicationError(f"Invalid {name}.", fields={name: ["Give an id."]}) from None
    if filters.get("channel"):
        qs = qs.filter(channel=filters["channel"])
    return qs


def delivery_get(*, tenant: Tenant, id: Any) -> Delivery:
    with tenant_scope(tenant):
        found = Delivery.objects.filter(tenant=tenant, pk=id).select_related("campaign").first()
    if found is None:
        raise NotFound("No such delivery.")
    return found


def delivery_counts(*, tenant: Tenant, delivery: Delivery) -> dict[str, Any]:
    """Live counts by status and exclusion reason (final ones once the delivery is done)."""
    from apps.channels import sending

    if delivery.tenant_id != tenant.pk:
        raise NotFound("No such delivery.")
    return sending.delivery_counts(delivery)


def message_list(*, tenant: Tenant, delivery: Delivery, status: str | None = None) -> QuerySet[Message]:
    with tenant_scope(tenant):
        qs = Message.objects.filter(tenant=tenant, delivery=delivery).order_by("id")
    if status:
        if status not in MessageStatus.values:
            raise ApplicationError("Invalid status.", fields={"status": [f"One of {', '.join(MessageStatus.values)}."]})
        qs = qs.filter(status=status)
    return qs
