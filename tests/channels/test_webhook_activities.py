"""SMS and push activities against a real HTTP server on loopback: signed requests, one
Idempotency-Key per message (the same on a retry), consent and addresses."""

from __future__ import annotations

import pytest

from apps.channels import providers
from apps.channels import services as channel_services
from apps.channels.models import Delivery, Message
from apps.profiles.services import profile_upsert
from apps.tenants.scoping import tenant_scope
from tests.channels.test_email_activity import nodes_of, run_campaign


def graph(node):
    node = {**node, "config": {"send_without_confirmation": True, **node["config"]}}
    return {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "who", "type": "build_audience", "config": {"filter": {}}}, node],
        "edges": [{"from": "start", "port": "out", "to": "who"}, {"from": "who", "port": "out", "to": node["id"]}],
    }


@pytest.fixture
def webhooks(acme, people, http_sink):
    channel_services.channel_settings_update(
        tenant=acme, by=None, sms_webhook_url=http_sink.url + "/sms", sms_webhook_secret="sms-key", sms_sender="ACME",
        push_webhook_url=http_sink.url + "/push", push_webhook_secret="push-key")
    return http_sink


def test_sms_is_signed_carries_an_idempotency_key_and_respects_opt_in(acme, people, eager, webhooks):
    profile_upsert(tenant=acme, values={"id": "a", "phone": "+33 6 11 11 11 11", "first_name": "Ann",
                                        "sms_opt_in": True}, by=None)
    profile_upsert(tenant=acme, values={"id": "b", "phone": "+33622222222", "first_name": "Bob"}, by=None)  # no opt-in
    profile_upsert(tenant=acme, values={"id": "c", "first_name": "Cy", "sms_opt_in": True}, by=None)  # no phone
    run = run_campaign(acme, people, eager, graph(
        {"id": "sms", "type": "sms", "config": {"content": {"text": "Hi {{ profile.first_name }}!"}}}))
    assert run.status == "completed", run.error
    [request] = webhooks.requests
    assert request.path == "/hook/sms" and request.json["to"] == "+33611111111"
    assert request.json["text"] == "Hi Ann!" and request.json["segments"] == 1 and request.json["from"] == "ACME"
    assert providers.verify_signature("sms-key", request.headers["X-Campaigns-Timestamp"], request.body,
                                      request.headers["X-Campaigns-Signature"])
    with tenant_scope(acme):
        message = Message.objects.get(recipient_key="a")
    assert request.headers["Idempotency-Key"] == str(message.idempotency_key) == request.json["message_id"]
    summary = nodes_of(run)["sms"].summary
    assert summary["sent"] == 1 and summary["excluded_by_reason"] == {"no_consent": 1, "no_address": 1}


def test_push_goes_to_the_device_tokens(acme, people, eager, webhooks):
    profile_upsert(tenant=acme, values={"id": "a", "first_name": "Ann", "push_tokens": ["t1", "t2"]}, by=None)
    profile_upsert(tenant=acme, values={"id": "b", "first_name": "Bob"}, by=None)  # no tokens
    run = run_campaign(acme, people, eager, graph({"id": "push", "type": "push", "config": {"content": {
        "title": "Hello {{ profile.first_name }}", "body": "News", "deep_link": "app://offers/{{ profile.id }}",
        "data": {"campaign": "{{ campaign.name }}"}}}}))
    assert run.status == "completed", run.error
    [request] = webhooks.requests
    assert request.json["tokens"] == ["t1", "t2"] and request.json["title"] == "Hello Ann"
    assert request.json["deep_link"] == "app://offers/a" and request.json["data"] == {"campaign": "Test campaign"}
    assert providers.verify_signature("push-key", request.headers["X-Campaigns-Timestamp"], request.body,
                                      request.headers["X-Campaigns-Signature"])
    assert nodes_of(run)["push"].summary["excluded_by_reason"] == {"no_address": 1}


def test_a_transient_error_is_retried_with_the_same_idempotency_key(acme, people, eager, webhooks):
    profile_upsert(tenant=acme, values={"id": "a", "phone": "+33611111111", "sms_opt_in": True}, by=None)
    seen = []

    def flaky(request):
        seen.append(request.headers["Idempotency-Key"])
        return 503 if len(seen) == 1 else 200

    webhooks.status = flaky
    run = run_campaign(acme, people, eager, graph(
        {"id": "sms", "type": "sms", "config": {"content": {"text": "Hi"}}}))
    assert run.status == "completed", run.error
    assert len(seen) == 2 and seen[0] == seen[1]
    with tenant_scope(acme):
        message = Message.objects.get()
        assert Delivery.objects.get().status == "done"
    assert message.status == "sent" and message.attempts == 2


def test_a_refusing_webhook_fails_the_message(acme, people, eager, webhooks):
    profile_upsert(tenant=acme, values={"id": "a", "phone": "+33611111111", "sms_opt_in": True}, by=None)
    webhooks.status = 400
    run = run_campaign(acme, people, eager, graph({"id": "sms", "type": "sms", "config": {"content": {"text": "x"}}}))
    node = nodes_of(run)["sms"]
    assert node.outputs["failed"]["count"] == 1 and node.outputs["sent"]["count"] == 0
    with tenant_scope(acme):
        assert "HTTP 400" in Message.objects.get().error
