"""Reads of channel settings, deliveries and messages."""

from __future__ import annotations

from apps.channels.models import ChannelSettings
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def channel_settings_get(*, tenant: Tenant) -> ChannelSettings:
    """The tenant's settings (an unsaved default row if it never saved any)."""
    with tenant_scope(tenant):
        found = ChannelSettings.objects.filter(tenant=tenant).first()
    return found or ChannelSettings(tenant=tenant)
