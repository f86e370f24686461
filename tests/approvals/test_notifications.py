"""E-mails to assignees (created, reassigned, before expiry; or a daily digest), sent through the
tenant's SMTP settings to a real SMTP server on loopback (aiosmtpd), with a signed link to the
task's decision page."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from apps.approvals import notifications, services
from apps.approvals.models import Task
from apps.campaigns import engine
from apps.channels.models import ChannelSettings, SmtpSecurity
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph, start_campaign
from tests.channels.sinks import SmtpSink


@pytest.fixture
def smtp(acme, settings):
    """acme's channel settings point at a real SMTP server on loopback."""
    settings.CHANNELS_ALLOW_PRIVATE_NETWORKS = True
    with SmtpSink() as sink:
        with tenant_scope(acme):
            ChannelSettings.objects.create(tenant=acme, smtp_host="127.0.0.1", smtp_port=sink.port,
                                           smtp_security=SmtpSecurity.NONE, from_email="campaigns@acme.test")
        yield sink


def received(sink):
    return {(tuple(m.rcpt_tos), str(m.message["Subject"])) for m in sink.messages}


def link_in(message) -> str:
    return re.search(r"https?://\S+/tasks/link/(\S+)/", message.get_content()).group(1)


def test_created_task_mails_each_group_member_a_signed_link(acme, people, marketer, eager, smtp):
    with tenant_scope(acme):
        services.approver_group_create(tenant=acme, name="Brand", by=None,
                                       members=["approver@acme.test", "admin@acme.test"])
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"group": "Brand"}, "due": "2d",
                                                                   "title": "Launch"}), eager)
    assert received(smtp) == {(("approver@acme.test",), "[Acme Corporation] New task: Launch"),
                              (("admin@acme.test",), "[Acme Corporation] New task: Launch")}
    message = smtp.messages[0].message
    assert str(message["From"]) == "campaigns@acme.test"
    body = message.get_content()
    assert campaign.name in body and "Recipients: 3" in body
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    assert notifications.task_link_read(link_in(message)) == {"task": task.pk, "tenant": acme.pk}
    assert notifications.task_link_read(link_in(message)[:-2] + "xx") is None


def test_reassigned_task_mails_the_new_assignee(acme, people, marketer, eager, smtp):
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"user": "approver@acme.test"}}),
                                   eager)
    smtp.messages.clear()
    with tenant_scope(acme), eager(execute=True):
        services.task_assign(tenant=acme, task=Task.objects.get(run=run), by=marketer, user="admin@acme.test")
    assert received(smtp) == {(("admin@acme.test",), "[Acme Corporation] Task assigned to you: "
                                                     f"Approve “{campaign.name}” (approve)")}


def test_reminder_before_expiry_is_sent_once(acme, marketer, eager, smtp):
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"user": "approver@acme.test"},
                                                                   "due": "1d"}), eager)
    smtp.messages.clear()
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    real = engine.now
    try:
        engine.now = lambda: task.due_at - dt.timedelta(hours=13)   # the window is 12 h (half of 1 day)
        with eager(execute=True):
            assert services.dangerously_tasks_remind_due() == 0
        engine.now = lambda: task.due_at - dt.timedelta(hours=11)
        with eager(execute=True):
            assert services.dangerously_tasks_remind_due() == 1
            assert services.dangerously_tasks_remind_due() == 0
    finally:
        engine.now = real
    assert [str(m.message["Subject"]) for m in smtp.messages] == [
        f"[Acme Corporation] Due soon: Approve “{campaign.name}” (approve)"]


def test_digest_tenants_get_one_daily_mail_instead(acme, people, marketer, eager, smtp):
    Tenant.objects.filter(pk=acme.pk).update(settings={**acme.settings, "task_notifications": "digest"})
    start_campaign(acme, marketer, approval_graph({"assign": {"user": "approver@acme.test"}, "title": "One"}), eager)
    start_campaign(acme, marketer, approval_graph({"assign": {"user": "approver@acme.test"}, "title": "Two"}), eager)
    assert smtp.messages == []
    assert notifications.dangerously_send_digests() == 1
    [mail] = smtp.messages
    assert mail.rcpt_tos == ["approver@acme.test"]
    body = mail.message.get_content()
    assert "2 task(s) wait on you" in body and "One" in body and "Two" in body
    assert body.count("/tasks/link/") == 2


def test_without_tenant_smtp_settings_the_platform_backend_sends(acme, marketer, eager, mailoutbox):
    start_campaign(acme, marketer, approval_graph({"assign": {"user": "approver@acme.test"}, "title": "X"}), eager)
    assert [(m.to, m.subject) for m in mailoutbox] == [(["approver@acme.test"], "[Acme Corporation] New task: X")]
