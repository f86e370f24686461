"""The Approval and Manual task activities in the engine (eager mode: the engine's logic runs in
the test's process; tests/approvals/test_worker.py runs a real worker)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from psycopg import sql

from apps.approvals import services
from apps.approvals.models import Decision, Task
from apps.campaigns import engine
from apps.campaigns import services as campaign_services
from apps.campaigns.populations import table_ident
from apps.core.errors import PermissionDenied
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph, nodes_of, refreshed, start_campaign


def task_of(run, node_id="approve", status=None):
    with tenant_scope(run.tenant):
        qs = Task.objects.filter(run=run, node_id=node_id)
        if status:
            qs = qs.filter(status=status)
        return qs.order_by("-id").first()


def at(moment, eager, func):
    """Run `func` with the engine's clock frozen at `moment`, kicks executed inline."""
    real = engine.now
    engine.now = lambda: moment
    try:
        with eager(execute=True):
            return func()
    finally:
        engine.now = real


def test_approval_waits_without_a_worker_and_approve_takes_the_approved_port(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph({"due": "2d"}), eager)
    states = nodes_of(run)
    assert states["approve"].status == "waiting"
    assert refreshed(run).status == "running"
    task = task_of(run)
    assert task.status == "open" and task.kind == "approval" and task.assignment == "role"
    # The wait is the task's due date stored on the node, nothing else holds the branch.
    assert states["approve"].wake_at == task.due_at
    assert dt.timedelta(hours=47) < task.due_at - engine.now() <= dt.timedelta(days=2)
    # The snapshot freezes the incoming count and a sample of the population.
    assert task.snapshot["count"] == 3
    assert [row[0] for row in task.snapshot["sample"]["rows"]] == ["k1", "k2", "k3"]

    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task, by=approver, comment="Looks right")
    run = refreshed(run)
    assert run.status == "completed", run.error
    states = nodes_of(run)
    assert states["sent"].status == "done" and states["dropped"].status == "skipped"
    assert states["approve"].outputs["approved"]["count"] == 3
    assert states["approve"].executions == 1
    task = refreshed(task)
    assert (task.status, task.outcome, task.decided_by, task.comment) == ("approved", "approved", approver,
                                                                          "Looks right")
    with tenant_scope(acme):
        decision = Decision.objects.get(task=task)
    assert (decision.user, decision.verdict, decision.comment) == (approver, "approve", "Looks right")


def test_reject_takes_the_rejected_port(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph(), eager)
    with tenant_scope(acme), eager(execute=True):
        services.task_reject(tenant=acme, task=task_of(run), by=approver, comment="Wrong audience")
    run = refreshed(run)
    assert run.status == "completed"
    states = nodes_of(run)
    assert states["dropped"].status == "done" and states["sent"].status == "skipped"
    assert states["approve"].outputs == {"rejected": states["approve"].outputs["rejected"]}


