"""Reads of channel settings, deliveries and messages."""

from __future__ import annotations

from typing import Any

from apps.channels import content as content_module
from apps.channels.models import ChannelSettings
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
