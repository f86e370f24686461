"""Asynchronous bounces: delivery status notifications (RFC 3464, written as Postfix writes them)
and providers' JSON bounces about e-mails really sent to the loopback SMTP server, posted to
`POST /api/v1/channels/bounces`: suppression on a hard bounce, an event only on a soft one, the
report's counts, idempotency, malformed bodies, tenant isolation and roles."""

from __future__ import annotations

import csv
import io
import json
from email.message import Message as MimeMessage
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.channels.models import Message, MessageEvent, Suppression
from apps.profiles.services import profile_upsert
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.channels.test_email_activity import email_graph, nodes_of, run_campaign
from tests.portal.conftest import portal  # noqa: F401  (portal clients signed in by role)

URL = "/api/v1/channels/bounces"


def send(acme, people, eager, smtp_ready, *names):
    """A live run mailing `<name>@example.test` for each name; {address: received e-mail}."""
    for name in names:
        profile_upsert(tenant=acme, values={"id": name, "email": f"{name}@example.test"}, by=None)
    run = run_campaign(acme, people, eager, email_graph())
    assert run.status == "completed", run.error
    return {m.rcpt_tos[0]: m for m in smtp_ready.messages}


def dsn(received, *, action="failed", status="5.1.1", diagnostic="smtp; 550 5.1.1 <{rcpt}>: Recipient address "
        "rejected: User unknown in virtual mailbox table", original="headers", message_id=None):
    """The bounce Postfix writes: multipart/report (report-type=delivery-status) with a
    human-readable text/plain part, a message/delivery-status part (per-message fields, then one
    per-recipient block) and the original's headers as text/rfc822-headers (or the whole
    original as message/rfc822)."""
    rcpt = received.rcpt_tos[0]
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.test (Mail Delivery System)"
    report["To"] = received.mail_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Auto-Submitted"] = "auto-replied"
    report.attach(MIMEText(f"This is the mail system at host mx.example.test.\n\nI'm sorry to have to inform you "
                           f"that your message could not\nbe delivered to one or more recipients.\n\n<{rcpt}>: "
                           f"host mx.example.test said: 550 5.1.1 User unknown\n"))
    status_part = MIMEBase("message", "delivery-status")
    per_message = MimeMessage()
    per_message["Reporting-MTA"] = "dns; mx.example.test"
    per_message["X-Postfix-Queue-ID"] = "4FbT2k1xYz"
    per_message["Arrival-Date"] = "Mon, 23 Nov 2026 21:00:00 +0000 (UTC)"
    per_recipient = MimeMessage()
    per_recipient["Final-Recipient"] = f"rfc822; {rcpt}"
    per_recipient["Original-Recipient"] = f"rfc822;{rcpt}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = "dns; mx.example.test"
    per_recipient["Diagnostic-Code"] = diagnostic.format(rcpt=rcpt)
    status_part.attach(per_message)
    status_part.attach(per_recipient)
    report.attach(status_part)
    if original == "headers":
        head = received.raw.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")
        if message_id is not None:
            head = "\n".join(f"Message-ID: {message_id}" if line.lower().startswith("message-id:") else line
                             for line in head.split("\n"))
        report.attach(MIMEText(head + "\n", "rfc822-headers"))
    elif original == "message":
        report.attach(MIMEMessage(received.message))
    return report.as_bytes()


def post_dsn(client, raw):
    return client.post(URL, raw, content_type="message/rfc822")


def post_json(client, body):
    return client.post(URL, json.dumps(body), content_type="application/json")


def key_of(received):
    return received.message_id.strip("<>").split("@")[0]


def events(tenant, kind=None):
    with tenant_scope(tenant):
        qs = MessageEvent.objects.filter(tenant=tenant)
        if kind:
            qs = qs.filter(kind=kind)
        return sorted((e.message.address, e.kind) for e in qs.select_related("message"))


def suppressed(tenant):
    with tenant_scope(tenant):
        return sorted(Suppression.objects.filter(tenant=tenant).values_list("address", flat=True))