def test_other_branches_go_on_while_one_waits(acme, marketer, eager):
    g = approval_graph()
    g["nodes"].append({"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}})
    g["nodes"].append({"id": "other", "type": "end"})
    g["edges"] = [e for e in g["edges"] if e["from"] != "start"] + [
        {"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "a", "to": "rows"},
        {"from": "fork", "port": "b", "to": "other"}]
    campaign, run = start_campaign(acme, marketer, g, eager)
    states = nodes_of(run)
    assert states["approve"].status == "waiting"
    assert states["other"].status == "done"
    assert refreshed(run).status == "running"


@pytest.mark.parametrize("action,port", [("approve", "sent"), ("reject", "dropped")])
def test_expiry_follows_the_configured_action_on_the_sweepers_clock(acme, marketer, eager, action, port):
    campaign, run = start_campaign(acme, marketer, approval_graph({"due": "4h", "on_expiry": action}), eager)
    task = task_of(run)
    # Not due yet: the sweeper leaves it waiting.
    at(task.due_at - dt.timedelta(minutes=1), eager, engine.sweep)
    assert nodes_of(run)["approve"].status == "waiting" and refreshed(task).status == "open"
    # Due: the sweeper kicks the run, the node wakes and applies the expiry action.
    at(task.due_at + dt.timedelta(seconds=1), eager, engine.sweep)
    task = refreshed(task)
    assert task.status == "expired" and task.outcome == ("approved" if action == "approve" else "rejected")
    assert task.decided_by is None
    assert refreshed(run).status == "completed"
    assert nodes_of(run)[port].status == "done"
    with tenant_scope(acme):
        assert Decision.objects.get(task=task).verdict == "expire"


def test_expiry_escalates_once_to_another_group_then_rejects(acme, people, marketer, eager):
    seniors = people["acme"]["admin"].user
    with tenant_scope(acme):
        services.approver_group_create(tenant=acme, name="Team", members=[people["acme"]["approver"].user.email],
                                       by=None)
        services.approver_group_create(tenant=acme, name="Seniors", members=[seniors.email], by=None)
    config = {"due": "1d", "on_expiry": "escalate", "escalate_to": "Seniors", "assign": {"group": "Team"}}
    campaign, run = start_campaign(acme, marketer, approval_graph(config), eager)
    task = task_of(run)
    first_due = task.due_at
    at(first_due + dt.timedelta(seconds=1), eager, engine.sweep)
    task = refreshed(task)
    assert task.status == "open" and task.assignee_group.name == "Seniors" and task.escalated_at is not None
    assert task.due_at > first_due
    assert nodes_of(run)["approve"].status == "waiting" and nodes_of(run)["approve"].wake_at == task.due_at
    # The team's approver no longer may answer; the seniors may.
    with tenant_scope(acme), pytest.raises(PermissionDenied):
        services.task_approve(tenant=acme, task=task, by=people["acme"]["approver"].user)
    # Expired again: rejected.
    at(task.due_at + dt.timedelta(seconds=1), eager, engine.sweep)
    task = refreshed(task)
    assert (task.status, task.outcome) == ("expired", "rejected")
    assert nodes_of(run)["dropped"].status == "done"
    with tenant_scope(acme):
        assert list(Decision.objects.filter(task=task).values_list("verdict", flat=True)) == ["escalate", "expire"]


def test_group_task_first_answer_decides(acme, people, marketer, eager):
    admin, approver = people["acme"]["admin"].user, people["acme"]["approver"].user
    with tenant_scope(acme):
        services.approver_group_create(tenant=acme, name="Team", members=[admin.email, approver.email], by=None)
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"group": "Team"}}), eager)
    task = task_of(run)
    with tenant_scope(acme), eager(execute=True):
        services.task_reject(tenant=acme, task=task, by=admin, comment="No")
    with tenant_scope(acme), pytest.raises(Exception) as excinfo:
        services.task_approve(tenant=acme, task=task, by=approver)
    assert getattr(excinfo.value, "status", None) == 409
    assert nodes_of(run)["dropped"].status == "done"


def test_several_users_must_each_approve(acme, people, marketer, eager):
    admin, approver = people["acme"]["admin"].user, people["acme"]["approver"].user
    config = {"assign": {"users": [admin.email, approver.email]}}
    campaign, run = start_campaign(acme, marketer, approval_graph(config), eager)
    task = task_of(run)
    assert task.assignment == "users"
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task, by=admin)
    assert refreshed(task).status == "open" and nodes_of(run)["approve"].status == "waiting"
    with tenant_scope(acme), pytest.raises(PermissionDenied, match="already answered"):
        services.task_approve(tenant=acme, task=task, by=admin)
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task, by=approver)
    assert refreshed(task).status == "approved"
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"


def test_one_of_several_users_rejecting_decides(acme, people, marketer, eager):
    admin, approver = people["acme"]["admin"].user, people["acme"]["approver"].user
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"users": [admin.email,
                                                                                        approver.email]}}), eager)
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task_of(run), by=admin)
        services.task_reject(tenant=acme, task=task_of(run), by=approver, comment="Not this week")
    assert nodes_of(run)["dropped"].status == "done"


