"""On a real Celery worker process (real broker, test database): a run waits on an approval
without holding the worker, an approver approves through the API, and the run completes."""

from __future__ import annotations

import time

import pytest

from apps.approvals.models import Task
from apps.campaigns import services
from apps.campaigns.models import NodeState
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign, wait_for_run

pytestmark = pytest.mark.worker

GRAPH = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
              {"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
              {"id": "approve", "type": "approval", "config": {"due": "1d"}},
              {"id": "busy", "type": "test_slow", "config": {"seconds": 0.2}},
              {"id": "sent", "type": "end"}, {"id": "dropped", "type": "end"}, {"id": "other", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "a", "to": "approve"},
              {"from": "fork", "port": "b", "to": "busy"}, {"from": "busy", "port": "out", "to": "other"},
              {"from": "approve", "port": "approved", "to": "sent"},
              {"from": "approve", "port": "rejected", "to": "dropped"}],
}


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_run_waits_on_an_approval_and_completes_after_approval_through_the_api(worker, acme, people, api):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, GRAPH)
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)

    def waiting_task():
        with tenant_scope(acme):
            states = {n.node_id: n.status for n in NodeState.objects.filter(run=run)}
            task = Task.objects.filter(run=run, status="open").first()
        return task if task and states.get("approve") == "waiting" and states.get("other") == "done" else None

    # The other branch finishes while the approval waits; the run stays running, no node runs.
    task = _wait_for(waiting_task)
    with tenant_scope(acme):
        assert not NodeState.objects.filter(run=run, status="running").exists()
        run.refresh_from_db()
    assert run.status == "running"

    response = api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/approve", {"comment": "ok"}, format="json")
    assert response.status_code == 200, response.json()
    run = wait_for_run(run, timeout=60, sweep=False)
    assert run.status == "completed", run.error
    with tenant_scope(acme):
        states = {n.node_id: n for n in NodeState.objects.filter(run=run)}
    assert states["sent"].status == "done" and states["dropped"].status == "skipped"
    assert states["approve"].executions == 1
