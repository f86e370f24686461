"""A campaign whose deliveries' fate is known, for the report tests: two test runs, an e-mail
delivery in the first and an SMS delivery in the second, with messages in every status, exclusions
by reason and events at chosen times (the tenant is in Europe/Paris: 23:30 UTC is the next day
there). Rows are written directly (as tests/channels/world.py does): the sending itself is not
what these tests are about; tests/portal/test_reports.py also reports a delivery sent for real."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apps.campaigns import services as campaign_services
from apps.campaigns.models import Campaign, Run
from apps.channels.models import Delivery, Message, MessageEvent
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

GRAPH = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}}, {"id": "end", "type": "end"}],
         "edges": [{"from": "start", "port": "out", "to": "end"}]}
# A campaign name and a node id a spreadsheet would run as formulas.
NAME = '=HYPERLINK("https://evil.test","Spring sale")'
NODE = "-mail"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Reported:
    campaign: Campaign
    runs: list[Run]
    email: Delivery
    sms: Delivery


def _messages(tenant: Tenant, delivery: Delivery, spec: list[tuple[str, str, str | None]]) -> list[Message]:
    """spec: (status, reason, sent at) per recipient."""
    rows = [Message(tenant=tenant, delivery=delivery, recipient_key=f"{delivery.node_id}-{i}",
                    address=f"{i}@example.test", status=status, reason=reason, idempotency_key=uuid.uuid4(),
                    queued_at=at("2026-03-10T07:00:00"), sent_at=at(sent) if sent else None)
             for i, (status, reason, sent) in enumerate(spec)]
    return Message.objects.bulk_create(rows)


def _events(tenant: Tenant, events: list[tuple[Message, str, str, str]]) -> None:
    for message, kind, link, when in events:
        event = MessageEvent.objects.create(tenant=tenant, message=message, kind=kind, link=link)
        MessageEvent.objects.filter(pk=event.pk).update(at=at(when))  # `at` is auto_now_add


def reported_campaign(tenant: Tenant, people: dict[str, Any], name: str = NAME) -> Reported:
    """E-mail (run 1): 10 targeted, 6 sent (3 at 07:10 UTC, 3 at 09:40 UTC on March 10), 1 failed,
    2 excluded no_consent, 1 no_address; opened by 3 (one twice, one at 23:30 UTC), clicked by 2
    (one on two links), 1 unsubscribed. SMS (run 2): 4 targeted, 3 sent on March 11 at 10:00 UTC,
    1 excluded pressure; 2 delivered, 1 undelivered."""
    marketer = people["marketer"].user
    with tenant_scope(tenant):
        campaign = campaign_services.campaign_create(tenant=tenant, by=marketer, name=name, graph=GRAPH)
        runs = [campaign_services.campaign_test(tenant=tenant, campaign=campaign, by=marketer) for _ in range(2)]
        email = Delivery.objects.create(tenant=tenant, run=runs[0], campaign=campaign, node_id=NODE, channel="email",
                                        dimension="profile", content={"subject": "Hi", "text": "Hello"}, targeted=10,
                                        status="done", finished_at=at("2026-03-10T09:45:00"))
        sent = _messages(tenant, email, [
            *[("sent", "", "2026-03-10T07:10:00")] * 3, *[("sent", "", "2026-03-10T09:40:00")] * 3,
            ("failed", "", None), ("excluded", "no_consent", None), ("excluded", "no_consent", None),
            ("excluded", "no_address", None)])
        _events(tenant, [
            (sent[0], "open", "", "2026-03-10T08:05:00"), (sent[0], "click", "https://shop.test/a", "2026-03-10T08:06:00"),
            (sent[0], "click", "https://shop.test/b", "2026-03-10T08:07:00"), (sent[1], "open", "", "2026-03-10T10:15:00"),
            (sent[1], "click", "https://shop.test/a", "2026-03-10T10:16:00"),
            (sent[3], "open", "", "2026-03-10T23:30:00"), (sent[3], "unsubscribe", "", "2026-03-10T23:31:00")])
        sms = Delivery.objects.create(tenant=tenant, run=runs[1], campaign=campaign, node_id="sms", channel="sms",
                                      dimension="profile", content={"text": "Hi"}, targeted=4, status="done")
        texts = _messages(tenant, sms, [*[("sent", "", "2026-03-11T10:00:00")] * 3, ("excluded", "pressure", None)])
        _events(tenant, [(texts[0], "delivered", "", "2026-03-11T10:00:05"),
                         (texts[1], "delivered", "", "2026-03-11T10:00:06"),
                         (texts[2], "undelivered", "", "2026-03-11T10:00:07")])
    return Reported(campaign=campaign, runs=runs, email=email, sms=sms)
