"""A sender whose batch fails midway (something other than a rendering error raised while lanes
are already handing messages over): it winds the batch down before the error goes on, so what
reached the SMTP server is recorded as sent, nothing stays leased, and the next sender sends the
rest exactly once. Real PostgreSQL, real SMTP server on loopback."""

from __future__ import annotations

import collections
import time

import pytest

from apps.channels import sending, tracking
from apps.channels.models import Delivery, Message
from apps.tenants.scoping import tenant_scope
from tests.channels.test_email_activity import add_profiles, email_graph, run_campaign

RECIPIENTS = 40


def waiting_delivery(acme, people, eager):
    """A running e-mail delivery with every message pending: its send window opens in two hours,
    then is lifted so that the test calls the sender itself."""
    add_profiles(acme, RECIPIENTS)
    start = (__import__("datetime").datetime.now(__import__("zoneinfo").ZoneInfo(acme.time_zone)).hour + 2) % 24
    run = run_campaign(acme, people, eager, email_graph(
        window={"start": f"{start:02d}:00", "end": f"{(start + 1) % 24:02d}:00"}))
    with tenant_scope(acme):
        delivery = Delivery.objects.get(run=run)
        Delivery.objects.filter(pk=delivery.pk).update(window_starts_at=None, window_ends_at=None)
        assert Message.objects.filter(delivery=delivery, status="pending").count() == RECIPIENTS
    return delivery


def rows(acme, delivery):
    with tenant_scope(acme):
        return {m.recipient_key: m for m in Message.objects.filter(delivery=delivery)}


def test_an_error_mid_batch_records_what_was_sent_and_the_next_sender_sends_the_rest_once(
        acme, people, eager, smtp_ready, monkeypatch):
    """No content makes a rendering helper raise anything but RenderError today, so the failure is
    injected: tracking.instrument_email (called per message in the sender's loop, after earlier
    messages were queued to the lanes) raises on the 30th message, as a bug or a database error
    there would. The test is about how the sender handles that failure, not about the helper."""
    delivery = waiting_delivery(acme, people, eager)
    real = tracking.instrument_email
    calls = collections.Counter()

    def failing(html, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            # Fail once the lanes have handed some messages over (on a loaded machine rendering may
            # run ahead of them), so that the failure finds both sent and queued messages.
            deadline = time.monotonic() + 20
            while not smtp_ready.messages and time.monotonic() < deadline:
                time.sleep(0.01)
            raise RuntimeError("injected failure")
        return real(html, **kwargs)

    monkeypatch.setattr(tracking, "instrument_email", failing)
    with tenant_scope(acme), pytest.raises(RuntimeError, match="injected failure"):
        sending.delivery_send(tenant=acme, delivery_id=delivery.pk)

    first = list(smtp_ready.messages)
    ledger = rows(acme, delivery)
    assert 0 < len(first) < RECIPIENTS
    assert not [k for k, m in ledger.items() if m.status == "sending" or m.lease_owner]
    received = {r.split("@")[0] for m in first for r in m.rcpt_tos}
    assert received == {k for k, m in ledger.items() if m.status == "sent"}
    # Those never handed over are pending again, their attempt not counted.
    assert all(m.status == "pending" and m.attempts == 0 for k, m in ledger.items() if k not in received)

    monkeypatch.setattr(tracking, "instrument_email", real)
    with tenant_scope(acme):
        assert sending.delivery_send(tenant=acme, delivery_id=delivery.pk) == "done"
    ledger = rows(acme, delivery)
    assert {m.status for m in ledger.values()} == {"sent"}
    everything = smtp_ready.messages
    assert sorted(r for m in everything for r in m.rcpt_tos) == sorted(f"p{i}@example.test" for i in range(RECIPIENTS))
    assert len({m.message_id for m in everything}) == len(everything) == RECIPIENTS
    assert {m.message_id for m in everything} == {f"<{m.idempotency_key}@mail.acme.test>" for m in ledger.values()}


def test_an_error_handing_one_message_over_fails_that_message_only(acme, people, eager, smtp_ready, monkeypatch):
    """A lane that meets an unexpected error for one message (injected in _Provider.send for one
    recipient: no real input does it today) records that message as failed with the error and
    goes on with the others."""
    delivery = waiting_delivery(acme, people, eager)
    real = sending._Provider.send

    def send(self, *, key, address, rendered):
        if address == "p7@example.test":
            raise ValueError("injected failure")
        return real(self, key=key, address=address, rendered=rendered)

    monkeypatch.setattr(sending._Provider, "send", send)
    with tenant_scope(acme):
        assert sending.delivery_send(tenant=acme, delivery_id=delivery.pk) == "done"
    ledger = rows(acme, delivery)
    assert ledger["p7"].status == "failed" and "injected failure" in ledger["p7"].error
    assert {k for k, m in ledger.items() if m.status == "sent"} == {f"p{i}" for i in range(RECIPIENTS)} - {"p7"}
    assert len(smtp_ready.messages) == RECIPIENTS - 1
