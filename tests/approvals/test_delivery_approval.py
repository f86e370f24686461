"""Delivery approval as the channel activities use it (`approval_gate` with rendered content):
the task's snapshot carries the content; if the content differs when the branch resumes, the
approval is void and a new task is raised."""

from __future__ import annotations

from apps.approvals import services
from apps.approvals.models import Task
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.approvals import delivery_activity  # noqa: F401  (registers test_delivery)
from tests.approvals.conftest import START, nodes_of, refreshed, start_campaign

GRAPH = {
    "nodes": [START, {"id": "rows", "type": "test_rows", "config": {"keys": ["a", "b"]}},
              {"id": "email", "type": "test_delivery", "config": {"approval": {"due": "1d"}}},
              {"id": "end", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "rows"}, {"from": "rows", "port": "out", "to": "email"},
              {"from": "email", "port": "sent", "to": "end"}],
}


def _promo(acme, value):
    Tenant.objects.filter(pk=acme.pk).update(settings={**acme.settings, "promo": value})


def test_delivery_waits_for_approval_of_the_rendered_content(acme, marketer, approver, eager):
    _promo(acme, "SPRING10")
    campaign, run = start_campaign(acme, marketer, GRAPH, eager)
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    assert task.snapshot["content"] == [{"subject": "Spring sale: SPRING10", "text": "Hello, use SPRING10."}]
    assert task.snapshot["count"] == 2 and nodes_of(run)["email"].status == "waiting"
    with tenant_scope(acme), eager(execute=True):
        services.task_approve(tenant=acme, task=task, by=approver)
    assert refreshed(run).status == "completed"
    assert nodes_of(run)["email"].summary["sent_subject"] == "Spring sale: SPRING10"


def test_changed_content_voids_the_delivery_approval(acme, marketer, approver, eager):
    _promo(acme, "SPRING10")
    campaign, run = start_campaign(acme, marketer, GRAPH, eager)
    with tenant_scope(acme):
        first = Task.objects.get(run=run)
    with tenant_scope(acme), eager(execute=False) as kicks:
        services.task_approve(tenant=acme, task=first, by=approver)
    _promo(acme, "SPRING50")  # what would be sent changed after the approval
    with tenant_scope(acme), eager(execute=True):
        for kick in kicks:
            kick()
    assert refreshed(first).status == "void"
    with tenant_scope(acme):
        second = Task.objects.get(run=run, status="open")
    assert second.snapshot["content"][0]["subject"] == "Spring sale: SPRING50"
    assert nodes_of(run)["email"].status == "waiting" and "sent_subject" not in nodes_of(run)["email"].summary
    with tenant_scope(acme), eager(execute=True):
        services.task_reject(tenant=acme, task=second, by=approver, comment="No 50 % discount")
    assert refreshed(run).status == "completed"
    assert nodes_of(run)["email"].outputs == {} and nodes_of(run)["end"].status == "skipped"
