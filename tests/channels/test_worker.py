"""Exactly one message per recipient with real workers: SIGKILLs of the worker mid-send, pause
and resume, against a real SMTP server on loopback that counts Message-IDs."""

from __future__ import annotations

import collections
import time

import pytest
from django.db import transaction

from apps.campaigns import engine, services
from apps.channels import services as channel_services
from apps.channels.models import Delivery, Message
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign, wait_for_run
from tests.channels.bulk import bulk_profiles

pytestmark = pytest.mark.worker


@pytest.fixture
def fast_recovery(monkeypatch):
    """Short leases and polls (read by the worker too), so that recovery fits in a test."""
    monkeypatch.setenv("CHANNELS_LEASE_SECONDS", "3")
    monkeypatch.setenv("CHANNELS_POLL_SECONDS", "1")


@pytest.fixture
def two_senders(monkeypatch):
    """Two senders per delivery (before the worker starts: it reads its environment then)."""
    monkeypatch.setenv("CHANNELS_SENDERS_PER_DELIVERY", "2")


def graph(**config):
    return {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "who", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "mail", "type": "email", "config": {
                      "content": {"subject": "Hi {{ profile.first_name }}", "html": "<p>{{ profile.id }}</p>"},
                      "send_without_confirmation": True, **config}}],
        "edges": [{"from": "start", "port": "out", "to": "who"}, {"from": "who", "port": "out", "to": "mail"}],
    }


def start(acme, people, smtp_sink, g, **settings):
    channel_services.channel_settings_update(
        tenant=acme, by=None, smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_security="none",
        from_email="news@acme.test", **settings)
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, g)
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
    return campaign, run


def wait_until(predicate, timeout=60.0):
    """Poll `predicate`, playing beat meanwhile (the sweeper, every half second)."""
    deadline = time.monotonic() + timeout
    swept = 0.0
    while time.monotonic() < deadline:
        if predicate():
            return
        if time.monotonic() - swept > 0.5:
            with transaction.atomic():
                engine.sweep()
            swept = time.monotonic()
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def ledger(acme, run):
    with tenant_scope(acme):
        delivery = Delivery.objects.get(run=run)
        return delivery, list(Message.objects.filter(delivery=delivery).values_list(
            "recipient_key", "status", "idempotency_key"))


def test_sigkill_mid_send_then_every_recipient_gets_exactly_one_message(fast_recovery, two_senders, worker, acme,
                                                                         people, smtp_sink):
    """20,000 recipients, two senders at once (one per worker process), and the whole worker
    SIGKILLed four times while batches are in flight."""
    started = time.monotonic()
    recipients = bulk_profiles(acme, 20_000)
    # No pacing to speak of (the tenant's default is 500/s), so that the senders are handing
    # messages over, not waiting for their slot, when the kills come.
    _, run = start(acme, people, smtp_sink, graph(rate_per_second=2000, batch_size=100),
                   send_rate_per_second=100_000)
    kills = (2_050, 6_130, 10_270, 14_310)
    in_flight = []
    for threshold in kills:  # each time while batches are in flight
        wait_until(lambda t=threshold: len(smtp_sink.messages) >= t, timeout=180)
        worker.kill()
        with tenant_scope(acme):
            in_flight.append(Message.objects.filter(status="sending").count())
        worker.start()
    run = wait_for_run(run, timeout=300)
    assert run.status == "completed", run.error

    delivery, rows = ledger(acme, run)
    assert len(rows) == len(recipients) == len({key for key, _, _ in rows})   # one row per recipient
    with tenant_scope(acme):
        errors = collections.Counter(Message.objects.exclude(status="sent").values_list("error", flat=True))
    assert collections.Counter(status for _, status, _ in rows) == {"sent": len(recipients)}, errors
    ids = smtp_sink.message_ids()
    expected = {f"<{key}@acme.test>" for _, _, key in rows}
    assert set(ids) == expected                                  # distinct Message-IDs == recipients
    by_address = {r for m in smtp_sink.messages for r in m.rcpt_tos}
    assert by_address == {f"{key}@example.test" for key in recipients}
    # Retried batches re-send with the same Message-ID, which receivers deduplicate; report how many.
    with tenant_scope(acme):
        reclaimed = Message.objects.filter(delivery=delivery, attempts__gt=1).count()
    print(f"received {len(ids)} for {len(recipients)} recipients ({len(ids) - len(expected)} re-sent, "
          f"{reclaimed} claimed again after {len(kills)} kills with {in_flight} leased) in "
          f"{time.monotonic() - started:.0f} s")
    assert sum(in_flight) > 0 and reclaimed > 0  # the kills did cut batches short


def test_pause_stops_after_the_current_batch_and_resume_continues(fast_recovery, worker, acme, people, smtp_sink):
    bulk_profiles(acme, 300)
    campaign, run = start(acme, people, smtp_sink, graph(rate_per_second=50, batch_size=25))
    wait_until(lambda: len(smtp_sink.messages) >= 60)
    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme):
        services.campaign_pause(tenant=acme, campaign=campaign, by=marketer)

    def statuses():
        with tenant_scope(acme):
            return collections.Counter(Message.objects.values_list("status", flat=True))

    wait_until(lambda: statuses()["sending"] == 0, timeout=30)  # the batch in flight finishes
    paused_at = len(smtp_sink.messages)
    time.sleep(3)
    assert len(smtp_sink.messages) == paused_at < 300       # nothing more while paused
    assert statuses()["sent"] == paused_at and paused_at % 25 == 0  # it stopped at a batch boundary
    with tenant_scope(acme):
        services.campaign_resume(tenant=acme, campaign=campaign, by=marketer)
    run = wait_for_run(run, timeout=60)
    assert run.status == "completed", run.error
    _, rows = ledger(acme, run)
    assert len(rows) == 300 and {status for _, status, _ in rows} == {"sent"}
    ids = smtp_sink.message_ids()
    assert len(ids) == len(set(ids)) == 300                  # continued where it stopped, not from the start
