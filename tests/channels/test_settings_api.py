"""Channel settings per tenant and the test send of each channel, against real servers on
loopback."""

from __future__ import annotations

import pytest

from apps.channels import encryption, providers
from apps.channels.models import ChannelSettings
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.channels.sinks import SmtpSink

URL = "/api/v1/channels/settings"


def configure_smtp(client, sink, **extra):
    response = client.patch(URL, {"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_security": "none",
                                  "from_email": "news@acme.test", "from_name": "Acme News", **extra}, format="json")
    assert response.status_code == 200, response.content
    return response


def test_admin_reads_defaults_and_changes_settings(api, acme):
    client = api("acme", "admin")
    body = client.get(URL).json()
    assert body["smtp_port"] == 587 and body["has_smtp_password"] is False and body["pressure_max_per_day"] is None
    body = client.patch(URL, {"smtp_host": "smtp.acme.test", "smtp_password": "s3cret!", "send_rate_per_second": 50,
                              "pressure_max_per_day": 2, "pressure_max_per_week": 5}, format="json").json()
    assert body["has_smtp_password"] is True and body["send_rate_per_second"] == 50
    assert "s3cret" not in str(body) and "smtp_password" not in body
    assert client.get(URL).json()["pressure_max_per_week"] == 5


def test_secrets_are_encrypted_at_rest_and_never_audited(api, acme):
    client = api("acme", "admin")
    client.patch(URL, {"smtp_password": "s3cret!", "sms_webhook_secret": "whsec-1"}, format="json")
    with tenant_scope(acme):
        row = ChannelSettings.objects.get()
        audits = list(AuditEntry.objects.filter(action="channels.settings_update").values_list("data", flat=True))
    assert "s3cret" not in row.smtp_password_encrypted and row.smtp_password_encrypted
    assert encryption.decrypt(row.smtp_password_encrypted) == "s3cret!"
    assert encryption.decrypt(row.sms_webhook_secret_encrypted) == "whsec-1"
    assert audits and "s3cret" not in str(audits)
    # Not giving a secret keeps it; "" removes it.
    client.patch(URL, {"from_email": "a@acme.test"}, format="json")
    assert client.get(URL).json()["has_smtp_password"] is True
    assert client.patch(URL, {"smtp_password": ""}, format="json").json()["has_smtp_password"] is False


@pytest.mark.parametrize("role", ["marketer", "approver", "viewer"])
def test_only_admins_manage_channels(api, acme, role):
    client = api("acme", role)
    assert client.get(URL).status_code == 403
    assert client.patch(URL, {"smtp_host": "x"}, format="json").status_code == 403
    assert client.post(URL + "/test-email", {"to": "a@b.test"}, format="json").status_code == 403


def test_invalid_values_are_refused(api, acme):
    client = api("acme", "admin")
    for bad in ({"smtp_port": 0}, {"smtp_security": "ssl3"}, {"sms_webhook_url": "ftp://x"},
                {"send_rate_per_second": 0}, {"from_email": "nope"}):
        response = client.patch(URL, bad, format="json")
        assert response.status_code == 400, bad
        assert set(bad) <= set(response.json()["error"]["fields"])


def test_test_email_reaches_a_real_smtp_server_with_login(api, acme):
    client = api("acme", "admin")
    with SmtpSink(username="acme", password="pw-1") as sink:
        configure_smtp(client, sink, smtp_username="acme", smtp_password="pw-1", reply_to="help@acme.test")
        response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")
        assert response.status_code == 200, response.content
        assert len(sink.messages) == 1
        received = sink.messages[0]
    assert received.rcpt_tos == ["me@example.test"] and received.mail_from == "news@acme.test"
    assert received.message_id == response.json()["message_id"]
    assert received.message["Reply-To"] == "help@acme.test"
    assert received.message["From"] == "Acme News <news@acme.test>"
    assert received.message_id.endswith("@acme.test>")


