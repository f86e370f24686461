"""The e-mail activity in the engine, run inline (Celery eager mode) against a real SMTP server
on loopback: exclusions by reason, the ledger, exactly one message per recipient, pressure caps,
throttling, the send window and test mode."""

from __future__ import annotations

import time

import pytest

from apps.campaigns import engine, services
from apps.campaigns.models import NodeState
from apps.channels import services as channel_services
from apps.channels.models import Delivery, Message
from apps.profiles.services import profile_upsert
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

CONTENT = {"subject": "Hello {{ profile.first_name | default: 'friend' }}",
           "html": "<p>Hi {{ profile.first_name }}, {{ vars.promo | default: 'no promo' }}</p>"}


def email_graph(**config):
    return {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "who", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "mail", "type": "email",
                   "config": {"content": CONTENT, "send_without_confirmation": True, **config}},
                  {"id": "done", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "who"}, {"from": "who", "port": "out", "to": "mail"},
                  {"from": "mail", "port": "sent", "to": "done"}],
    }


def add_profiles(tenant, n, prefix="p", **values):
    for i in range(n):
        profile_upsert(tenant=tenant, values={"id": f"{prefix}{i}", "email": f"{prefix}{i}@example.test",
                                              "first_name": f"Name{i}", **values}, by=None)


def run_campaign(acme, people, eager, graph, *, test=False):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, graph, variables=[{"name": "promo", "type": "string"}])
    with tenant_scope(acme), eager(execute=True):
        if test:
            run = services.campaign_test(tenant=acme, campaign=campaign, by=marketer)
        else:
            services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
            run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
    return run


def nodes_of(run):
    with tenant_scope(run.tenant):
        return {n.node_id: n for n in NodeState.objects.filter(run=run)}


def test_email_goes_once_to_each_reachable_consenting_profile(acme, people, eager, smtp_ready):
    add_profiles(acme, 5)
    profile_upsert(tenant=acme, values={"id": "noaddr", "first_name": "X"}, by=None)
    profile_upsert(tenant=acme, values={"id": "optout", "email": "out@example.test", "email_opt_in": False}, by=None)
    run = run_campaign(acme, people, eager, email_graph())
    assert run.status == "completed", run.error
    received = smtp_ready.messages
    assert sorted(r for m in received for r in m.rcpt_tos) == [f"p{i}@example.test" for i in range(5)]
    assert {m.message["Subject"] for m in received} == {f"Hello Name{i}" for i in range(5)}
    assert "Hi Name0, no promo" in next(m for m in received if m.rcpt_tos == ["p0@example.test"]).message.get_body(
        ("plain",)).get_content()
    with tenant_scope(acme):
        delivery = Delivery.objects.get(run=run)
        messages = {m.recipient_key: m for m in Message.objects.filter(delivery=delivery)}
    assert len(messages) == 7
    assert {k for k, m in messages.items() if m.status == "sent"} == {f"p{i}" for i in range(5)}
    assert (messages["noaddr"].status, messages["noaddr"].reason) == ("excluded", "no_address")
    assert (messages["optout"].status, messages["optout"].reason) == ("excluded", "no_consent")
    # The provider saw each message's idempotency key as its Message-ID.
    assert {m.message_id for m in received} == {f"<{messages[f'p{i}'].idempotency_key}@mail.acme.test>"
                                                for i in range(5)}
    node = nodes_of(run)["mail"]
    assert node.outputs["sent"]["count"] == 5 and node.outputs["excluded"]["count"] == 2
    assert node.outputs["failed"]["count"] == 0
    assert node.summary["excluded_by_reason"] == {"no_address": 1, "no_consent": 1}
    assert node.summary["sent"] == 5 and node.executions == 1
    assert delivery.status == "done"


def test_pressure_cap_excludes_profiles_already_contacted(acme, people, eager, smtp_ready):
    add_profiles(acme, 3)
    channel_services.channel_settings_update(tenant=acme, by=None, pressure_max_per_day=1)
    first = run_campaign(acme, people, eager, email_graph())
    second = run_campaign(acme, people, eager, email_graph())
    assert first.status == second.status == "completed"
    assert len(smtp_ready.messages) == 3
    node = nodes_of(second)["mail"]
    assert node.summary["excluded_by_reason"] == {"pressure": 3} and node.outputs["sent"]["count"] == 0
    # A weekly cap of 2 lets a second message through, not a third.
    channel_services.channel_settings_update(tenant=acme, by=None, pressure_max_per_day=None, pressure_max_per_week=2)
    third = run_campaign(acme, people, eager, email_graph())
    fourth = run_campaign(acme, people, eager, email_graph())
    assert nodes_of(third)["mail"].summary["sent"] == 3
    assert nodes_of(fourth)["mail"].summary["excluded_by_reason"] == {"pressure": 3}
    assert len(smtp_ready.messages) == 6


def test_a_refused_address_fails_and_goes_to_the_failed_port(acme, people, eager, smtp_ready):
    add_profiles(acme, 3)
    smtp_ready.refuse.add("p1@example.test")
    run = run_campaign(acme, people, eager, email_graph())
    node = nodes_of(run)["mail"]
    assert node.outputs["sent"]["count"] == 2 and node.outputs["failed"]["count"] == 1
    with tenant_scope(acme):
        failed = Message.objects.get(recipient_key="p1")
    assert failed.status == "failed" and "550" in failed.error