def _grow_population(run, node_id="rows", keys=("k4",)):
    table = nodes_of(run)[node_id].outputs["out"]["table"]
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute(sql.SQL("INSERT INTO {} (key) VALUES (%s)").format(table_ident(table))
                           .as_string(cursor.connection), [key])


def test_changed_population_voids_the_approval_and_raises_a_new_task(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph({"due": "1d"}), eager)
    first = task_of(run)
    with tenant_scope(acme), eager(execute=False) as kicks:
        services.task_approve(tenant=acme, task=first, by=approver)
    # Between the approval and the branch resuming, the population grows.
    _grow_population(run)
    with tenant_scope(acme), eager(execute=True):
        for kick in kicks:
            kick()
    first = refreshed(first)
    assert first.status == "void"
    second = task_of(run, status="open")
    assert second.replaces_id == first.pk and second.snapshot["count"] == 4
    assert nodes_of(run)["approve"].status == "waiting" and refreshed(run).status == "running"
    with tenant_scope(acme):
        assert Decision.objects.filter(task=first, verdict="void").exists()
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=second, by=approver)
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"


def test_change_within_tolerance_keeps_the_approval(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph({"tolerance": {"percent": 50}}), eager)
    task = task_of(run)
    with tenant_scope(acme), eager(execute=False) as kicks:
        services.task_approve(tenant=acme, task=task, by=approver)
    _grow_population(run)  # 3 → 4: +33 %, within 50 %
    with tenant_scope(acme), eager(execute=True):
        for kick in kicks:
            kick()
    assert refreshed(task).status == "approved"
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"


def test_manual_task_waits_until_marked_done(acme, people, marketer, eager):
    viewer = people["acme"]["viewer"].user
    config = {"title": "Send the file to the printer", "assign": {"user": viewer.email}}
    campaign, run = start_campaign(acme, marketer, approval_graph(config, kind="manual_task"), eager)
    task = task_of(run)
    assert task.kind == "manual" and task.assignee_user == viewer
    assert nodes_of(run)["approve"].status == "waiting"
    with tenant_scope(acme), pytest.raises(PermissionDenied):
        services.task_complete(tenant=acme, task=task, by=people["acme"]["approver"].user)
    with tenant_scope(acme), eager(execute=True):
        services.task_complete(tenant=acme, task=task, by=viewer, comment="Sent")
    assert refreshed(task).status == "completed"
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"


def test_manual_task_expiry_fails_the_activity_by_default(acme, marketer, eager):
    config = {"title": "Call the printer", "due": "1h"}
    campaign, run = start_campaign(acme, marketer, approval_graph(config, kind="manual_task"), eager)
    task = task_of(run)
    at(task.due_at + dt.timedelta(seconds=1), eager, engine.sweep)
    run = refreshed(run)
    assert run.status == "failed" and run.error_node == "approve"
    assert "expired without being done" in run.error


def test_stopping_the_run_cancels_its_open_tasks(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph(), eager)
    with tenant_scope(acme), eager(execute=True):
        campaign_services.run_stop(tenant=acme, run=run, by=marketer)
    task = refreshed(task_of(run))
    assert task.status == "cancelled"
    with tenant_scope(acme), pytest.raises(Exception) as excinfo:
        services.task_approve(tenant=acme, task=task, by=approver)
    assert getattr(excinfo.value, "status", None) == 409


