"""Populator for the isolation suite: channel settings (with secrets) for the tenant."""

from __future__ import annotations

from typing import Any

from apps.channels import services
from apps.tenants.models import Tenant
from tests.world import populator


@populator
def channels_world(tenant: Tenant, people: dict[str, Any]) -> None:
    services.channel_settings_update(
        tenant=tenant, by=people["admin"].user, smtp_host=f"smtp.{tenant.slug}.test", from_email=f"news@{tenant.slug}.test",
        smtp_password="secret", sms_webhook_url=f"https://sms.{tenant.slug}.test/hook", sms_webhook_secret="secret")
