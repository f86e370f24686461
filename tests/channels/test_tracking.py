"""Tracking and consent: signed open pixel and click redirects (recorded once), unsubscribe page
and RFC 8058 one-click headers, hard bounces suppressing the address, signed status reports."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

from django.test import Client

from apps.channels import providers
from apps.channels import services as channel_services
from apps.channels.models import Message, MessageEvent, Suppression
from apps.profiles.models import ProfileConsentEvent
from apps.profiles.selectors import profile_get
from apps.profiles.services import profile_upsert
from apps.tenants.scoping import tenant_scope
from tests.channels.test_email_activity import email_graph, nodes_of, run_campaign

CONTENT = {"subject": "Offers", "html": '<html><body><p>See <a href="https://shop.test/sale?a=1&amp;b=2">the sale</a>'
                                        ' or <a href="{{ message.unsubscribe_url }}">unsubscribe</a></p></body></html>'}


def sent_email(acme, people, eager, smtp_ready):
    profile_upsert(tenant=acme, values={"id": "ada", "email": "ada@example.test", "first_name": "Ada"}, by=None)
    graph = email_graph()
    graph["nodes"][2]["config"]["content"] = CONTENT
    run = run_campaign(acme, people, eager, graph)
    assert run.status == "completed", run.error
    [received] = smtp_ready.messages
    return received.message


def path_of(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def events(acme, kind):
    with tenant_scope(acme):
        return list(MessageEvent.objects.filter(kind=kind).values_list("link", flat=True))


def test_email_carries_one_click_unsubscribe_headers_tracked_links_and_a_pixel(acme, people, eager, smtp_ready):
    message = sent_email(acme, people, eager, smtp_ready)
    html = message.get_body(("html",)).get_content()
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f'href="{unsubscribe}"' in html                      # the template's own link is the same one
    [click] = re.findall(r'href="([^"]*/t/c/[^"]+)"', html)
    [pixel] = re.findall(r'<img src="([^"]*/t/o/[^"]+)"', html)
    assert "shop.test" not in click                            # the link is signed, not readable
    client = Client()
    for _ in range(2):
        response = client.get(path_of(click))
        assert response.status_code == 302 and response["Location"] == "https://shop.test/sale?a=1&b=2"
        assert client.get(path_of(pixel))["Content-Type"] == "image/gif"
    assert events(acme, "click") == ["https://shop.test/sale?a=1&b=2"]   # once per message and link
    assert events(acme, "open") == [""]


def test_tampered_links_record_nothing(acme, people, eager, smtp_ready):
    message = sent_email(acme, people, eager, smtp_ready)
    html = message.get_body(("html",)).get_content()
    [click] = re.findall(r'href="([^"]*/t/c/[^"]+)"', html)
    [pixel] = re.findall(r'<img src="([^"]*/t/o/[^"]+)"', html)
    client = Client()
    assert client.get(path_of(click)[:-3] + "xyz").status_code == 404
    assert client.get(path_of(pixel)[:-7] + "abc.gif").status_code == 200  # a pixel answers the same
    assert client.get("/u/not-a-token").status_code == 404
    assert events(acme, "click") == [] and events(acme, "open") == []


def test_one_click_unsubscribe_opts_out_and_the_next_send_excludes(acme, people, eager, smtp_ready):
    message = sent_email(acme, people, eager, smtp_ready)
    path = path_of(message["List-Unsubscribe"].strip("<>"))
    client = Client(enforce_csrf_checks=True)
    page = client.get(path)
    assert page.status_code == 200 and b"Unsubscribe" in page.content and b"Acme" in page.content
    response = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert profile_get(tenant=acme, key="ada").attributes["email_opt_in"] is False
    with tenant_scope(acme):
        consent = ProfileConsentEvent.objects.get(profile_key="ada")
    assert (consent.channel, consent.opted_in, consent.source) == ("email", False, "one-click unsubscribe")
    assert events(acme, "unsubscribe") == [""]
    graph = email_graph()
    graph["nodes"][2]["config"]["content"] = CONTENT
    again = run_campaign(acme, people, eager, graph)
    assert nodes_of(again)["mail"].summary["excluded_by_reason"] == {"no_consent": 1}
    assert len(smtp_ready.messages) == 1


def test_unsubscribe_page_form(acme, people, eager, smtp_ready):
    message = sent_email(acme, people, eager, smtp_ready)
    path = path_of(message["List-Unsubscribe"].strip("<>"))
    response = Client().post(path)
    assert response.status_code == 200 and b"You are unsubscribed" in response.content
    assert profile_get(tenant=acme, key="ada").attributes["email_opt_in"] is False


def test_hard_bounce_suppresses_the_address(acme, people, eager, smtp_ready):
    profile_upsert(tenant=acme, values={"id": "gone", "email": "gone@example.test"}, by=None)
    smtp_ready.refuse.add("gone@example.test")
    first = run_campaign(acme, people, eager, email_graph())
    assert nodes_of(first)["mail"].outputs["failed"]["count"] == 1
    with tenant_scope(acme):
        assert Suppression.objects.filter(channel="email", address="gone@example.test").exists()
    smtp_ready.refuse.clear()
    second = run_campaign(acme, people, eager, email_graph())
    assert nodes_of(second)["mail"].summary["excluded_by_reason"] == {"suppressed": 1}
    assert smtp_ready.messages == []


def test_signed_status_reports_of_sms(acme, people, eager, http_sink):
    channel_services.channel_settings_update(tenant=acme, by=None, sms_webhook_url=http_sink.url,
                                             sms_webhook_secret="sms-key")
    profile_upsert(tenant=acme, values={"id": "a", "phone": "+33611111111", "sms_opt_in": True}, by=None)
    graph = email_graph()
    graph["nodes"][2] = {"id": "mail", "type": "sms",
                         "config": {"content": {"text": "Hi"}, "send_without_confirmation": True}}
    run_campaign(acme, people, eager, graph)
    with tenant_scope(acme):
        key = str(Message.objects.get().idempotency_key)
    url = "/hooks/channels/acme/sms/status"

    def post(report, secret="sms-key"):
        body = json.dumps(report).encode()
        stamp = str(int(time.time()))
        return Client().post(url, body, content_type="application/json", headers={
            "X-Campaigns-Timestamp": stamp, "X-Campaigns-Signature": providers.signature(secret, stamp, body)})

    assert post({"message_id": key, "status": "delivered"}).status_code == 204
    assert post({"message_id": key, "status": "delivered"}).status_code == 204
    assert events(acme, "delivered") == [""]
    assert post({"message_id": key, "status": "delivered"}, secret="forged").status_code == 403
    assert post({"message_id": key, "status": "exploded"}).status_code == 400
    assert post({"message_id": "00000000-0000-0000-0000-000000000000", "status": "delivered"}).status_code == 404
    assert Client().post("/hooks/channels/globex/sms/status", b"{}", content_type="application/json").status_code == 403
    assert Client().post("/hooks/channels/nobody/sms/status", b"{}", content_type="application/json").status_code == 404


def test_report_counts_outcomes_and_events_per_campaign_and_over_time(api, acme, people, eager, smtp_ready):
    message = sent_email(acme, people, eager, smtp_ready)
    profile_upsert(tenant=acme, values={"id": "out", "email": "out@example.test", "email_opt_in": False}, by=None)
    html = message.get_body(("html",)).get_content()
    [click] = re.findall(r'href="([^"]*/t/c/[^"]+)"', html)
    [pixel] = re.findall(r'<img src="([^"]*/t/o/[^"]+)"', html)
    client = Client()
    for _ in range(3):
        client.get(path_of(pixel))
        client.get(path_of(click))
    Client().post(path_of(message["List-Unsubscribe"].strip("<>")), "List-Unsubscribe=One-Click",
                  content_type="application/x-www-form-urlencoded")
    with tenant_scope(acme):
        campaign_id = Message.objects.get().delivery.campaign_id
    report = api("acme", "viewer").get(f"/api/v1/channels/report?campaign={campaign_id}").json()
    assert {k: report[k] for k in ("targeted", "sent", "failed", "excluded", "opened", "clicked", "unsubscribed")} == {
        "targeted": 1, "sent": 1, "failed": 0, "excluded": 0, "opened": 1, "clicked": 1, "unsubscribed": 1}
    [hour] = report["over_time"]
    assert hour["sent"] == 1 and hour["open"] == 1 and hour["click"] == 1
    assert api("acme", "viewer").get("/api/v1/channels/report?campaign=x").status_code == 400
    assert api("globex", "admin").get(f"/api/v1/channels/report?campaign={campaign_id}").json()["targeted"] == 0
