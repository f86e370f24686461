"""Populator for the isolation suite: channel settings (with secrets), and a delivery with a
message for the deliveries routes."""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from apps.campaigns import services as campaign_services
from apps.channels import services
from apps.channels.models import Delivery, Message
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.world import populator

GRAPH = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}}, {"id": "end", "type": "end"}],
         "edges": [{"from": "start", "port": "out", "to": "end"}]}


@populator
def channels_world(tenant: Tenant, people: dict[str, Any]) -> None:
    services.channel_settings_update(
        tenant=tenant, by=people["admin"].user, smtp_host=f"smtp.{tenant.slug}.test", from_email=f"news@{tenant.slug}.test",
        smtp_password="secret", sms_webhook_url=f"https://sms.{tenant.slug}.test/hook", sms_webhook_secret="secret")
    marketer = people["marketer"].user
    with tenant_scope(tenant):
        campaign = campaign_services.campaign_create(tenant=tenant, by=marketer, name=f"{tenant.slug} newsletter",
                                                     graph=GRAPH)
        run = campaign_services.campaign_test(tenant=tenant, campaign=campaign, by=marketer)
        delivery = Delivery.objects.create(tenant=tenant, run=run, campaign=campaign, node_id="mail", channel="email",
                                           dimension="profile", content={"subject": "Hi", "text": "Hello"}, targeted=1)
        Message.objects.create(tenant=tenant, delivery=delivery, recipient_key=f"{tenant.slug}-1",
                               address=f"1@{tenant.slug}.test", status="sent", idempotency_key=uuid.uuid4(),
                               queued_at=timezone.now(), sent_at=timezone.now())