def test_hard_bounce_dsn_suppresses_the_address_once_and_the_next_delivery_excludes_it(
        api, acme, people, eager, smtp_ready):
    sent = send(acme, people, eager, smtp_ready, "ada", "bob")
    raw = dsn(sent["ada@example.test"])
    admin = api("acme", "admin")
    response = post_dsn(admin, raw)
    assert response.status_code == 200, response.content
    assert response.json() == {"unmatched": 0, "reports": [
        {"message_id": sent["ada@example.test"].message_id, "recipient": "ada@example.test", "type": "hard",
         "status": "5.1.1", "outcome": "recorded"}]}
    again = post_dsn(admin, raw)                         # the MTA retried its pipe: nothing new
    assert again.status_code == 200 and again.json()["reports"][0]["outcome"] == "duplicate"
    assert events(acme) == [("ada@example.test", "bounce")]
    assert suppressed(acme) == ["ada@example.test"]
    with tenant_scope(acme):
        event = MessageEvent.objects.get(kind="bounce")
        [entry] = AuditEntry.objects.filter(tenant=acme, action="channels.bounce")
    assert event.detail.startswith("5.1.1 smtp; 550 5.1.1 <ada@example.test>")
    assert (entry.actor, entry.object_id) == (people["acme"]["admin"].user, str(event.message_id))
    assert entry.data == {"type": "hard", "status": "5.1.1", "recipient": "ada@example.test", "source": "dsn",
                          "suppressed": True}

    smtp_ready.messages.clear()
    second = run_campaign(acme, people, eager, email_graph())
    assert nodes_of(second)["mail"].summary["excluded_by_reason"] == {"suppressed": 1}
    assert [m.rcpt_tos for m in smtp_ready.messages] == [["bob@example.test"]]


def test_soft_bounces_record_an_event_and_suppress_nothing(api, acme, people, eager, smtp_ready):
    sent = send(acme, people, eager, smtp_ready, "ada", "bob")
    admin = api("acme", "admin")
    delayed = dsn(sent["ada@example.test"], action="delayed", status="4.4.1",
                  diagnostic="X-Postfix; connect to mx.example.test[192.0.2.1]:25: Connection timed out",
                  original="message")  # the whole original, as message/rfc822
    expired = dsn(sent["bob@example.test"], action="failed", status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
    for raw in (delayed, expired):
        response = post_dsn(admin, raw)
        assert response.status_code == 200, response.content
        assert response.json()["reports"][0]["type"] == "soft"
    assert events(acme) == [("ada@example.test", "soft_bounce"), ("bob@example.test", "soft_bounce")]
    assert suppressed(acme) == []
    smtp_ready.messages.clear()
    second = run_campaign(acme, people, eager, email_graph())
    assert nodes_of(second)["mail"].summary["excluded_by_reason"] == {}
    assert sorted(m.rcpt_tos[0] for m in smtp_ready.messages) == ["ada@example.test", "bob@example.test"]


def test_provider_json_bounces(api, acme, people, eager, smtp_ready):
    sent = send(acme, people, eager, smtp_ready, "ada", "bob")
    admin = api("acme", "admin")
    hard = {"message_id": key_of(sent["ada@example.test"]), "recipient": "ada@example.test", "type": "hard",
            "reason": "mailbox does not exist"}
    soft = {"message_id": key_of(sent["bob@example.test"]), "recipient": "bob@example.test", "type": "soft",
            "reason": "mailbox full"}
    for body in (hard, hard, soft):
        assert post_json(admin, body).status_code == 200
    assert events(acme) == [("ada@example.test", "bounce"), ("bob@example.test", "soft_bounce")]
    assert suppressed(acme) == ["ada@example.test"]
    with tenant_scope(acme):
        assert AuditEntry.objects.filter(tenant=acme, action="channels.bounce").count() == 2
        assert MessageEvent.objects.get(kind="bounce").detail == "mailbox does not exist"


def test_report_counts_bounces(api, portal, acme, people, eager, smtp_ready):  # noqa: F811
    sent = send(acme, people, eager, smtp_ready, "ada", "bob", "cy")
    admin = api("acme", "admin")
    assert post_dsn(admin, dsn(sent["ada@example.test"])).status_code == 200
    assert post_dsn(admin, dsn(sent["bob@example.test"], action="delayed", status="4.4.7")).status_code == 200
    assert post_dsn(admin, dsn(sent["cy@example.test"], action="delivered", status="2.0.0",
                               diagnostic="smtp; 250 2.0.0 Ok")).status_code == 200
    with tenant_scope(acme):
        campaign_id = Message.objects.filter(tenant=acme).first().delivery.campaign_id
    report = api("acme", "viewer").get("/api/v1/channels/report", {"campaign": campaign_id}).json()
    assert {k: report[k] for k in ("sent", "failed", "delivered", "undelivered", "bounced", "soft_bounced")} == {
        "sent": 3, "failed": 0, "delivered": 1, "undelivered": 0, "bounced": 1, "soft_bounced": 1}
    # A hard bounce is a report of its own: the delivery rate counts it, the bounce rate is over e-mails sent.
    exported = api("acme", "viewer").get("/api/v1/channels/report.csv", {"campaign": campaign_id, "table": "deliveries"})
    [row] = csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode()))
    assert (row["bounced"], row["soft_bounced"], row["delivery_rate_pct"], row["bounce_rate_pct"]) == (
        "1", "1", "50.0", "33.33")
    page = portal("acme", "viewer").get(f"/campaigns/{campaign_id}/report/").content.decode()
    assert 'data-count="bounced"' in page and "33.33 %" in page and 'data-count="soft_bounced"' in page
    [hour] = report["over_time"]
    assert (hour["bounce"], hour["soft_bounce"], hour["delivered"]) == (1, 1, 1)
    assert api("globex", "admin").get("/api/v1/channels/report").json()["bounced"] == 0