def test_test_email_reports_a_refused_login_and_an_unreachable_server(api, acme):
    client = api("acme", "admin")
    with SmtpSink(username="acme", password="pw-1") as sink:
        configure_smtp(client, sink, smtp_username="acme", smtp_password="wrong")
        response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "send_failed" and "refused the login" in response.json()[
            "error"]["message"]
        assert sink.messages == []
    response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")  # server gone
    assert response.status_code == 400 and "Cannot connect" in response.json()["error"]["message"]


def test_test_email_needs_settings(api, acme):
    response = api("acme", "admin").post(URL + "/test-email", {"to": "me@example.test"}, format="json")
    assert response.status_code == 400 and "not configured" in response.json()["error"]["message"]


def test_test_sms_and_push_are_signed_webhook_calls(api, acme, http_sink):
    client = api("acme", "admin")
    client.patch(URL, {"sms_webhook_url": http_sink.url, "sms_webhook_secret": "sms-secret", "sms_sender": "ACME",
                       "push_webhook_url": http_sink.url + "/push", "push_webhook_secret": "push-secret"},
                 format="json")
    sms = client.post(URL + "/test-sms", {"to": "+33612345678"}, format="json")
    push = client.post(URL + "/test-push", {"to": "device-token-1"}, format="json")
    assert sms.status_code == 200 and push.status_code == 200, (sms.content, push.content)
    first, second = http_sink.requests
    assert first.json["to"] == "+33612345678" and first.json["from"] == "ACME" and first.path == "/hook"
    assert second.json["tokens"] == ["device-token-1"] and second.path == "/hook/push"
    for request, secret, answer in ((first, "sms-secret", sms), (second, "push-secret", push)):
        assert request.headers["Idempotency-Key"] == answer.json()["message_id"]
        assert providers.verify_signature(secret, request.headers["X-Campaigns-Timestamp"], request.body,
                                          request.headers["X-Campaigns-Signature"])
        assert not providers.verify_signature("other", request.headers["X-Campaigns-Timestamp"], request.body,
                                              request.headers["X-Campaigns-Signature"])


def test_a_refusing_webhook_is_reported(api, acme, http_sink):
    http_sink.status = 422
    client = api("acme", "admin")
    client.patch(URL, {"sms_webhook_url": http_sink.url}, format="json")
    response = client.post(URL + "/test-sms", {"to": "+33612345678"}, format="json")
    assert response.status_code == 400 and "HTTP 422" in response.json()["error"]["message"]


def test_private_destinations_are_refused_unless_allowed(api, acme, http_sink, settings):
    settings.CHANNELS_ALLOW_PRIVATE_NETWORKS = False
    client = api("acme", "admin")
    client.patch(URL, {"sms_webhook_url": http_sink.url, "smtp_host": "127.0.0.1", "from_email": "a@acme.test"},
                 format="json")
    response = client.post(URL + "/test-sms", {"to": "+33612345678"}, format="json")
    assert response.status_code == 400 and "non-public" in response.json()["error"]["message"]
    assert http_sink.requests == []
    response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")
    assert response.status_code == 400 and "non-public" in response.json()["error"]["message"]


def test_tenants_do_not_share_settings(api, acme, globex):
    api("acme", "admin").patch(URL, {"smtp_host": "smtp.acme.test"}, format="json")
    assert api("globex", "admin").get(URL).json()["smtp_host"] == ""


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_test_email_over_starttls_and_implicit_tls_with_login(api, acme, tmp_path, settings, security):
    from tests.channels.sinks import self_signed_certificate

    certificate = self_signed_certificate(tmp_path)
    client = api("acme", "admin")
    with SmtpSink(username="acme", password="pw-1", tls=security, certificate=certificate) as sink:
        configure_smtp(client, sink, smtp_security=security, smtp_username="acme", smtp_password="pw-1")
        # The server's certificate is not trusted yet: refused, nothing sent.
        response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")
        assert response.status_code == 400 and "CERTIFICATE_VERIFY_FAILED" in response.json()["error"]["message"]
        settings.CHANNELS_TLS_CA_FILE = str(certificate[0])
        response = client.post(URL + "/test-email", {"to": "me@example.test"}, format="json")
        assert response.status_code == 200, response.content
        assert [m.rcpt_tos for m in sink.messages] == [["me@example.test"]]