def test_publish_refuses_unknown_assignees_and_bad_durations(acme, marketer):
    from tests.campaigns.conftest import make_campaign

    config = {"due": "soon", "assign": {"user": "nobody@acme.test"}, "on_expiry": "escalate"}
    campaign = make_campaign(acme, marketer, approval_graph(config))
    with tenant_scope(acme):
        problems = campaign_services.graph_problems(campaign, approval_graph(config))
    paths = {(p["node"], p["path"]) for p in problems}
    assert ("approve", "config.due") in paths
    assert ("approve", "config.assign.user") in paths
    assert ("approve", "config.escalate_to") in paths
    viewer_config = {"assign": {"user": "viewer@acme.test"}}
    with tenant_scope(acme):
        problems = campaign_services.graph_problems(campaign, approval_graph(viewer_config))
    assert any("cannot approve" in p["message"] for p in problems)


def test_decisions_cannot_be_altered_through_the_orm_or_sql(acme, marketer, approver, eager):
    from django.db import DatabaseError, transaction

    campaign, run = start_campaign(acme, marketer, approval_graph(), eager)
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task_of(run), by=approver, comment="ok")
    with tenant_scope(acme):
        decision = Decision.objects.get(task=task_of(run))
        attempts = [
            lambda: Decision.objects.filter(pk=decision.pk).update(comment="forged"),
            lambda: Decision.objects.filter(pk=decision.pk).delete(),
            lambda: decision.save(update_fields=["comment"]),
        ]
        for attempt in attempts:
            with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
                attempt()
        for statement in ("UPDATE approvals_decision SET verdict = 'reject' WHERE id = %s",
                          "DELETE FROM approvals_decision WHERE id = %s"):
            with pytest.raises(DatabaseError, match="immutable"), transaction.atomic(), connection.cursor() as cur:
                cur.execute(statement, [decision.pk])
        decision.refresh_from_db()
        assert (decision.verdict, decision.comment, decision.user) == ("approve", "ok", approver)


def test_a_decision_while_the_campaign_is_paused_takes_effect_on_resume(acme, marketer, approver, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph(), eager)
    with tenant_scope(acme), eager(execute=True):
        campaign_services.campaign_pause(tenant=acme, campaign=campaign, by=marketer)
        services.task_approve(tenant=acme, task=task_of(run), by=approver)
    assert refreshed(run).status == "paused" and nodes_of(run)["approve"].status == "waiting"
    with tenant_scope(acme), eager(execute=True):
        campaign_services.campaign_resume(tenant=acme, campaign=campaign, by=marketer)
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"


def test_retrying_a_failed_run_raises_a_new_task_for_the_cancelled_one(acme, marketer, approver, eager):
    from tests.campaigns.conftest import make_campaign

    other = make_campaign(acme, marketer, {"nodes": [], "edges": []}, name="Not live yet")
    g = approval_graph()
    g["nodes"] += [{"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
                   {"id": "later", "type": "wait", "config": {"mode": "duration", "duration": "5m"}},
                   {"id": "trigger", "type": "end", "config": {"trigger_campaign": other.pk}}]
    g["edges"] = [e for e in g["edges"] if e["from"] != "start"] + [
        {"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "a", "to": "rows"},
        {"from": "fork", "port": "b", "to": "later"}, {"from": "later", "port": "out", "to": "trigger"}]
    campaign, run = start_campaign(acme, marketer, g, eager)
    first = task_of(run)
    assert first.status == "open"
    # Five minutes later the other branch fails (its campaign to trigger is not live): the run fails.
    at(engine.now() + dt.timedelta(minutes=6), eager, engine.sweep)
    assert refreshed(run).status == "failed" and refreshed(first).status == "cancelled"

    other_graph = {"nodes": [{"id": "s", "type": "scheduler", "config": {"mode": "api"}}], "edges": []}
    with tenant_scope(acme), eager(execute=True):
        campaign_services.draft_update(tenant=acme, campaign=other, by=marketer, graph=other_graph)
        campaign_services.campaign_publish(tenant=acme, campaign=other, by=marketer)
        campaign_services.campaign_start(tenant=acme, campaign=other, by=marketer)
        campaign_services.run_retry(tenant=acme, run=run, by=marketer)
    second = task_of(run, status="open")
    assert second is not None and second.replaces_id == first.pk
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=second, by=approver)
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"