@pytest.mark.parametrize(("content_type", "body", "field"), [
    ("message/rfc822", b"", "body"),
    ("message/rfc822", b"From: someone@example.test\r\nSubject: hello\r\n\r\nNot a bounce.\r\n", "Content-Type"),
    ("text/plain", b"550 5.1.1 user unknown", "Content-Type"),
    ("application/json", b"{not json", "body"),
    ("application/json", b"[1, 2]", "body"),
    ("application/json", b'{"type": "hard"}', "message_id"),
    ("application/json", b'{"message_id": "x", "type": "bouncy"}', "type"),
    ("application/json", b'{"message_id": "x", "type": "soft", "reason": 5}', "reason"),
])
def test_malformed_bodies_are_400_naming_the_field(api, acme, people, content_type, body, field):
    response = api("acme", "admin").post(URL, body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()


def test_malformed_dsns_are_400_naming_the_field(api, acme, people, eager, smtp_ready):
    received = send(acme, people, eager, smtp_ready, "ada")["ada@example.test"]
    admin = api("acme", "admin")
    for raw, field in ((dsn(received, original="none"), "Message-ID"),
                       (dsn(received, status="bounced"), "Status"),
                       (dsn(received, action="exploded"), "Action")):
        response = post_dsn(admin, raw)
        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["fields"]
    assert events(acme) == [] and suppressed(acme) == []


def test_unknown_messages_are_accepted_as_unmatched(api, acme, people, eager, smtp_ready):
    received = send(acme, people, eager, smtp_ready, "ada")["ada@example.test"]
    admin = api("acme", "admin")
    for raw in (dsn(received, message_id="<00000000-0000-4000-8000-000000000000@mail.acme.test>"),
                dsn(received, message_id="<20261123.ABC@elsewhere.test>")):     # not a Message-ID we write
        response = post_dsn(admin, raw)
        assert response.status_code == 202
        assert response.json()["unmatched"] == 1 and response.json()["reports"][0]["outcome"] == "unmatched"
    response = post_json(admin, {"message_id": "nope", "type": "hard"})
    assert response.status_code == 202 and response.json()["unmatched"] == 1
    assert events(acme) == [] and suppressed(acme) == []


def test_a_tenant_cannot_bounce_another_tenants_message(api, acme, globex, people, eager, smtp_ready):
    received = send(acme, people, eager, smtp_ready, "ada")["ada@example.test"]
    other = api("globex", "admin")
    response = post_dsn(other, dsn(received))
    assert response.status_code == 202 and response.json()["reports"][0]["outcome"] == "unmatched"
    response = post_json(other, {"message_id": key_of(received), "type": "hard"})
    assert response.status_code == 202 and response.json()["unmatched"] == 1
    assert events(acme) == [] and events(globex) == []
    assert suppressed(acme) == [] and suppressed(globex) == []
    with tenant_scope(globex):
        assert not AuditEntry.objects.filter(tenant=globex, action="channels.bounce").exists()


def test_roles_and_authentication(api, acme, people, eager, smtp_ready):
    received = send(acme, people, eager, smtp_ready, "ada")["ada@example.test"]
    raw = dsn(received)
    for role in ("marketer", "approver", "viewer"):
        assert post_dsn(api("acme", role), raw).status_code == 403, role
    assert post_dsn(APIClient(), raw).status_code == 401
    assert events(acme) == []
    session = Client()                                    # a signed-in admin's session works too
    session.force_login(people["acme"]["admin"].user)
    response = session.post(URL, raw, content_type="message/rfc822")
    assert response.status_code == 200, response.content
    assert events(acme) == [("ada@example.test", "bounce")]
