"""Send confirmation of one-off campaigns: a live run started by hand prepares its delivery and
waits, showing the counts, until someone who may run campaigns confirms (then it sends to the
loopback SMTP server) or cancels it (nothing is sent). Recurring, scheduled, triggered and test
runs, and nodes with `send_without_confirmation`, do not wait."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.activities import registry
from apps.campaigns import schedules, services
from apps.campaigns.models import Schedule
from apps.channels import sending
from apps.channels import services as channel_services
from apps.channels.models import Delivery, Message
from apps.core.errors import Conflict, PermissionDenied
from apps.profiles.services import profile_upsert
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign
from tests.channels.test_email_activity import CONTENT, add_profiles, campaign_mail, nodes_of, run_campaign
from tests.conftest import ROLES, api_client_for


def one_off_graph(start=None, **config):
    return {
        "nodes": [{"id": "start", "type": "scheduler", "config": start or {"mode": "asap"}},
                  {"id": "who", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "mail", "type": "email", "config": {"content": CONTENT, **config}},
                  {"id": "done", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "who"}, {"from": "who", "port": "out", "to": "mail"},
                  {"from": "mail", "port": "sent", "to": "done"}],
    }


@pytest.fixture
def audience(acme):
    """Three reachable profiles, one without an address, one opted out."""
    add_profiles(acme, 3)
    profile_upsert(tenant=acme, values={"id": "noaddr", "first_name": "X"}, by=None)
    profile_upsert(tenant=acme, values={"id": "optout", "email": "out@example.test", "email_opt_in": False}, by=None)


def waiting_delivery(run):
    with tenant_scope(run.tenant):
        return Delivery.objects.get(run=run)


def url(delivery, action=""):
    return f"/api/v1/channels/deliveries/{delivery.pk}/" + action


def refreshed(run):
    with tenant_scope(run.tenant):
        run.refresh_from_db()
    return run


def audit(acme, action):
    with tenant_scope(acme):
        return list(AuditEntry.objects.filter(tenant=acme, action=action))


def test_a_one_off_live_run_waits_with_its_counts_until_confirmed(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    assert run.status == "running" and nodes_of(run)["mail"].status == "waiting"
    assert nodes_of(run)["mail"].wake_at is None  # no polling: only a decision wakes it
    assert delivery.status == "awaiting_confirmation" and campaign_mail(smtp_ready) == []
    # Anyone who reads campaigns sees it waiting, with the counts by exclusion reason.
    shown = api_client_for(people["acme"]["viewer"].user).get(url(delivery)).json()
    assert shown["status"] == "awaiting_confirmation" and shown["decided_by"] is None
    assert shown["counts"]["pending"] == 3 and shown["counts"]["targeted"] == 5
    assert shown["counts"]["excluded_by_reason"] == {"no_address": 1, "no_consent": 1}
    with tenant_scope(acme):
        assert any(f"Waiting for confirmation of delivery {delivery.pk}: 3 to send, 2 excluded." == log.message for log in run.logs.all())

    marketer = people["acme"]["marketer"].user
    with eager(execute=True):
        response = api_client_for(marketer).post(url(delivery, "confirm"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "sending" and response.json()["decided_by"] == "marketer@acme.test"
    assert refreshed(run).status == "completed", run.error
    assert sorted(r for m in campaign_mail(smtp_ready) for r in m.rcpt_tos) == [
        f"p{i}@example.test" for i in range(3)]
    node = nodes_of(run)["mail"]
    assert node.status == "done" and node.outputs["sent"]["count"] == 3 and node.outputs["excluded"]["count"] == 2
    with tenant_scope(acme):
        delivery.refresh_from_db()
    assert delivery.status == "done" and delivery.decided_by == marketer and delivery.decided_at is not None
    [entry] = audit(acme, "delivery.confirm")
    assert entry.actor == marketer and entry.object_id == str(delivery.pk)
    assert entry.data == {"run": run.pk, "node": "mail", "to_send": 3, "excluded": 2}


def test_cancel_sends_nothing_and_finishes_the_node_as_a_stopped_delivery(acme, people, eager, smtp_ready,
                                                                          audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    admin = people["acme"]["admin"].user
    with eager(execute=True):
        response = api_client_for(admin).post(url(delivery, "cancel"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled" and response.json()["counts"]["cancelled"] == 3
    assert refreshed(run).status == "completed", run.error
    assert campaign_mail(smtp_ready) == []
    with tenant_scope(acme):
        statuses = sorted(Message.objects.filter(delivery=delivery).values_list("status", flat=True))
        delivery.refresh_from_db()
    assert statuses == ["cancelled"] * 3 + ["excluded"] * 2
    assert delivery.status == "cancelled" and delivery.finished_at is not None and delivery.decided_by == admin
    node = nodes_of(run)["mail"]
    assert node.status == "done" and node.summary["sent"] == 0 and node.summary["cancelled"] == 3
    assert node.outputs["sent"]["count"] == 0 and node.outputs["failed"]["count"] == 0
    assert node.outputs["excluded"]["count"] == 5  # excluded and cancelled, as when a run is stopped
    [entry] = audit(acme, "delivery.cancel")
    assert entry.actor == admin and entry.data["cancelled"] == 3


def test_send_without_confirmation_sends_at_once(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph(send_without_confirmation=True))
    assert run.status == "completed", run.error
    assert len(campaign_mail(smtp_ready)) == 3
    assert waiting_delivery(run).decided_by is None


def test_a_test_run_does_not_wait(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph(), test=True)
    assert run.status == "completed", run.error
    assert nodes_of(run)["mail"].summary["would_send"] == 3 and campaign_mail(smtp_ready) == []
    with tenant_scope(acme):
        assert not Delivery.objects.filter(run=run).exists()


def _live(acme, marketer, eager, graph):
    campaign = make_campaign(acme, marketer, graph, variables=[{"name": "promo", "type": "string"}])
    with tenant_scope(acme), eager(execute=True):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
    return campaign


@pytest.mark.parametrize("how", ["schedule daily", "schedule once", "run now of a daily campaign", "api trigger"])
def test_recurring_scheduled_and_triggered_runs_do_not_wait(acme, people, eager, smtp_ready, audience, how):
    marketer = people["acme"]["marketer"].user
    start = {"schedule daily": {"mode": "daily", "times": ["09:00"]},
             "schedule once": {"mode": "once", "at": "2030-01-01T09:00:00"},
             "run now of a daily campaign": {"mode": "daily", "times": ["09:00"]},
             "api trigger": {"mode": "api"}}[how]
    campaign = _live(acme, marketer, eager, one_off_graph(start))
    with tenant_scope(acme), eager(execute=True):
        if how.startswith("schedule"):
            fire_at = Schedule.objects.get(campaign=campaign).next_fire_at
            assert schedules.dispatch_due(tenant=acme, now=fire_at + dt.timedelta(seconds=1)) == 1
        elif how.startswith("run now"):
            services.campaign_run_now(tenant=acme, campaign=campaign, by=marketer)
        else:
            services.campaign_trigger(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        [run] = campaign.runs.all()
    assert run.trigger == {"schedule": "schedule", "run": "manual", "api": "api"}[how.split()[0]]
    assert run.status == "completed", run.error
    assert waiting_delivery(run).status == "done" and len(campaign_mail(smtp_ready)) == 3


def test_approval_comes_first_then_the_confirmation(acme, people, eager, smtp_ready, audience):
    from apps.approvals import services as approval_services
    from apps.approvals.models import Task

    run = run_campaign(acme, people, eager, one_off_graph(approval={"due": "1d"}))
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
        assert not Delivery.objects.filter(run=run).exists()  # nothing is prepared before the approval
    with tenant_scope(acme), eager(execute=True):
        approval_services.task_approve(tenant=acme, task=task, by=people["acme"]["approver"].user)
    delivery = waiting_delivery(run)
    assert delivery.status == "awaiting_confirmation" and refreshed(run).status == "running"
    assert campaign_mail(smtp_ready) == []
    with tenant_scope(acme), eager(execute=True):
        channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=people["acme"]["marketer"].user)
    assert refreshed(run).status == "completed" and len(campaign_mail(smtp_ready)) == 3


def test_only_roles_that_run_campaigns_decide_and_other_tenants_get_404(acme, people, eager, smtp_ready,
                                                                        audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    for action in ("confirm", "cancel"):
        for role in ("approver", "viewer"):
            response = api_client_for(people["acme"][role].user).post(url(delivery, action))
            assert response.status_code == 403, (action, role, response.content)
        for role in ROLES:
            response = api_client_for(people["globex"][role].user).post(url(delivery, action))
            assert response.status_code == 404 and b"acme" not in response.content.lower(), (action, role)
        assert api_client_for(None).post(url(delivery, action)).status_code == 401
    # The service refuses too, whoever calls it.
    with tenant_scope(acme), pytest.raises(PermissionDenied):
        channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=people["acme"]["viewer"].user)
    assert waiting_delivery(run).status == "awaiting_confirmation" and campaign_mail(smtp_ready) == []
    assert audit(acme, "delivery.confirm") == audit(acme, "delivery.cancel") == []


def test_a_second_decision_is_a_409(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    client = api_client_for(people["acme"]["admin"].user)
    with eager(execute=True):
        assert client.post(url(delivery, "confirm")).status_code == 200
    for action in ("confirm", "cancel"):
        response = client.post(url(delivery, action))
        assert response.status_code == 409, response.content
        assert response.json()["error"]["code"] == "not_awaiting_confirmation"
    assert len(campaign_mail(smtp_ready)) == 3 and len(audit(acme, "delivery.confirm")) == 1


def test_stopping_the_run_cancels_the_waiting_delivery(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme), eager(execute=True):
        services.run_stop(tenant=acme, run=run, by=marketer)
    delivery = waiting_delivery(run)
    assert delivery.status == "cancelled" and delivery.decided_by is None
    with tenant_scope(acme), pytest.raises(Conflict):
        channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=marketer)
    with tenant_scope(acme):
        assert not Message.objects.filter(delivery=delivery, status="pending").exists()
    assert campaign_mail(smtp_ready) == [] and audit(acme, "delivery.cancel")[0].data["run_status"] == "stopped"


def test_the_option_is_in_the_config_schema_of_sending_channels_only(acme, people, eager, smtp_ready, audience):
    for kind in ("email", "sms", "push"):
        option = registry.get(kind).config_schema["properties"]["send_without_confirmation"]
        assert option["type"] == "boolean" and option["default"] is False
    assert "send_without_confirmation" not in registry.get("file_export").config_schema["properties"]
    # A file export (a file to download, not a send) does not wait either.
    graph = one_off_graph()
    graph["nodes"][2] = {"id": "mail", "type": "file_export", "config": {"content": {
        "columns": [{"name": "name", "value": "{{ profile.first_name }}"}]}}}
    run = run_campaign(acme, people, eager, graph)
    assert run.status == "completed", run.error
    assert waiting_delivery(run).status == "done"


def test_a_confirmation_while_the_campaign_is_paused_is_sent_on_resume(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme), eager(execute=True):
        services.campaign_pause(tenant=acme, campaign=run.campaign, by=marketer)
        channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=marketer)
    assert refreshed(run).status == "paused" and campaign_mail(smtp_ready) == []
    with tenant_scope(acme), eager(execute=True):
        services.campaign_resume(tenant=acme, campaign=run.campaign, by=marketer)
    assert refreshed(run).status == "completed", run.error
    assert len(campaign_mail(smtp_ready)) == 3


def test_a_delivery_confirmed_then_stopped_before_any_sender_ran_is_cancelled(acme, people, eager, smtp_ready,
                                                                              audience):
    """Confirm commits (delivery `sending`, no sender started yet: on-commit kicks not run), then
    Stop cancels the waiting node: no sender will ever come, so the run's end cancels the
    delivery itself. A row a live sender holds is left to it; a lapsed lease's row is cancelled."""
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme):
        channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=marketer)
        assert waiting_delivery(run).status == "sending"
        live, lapsed, *_ = Message.objects.filter(delivery=delivery, status="pending").order_by("id")
        now = timezone.now()
        Message.objects.filter(pk=live.pk).update(status="sending", lease_owner="live",
                                                  lease_expires_at=now + dt.timedelta(minutes=5))
        Message.objects.filter(pk=lapsed.pk).update(status="sending", lease_owner="dead",
                                                    lease_expires_at=now - dt.timedelta(minutes=5))
    with tenant_scope(acme), eager(execute=True):
        services.run_stop(tenant=acme, run=run, by=marketer)
    assert refreshed(run).status == "stopped" and nodes_of(run)["mail"].status == "cancelled"
    delivery = waiting_delivery(run)
    assert delivery.status == "cancelled" and delivery.finished_at is not None
    assert delivery.decided_by == marketer  # the decision stays the confirmation
    with tenant_scope(acme):
        statuses = dict(Message.objects.filter(delivery=delivery).values_list("id", "status"))
    assert "pending" not in statuses.values()
    assert statuses[live.pk] == "sending" and statuses[lapsed.pk] == "cancelled"
    assert sorted(statuses.values()) == ["cancelled"] * 2 + ["excluded"] * 2 + ["sending"]
    assert delivery.counts["cancelled"] == 2 and delivery.counts["pending"] == 0
    [entry] = audit(acme, "delivery.cancel")
    assert entry.actor is None and entry.data == {"run": run.pk, "node": "mail", "cancelled": 2,
                                                  "run_status": "stopped"}
    # Idempotent: a second end (or the live sender's own `_cancel`) finds nothing more to do.
    assert channel_services.deliveries_cancel_for_run(run=refreshed(run)) == 0
    assert len(audit(acme, "delivery.cancel")) == 1 and campaign_mail(smtp_ready) == []
    # The live sender is killed before it records its row: the nightly job closes the row once its
    # lease has lapsed, not before, and writes the delivery's counts again.
    assert channel_services.dangerously_close_abandoned_deliveries() == 0
    with tenant_scope(acme):
        Message.objects.filter(pk=live.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert channel_services.dangerously_close_abandoned_deliveries() == 1
    with tenant_scope(acme):
        assert Message.objects.get(pk=live.pk).status == "cancelled"
    delivery = waiting_delivery(run)
    assert delivery.counts["cancelled"] == 3 and delivery.counts["sending"] == 0
    assert channel_services.dangerously_close_abandoned_deliveries() == 0


def test_a_decision_on_a_run_that_cannot_go_on_is_a_409(acme, people, eager, smtp_ready, audience):
    """The run is locked and checked before the delivery: a run that ended without its waiting
    delivery being cancelled (status written past the receiver) refuses; a suspended one accepts
    (it sends once retried)."""
    from apps.campaigns.models import Run

    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    client = api_client_for(people["acme"]["admin"].user)
    for status in ("failed", "completed", "stopped"):
        with tenant_scope(acme):
            Run.objects.filter(pk=run.pk).update(status=status)  # .update(): no post_save receiver
        for action in ("confirm", "cancel"):
            response = client.post(url(delivery, action))
            assert response.status_code == 409, response.content
            assert response.json()["error"]["code"] == "run_not_active"
    assert waiting_delivery(run).status == "awaiting_confirmation"
    assert audit(acme, "delivery.confirm") == audit(acme, "delivery.cancel") == []
    with tenant_scope(acme):
        Run.objects.filter(pk=run.pk).update(status="suspended")
    response = client.post(url(delivery, "confirm"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "sending" and campaign_mail(smtp_ready) == []


def test_the_portal_panel_shows_the_stored_counts_without_counting_the_ledger(acme, people, eager, smtp_ready,
                                                                               audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    assert delivery.counts["pending"] == 3 and delivery.counts["excluded_by_reason"] == {
        "no_address": 1, "no_consent": 1}
    client = Client()
    client.force_login(people["acme"]["viewer"].user)
    panel = reverse("portal:campaign-run-confirmations", kwargs={"campaign_id": run.campaign_id, "run_id": run.pk})
    with CaptureQueriesContext(connection) as queries:
        response = client.get(panel)
    assert response.status_code == 200
    assert response.context["confirmations"][0]["counts"] == sending.delivery_counts(delivery)
    assert not [q["sql"] for q in queries.captured_queries if "channels_message" in q["sql"]]


def test_the_delivery_list_reads_who_decided_in_the_same_query(acme, people, eager, smtp_ready, audience):
    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    admin = people["acme"]["admin"].user
    with tenant_scope(acme):
        channel_services.delivery_cancel(tenant=acme, delivery=delivery, by=admin)
    client = api_client_for(people["acme"]["viewer"].user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/channels/deliveries/")
    assert response.status_code == 200
    rows = response.json()["results"] if isinstance(response.json(), dict) else response.json()
    assert [row["decided_by"] for row in rows] == ["admin@acme.test"]
    user_table = type(admin)._meta.db_table
    assert not [q["sql"] for q in queries.captured_queries
                if q["sql"].startswith(f'SELECT "{user_table}"') and "channels_delivery" not in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_a_stop_holding_the_run_and_a_confirm_queue_on_the_run_instead_of_deadlocking(acme, people, eager,
                                                                                      smtp_ready, audience):
    """The race of the review, made deterministic on two real connections: Stop has taken the
    run's row; Confirm arrives. Confirm waits for the run before touching the delivery (it used
    to lock the delivery first, then wait for the run at its run-log insert, while Stop's
    receiver waited for the delivery: a deadlock, 500). Stop then finishes and commits; Confirm
    gets the run, finds the delivery cancelled, and answers 409."""
    import threading

    from django.db import OperationalError, connections, transaction

    from apps.campaigns.models import Run

    run = run_campaign(acme, people, eager, one_off_graph())
    delivery = waiting_delivery(run)
    marketer = people["acme"]["marketer"].user
    run_locked, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def stop() -> None:
        try:
            with tenant_scope(acme), transaction.atomic():
                Run.objects.select_for_update().get(tenant=acme, pk=run.pk)
                run_locked.set()
                assert go_on.wait(20)
                services.run_stop(tenant=acme, run=run, by=marketer)  # node states, run, receiver
            outcome["stop"] = "stopped"
        except Exception as exc:
            outcome["stop"] = exc
        finally:
            connections.close_all()

    def confirm() -> None:
        try:
            with tenant_scope(acme):
                channel_services.delivery_confirm(tenant=acme, delivery=delivery, by=marketer)
            outcome["confirm"] = "confirmed"
        except Exception as exc:
            outcome["confirm"] = exc
        finally:
            connections.close_all()

    stopper = threading.Thread(target=stop)
    stopper.start()
    assert run_locked.wait(20)
    confirmer = threading.Thread(target=confirm)
    confirmer.start()
    with connection.cursor() as cursor:  # wait until Confirm is queued behind Stop on a lock
        for _ in range(200):
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("Confirm did not wait for Stop")
    # Confirm waits for the run, holding nothing on the delivery.
    with transaction.atomic(), connection.cursor() as cursor:
        try:
            cursor.execute("SELECT id FROM channels_delivery WHERE tenant_id = %s AND id = %s FOR UPDATE NOWAIT",
                           [acme.pk, delivery.pk])
        except OperationalError:
            go_on.set()
            raise AssertionError("Confirm holds the delivery while it waits for the run") from None
    go_on.set()
    stopper.join(30)
    confirmer.join(30)
    assert outcome["stop"] == "stopped", outcome
    assert isinstance(outcome["confirm"], Conflict) and outcome["confirm"].code == "not_awaiting_confirmation", outcome
    assert refreshed(run).status == "stopped"
    assert waiting_delivery(run).status == "cancelled" and campaign_mail(smtp_ready) == []
