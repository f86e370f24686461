"""Runs on a real Celery worker process against the real broker and the test database."""

from __future__ import annotations

import time

import pytest

from apps.campaigns import services
from apps.campaigns.models import NodeState
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign, wait_for_run

pytestmark = pytest.mark.worker


def chain(n: int, seconds: float) -> dict:
    nodes = [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}}]
    edges = []
    previous = "start"
    for i in range(n):
        nodes.append({"id": f"slow{i}", "type": "test_slow", "config": {"seconds": seconds}})
        edges.append({"from": previous, "port": "out", "to": f"slow{i}"})
        previous = f"slow{i}"
    return {"nodes": nodes, "edges": edges}


def test_end_to_end_run_with_variables_on_a_real_worker(worker, acme, people):
    marketer = people["acme"]["marketer"].user
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}},
                  {"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
                  {"id": "a", "type": "test_slow", "config": {"seconds": 0.1}},
                  {"id": "b", "type": "test_slow", "config": {"seconds": 0.1}},
                  {"id": "join", "type": "and_join", "config": {"main_input": "b"}},
                  {"id": "test", "type": "test", "config": {"conditions": [
                      {"port": "vip", "when": {"var": "segment", "op": "eq", "value": "vip"}}]}},
                  {"id": "vip", "type": "end"}, {"id": "others", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "a", "to": "a"},
                  {"from": "fork", "port": "b", "to": "b"}, {"from": "a", "port": "out", "to": "join"},
                  {"from": "b", "port": "out", "to": "join"}, {"from": "join", "port": "out", "to": "test"},
                  {"from": "test", "port": "vip", "to": "vip"}, {"from": "test", "port": "default", "to": "others"}],
    }
    campaign = make_campaign(acme, marketer, graph, variables=[{"name": "segment", "type": "string"}])
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
        run = services.campaign_trigger(tenant=acme, campaign=campaign, by=marketer, variables={"segment": "vip"})
    run = wait_for_run(run, timeout=60, sweep=False)
    assert run.status == "completed", run.error
    with tenant_scope(acme):
        states = {n.node_id: n for n in NodeState.objects.filter(run=run)}
    assert states["vip"].status == "done" and states["others"].status == "skipped"
    assert states["join"].outputs["out"]["count"] == 1  # b's population (one row: "b")


def test_sigkill_mid_run_then_every_node_executes_exactly_once(worker, acme, people):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, chain(5, 1.0))
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)

    kills = 0
    deadline = time.monotonic() + 60
    while kills < 2 and time.monotonic() < deadline:
        with tenant_scope(acme):
            running = NodeState.objects.filter(run=run, status="running").exists()
        if running:
            time.sleep(0.4)  # well inside the node's 1 s transaction
            worker.kill()
            kills += 1
            worker.start()
        time.sleep(0.1)
    assert kills == 2

    run = wait_for_run(run, timeout=120)  # the test plays beat: it calls the sweeper
    assert run.status == "completed", run.error
    with tenant_scope(acme):
        states = list(NodeState.objects.filter(run=run))
    assert all(n.status == "done" and n.executions == 1 for n in states), [
        (n.node_id, n.status, n.executions) for n in states]
    assert sum(n.attempts for n in states) > len(states)  # at least one killed attempt was retried