def test_throttling_paces_the_delivery(acme, people, eager, smtp_ready):
    add_profiles(acme, 30)
    started = time.monotonic()
    run = run_campaign(acme, people, eager, email_graph(rate_per_second=10))
    assert run.status == "completed"
    assert len(smtp_ready.messages) == 30
    assert time.monotonic() - started >= 1.9  # batches of 10 at 0 s, 1 s and 2 s


def test_tenant_rate_limit_applies_too(acme, people, eager, smtp_ready):
    add_profiles(acme, 20)
    channel_services.channel_settings_update(tenant=acme, by=None, send_rate_per_second=10)
    started = time.monotonic()
    run = run_campaign(acme, people, eager, email_graph(batch_size=10))
    assert run.status == "completed" and len(smtp_ready.messages) == 20
    assert time.monotonic() - started >= 0.9


def test_test_mode_counts_and_renders_samples_but_sends_nothing(acme, people, eager, smtp_ready):
    add_profiles(acme, 4)
    profile_upsert(tenant=acme, values={"id": "optout", "email": "out@example.test", "email_opt_in": False}, by=None)
    run = run_campaign(acme, people, eager, email_graph(), test=True)
    assert run.status == "completed", run.error
    assert smtp_ready.messages == []
    with tenant_scope(acme):
        assert not Delivery.objects.exists() and not Message.objects.exists()
    node = nodes_of(run)["mail"]
    assert node.summary["would_send"] == 4 and node.summary["excluded_by_reason"] == {"no_consent": 1}
    assert [s["rendered"]["subject"] for s in node.summary["samples"]] == ["Hello Name0", "Hello Name1", "Hello Name2"]
    assert node.outputs["sent"]["count"] == 4 and node.outputs["excluded"]["count"] == 1


def test_send_window_waits_then_excludes_whom_it_did_not_reach(acme, people, eager, smtp_ready):
    add_profiles(acme, 3)
    now_local = engine.now().astimezone(__import__("zoneinfo").ZoneInfo(acme.time_zone))
    # A window that opens in two hours: the node waits for it, nothing is sent.
    start = (now_local.hour + 2) % 24
    window = {"start": f"{start:02d}:00", "end": f"{(start + 1) % 24:02d}:00"}
    run = run_campaign(acme, people, eager, email_graph(window=window))
    node = nodes_of(run)["mail"]
    assert node.status == "waiting" and smtp_ready.messages == []
    with tenant_scope(acme):
        delivery = Delivery.objects.get(run=run)
    assert node.wake_at == delivery.window_starts_at
    # Suppose the window went by without a sender reaching anyone: they are excluded as such.
    later = delivery.window_ends_at + __import__("datetime").timedelta(seconds=1)
    real_now = engine.now
    engine.now = lambda: later
    try:
        with tenant_scope(acme), eager(execute=True):
            engine.sweep()
    finally:
        engine.now = real_now
    node = nodes_of(run)["mail"]
    assert node.status == "done" and node.summary["excluded_by_reason"] == {"window_closed": 3}
    assert smtp_ready.messages == []


def test_publish_refuses_content_with_unknown_fields_or_bad_syntax(acme, people):
    marketer = people["acme"]["marketer"].user
    graph = email_graph()
    graph["nodes"][2]["config"]["content"] = {"subject": "Hi {{ profile.shoe_size }}", "text": "a\n{% if x %}"}
    campaign = make_campaign(acme, marketer, graph)
    from apps.core.errors import ApplicationError

    with tenant_scope(acme), pytest.raises(ApplicationError) as raised:
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
    text = str(raised.value.fields)
    assert "Unknown field profile.shoe_size" in text and "line 2: Syntax error" in text


def campaign_mail(sink):
    """What the campaign sent (approval notifications to the tenant's people go out too)."""
    return [m for m in sink.messages if all(r.endswith("@example.test") for r in m.rcpt_tos)]


def test_requires_approval_sends_only_once_an_approver_signs_off(acme, people, eager, smtp_ready):
    from apps.approvals import services as approval_services
    from apps.approvals.models import Task

    add_profiles(acme, 3)
    run = run_campaign(acme, people, eager, email_graph(approval={"due": "1d"}))
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    assert nodes_of(run)["mail"].status == "waiting" and campaign_mail(smtp_ready) == []
    assert task.snapshot["count"] == 3 and task.title == "Send e-mail “Hello {{ profile.first_name | default: 'friend' }}”"
    assert [s["rendered"]["subject"] for s in task.snapshot["content"]["samples"]] == [
        "Hello Name0", "Hello Name1", "Hello Name2"]
    with tenant_scope(acme), eager(execute=True):
        approval_services.task_approve(tenant=acme, task=task, by=people["acme"]["approver"].user)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed", run.error
    assert len(campaign_mail(smtp_ready)) == 3 and nodes_of(run)["mail"].summary["sent"] == 3


def test_a_rejected_delivery_sends_nothing(acme, people, eager, smtp_ready):
    from apps.approvals import services as approval_services
    from apps.approvals.models import Task

    add_profiles(acme, 2)
    run = run_campaign(acme, people, eager, email_graph(approval={}))
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    with tenant_scope(acme), eager(execute=True):
        approval_services.task_reject(tenant=acme, task=task, by=people["acme"]["approver"].user, comment="Not now")
    with tenant_scope(acme):
        run.refresh_from_db()
        assert not Delivery.objects.filter(run=run).exists()
    assert run.status == "completed" and campaign_mail(smtp_ready) == []
    assert nodes_of(run)["mail"].outputs == {} and nodes_of(run)["done"].status == "skipped"
