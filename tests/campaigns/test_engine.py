"""The engine's logic, run inline with Celery's eager mode (these tests are about what the engine
decides, not about the broker; tests/campaigns/test_worker.py runs a real worker)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.campaigns import engine, services
from apps.campaigns.models import NodeState, Run, RunLog
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}


def graph(*nodes, edges):
    return {"nodes": [START, *nodes], "edges": [{"from": a, "port": p, "to": b} for a, p, b in edges]}


def start(acme, person, g, variables=None, declarations=None, settings=None, eager=None):
    campaign = make_campaign(acme, person, g, variables=declarations or [], settings=settings or {})
    with tenant_scope(acme), eager(execute=True):
        services.campaign_publish(tenant=acme, campaign=campaign, by=person)
        result = services.campaign_start(tenant=acme, campaign=campaign, by=person, variables=variables)
    return campaign, result


def nodes_of(run):
    with tenant_scope(run.tenant):
        return {n.node_id: n for n in NodeState.objects.filter(run=run)}


def test_fork_join_test_graph_completes(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    g = graph(
        {"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
        {"id": "join", "type": "and_join", "config": {"main_input": "fork"}},
        {"id": "test", "type": "test", "config": {"conditions": [
            {"port": "big", "when": {"var": "tier", "op": "eq", "value": "gold"}}], "default_port": "other"}},
        {"id": "end_big", "type": "end"}, {"id": "end_other", "type": "end"},
        edges=[("start", "out", "fork"), ("fork", "a", "join"), ("fork", "b", "join"), ("join", "out", "test"),
               ("test", "big", "end_big"), ("test", "other", "end_other")],
    )
    campaign, run = start(acme, marketer, g, variables={"tier": "gold"},
                          declarations=[{"name": "tier", "type": "string", "default": "silver"}], eager=eager)
    with tenant_scope(acme):
        run.refresh_from_db()
        campaign.refresh_from_db()
    assert run.status == "completed", run.error
    states = nodes_of(run)
    assert {k: v.status for k, v in states.items()} == {
        "start": "done", "fork": "done", "join": "done", "test": "done", "end_big": "done", "end_other": "skipped"}
    assert all(n.executions == 1 for n in states.values() if n.status == "done")
    assert campaign.status == "completed"  # a one-off campaign completes with its run


def test_wait_is_a_wake_up_time_not_a_blocked_worker(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    g = graph({"id": "wait", "type": "wait", "config": {"mode": "duration", "duration": "2h"}},
              {"id": "end", "type": "end"}, edges=[("start", "out", "wait"), ("wait", "out", "end")])
    campaign, run = start(acme, marketer, g, eager=eager)
    states = nodes_of(run)
    assert states["wait"].status == "waiting"
    wake = states["wait"].wake_at
    assert dt.timedelta(hours=1, minutes=59) < wake - engine.now() <= dt.timedelta(hours=2)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "running" and run.next_check_at == wake

    # Two hours later the sweeper finds the run due and it completes.
    later = wake + dt.timedelta(seconds=1)
    real_now = engine.now
    engine.now = lambda: later
    try:
        with eager(execute=True):
            assert engine.sweep() >= 1
    finally:
        engine.now = real_now
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed"
    assert nodes_of(run)["wait"].executions == 1


def test_wait_until_a_variable(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    g = graph({"id": "wait", "type": "wait", "config": {"mode": "until_variable", "variable": "when"}},
              {"id": "end", "type": "end"}, edges=[("start", "out", "wait"), ("wait", "out", "end")])
    target = (engine.now() + dt.timedelta(days=3)).replace(microsecond=0)
    campaign, run = start(acme, marketer, g, variables={"when": target.isoformat()},
                          declarations=[{"name": "when", "type": "datetime", "required": True}], eager=eager)
    assert nodes_of(run)["wait"].wake_at == target


def test_failing_node_fails_the_run_with_a_reason_and_retry_resumes_there(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    # `end` triggers a campaign that is not live: a readable failure.
    other = make_campaign(acme, marketer, {"nodes": [], "edges": []}, name="Not live")
    g = graph({"id": "end", "type": "end", "config": {"trigger_campaign": other.pk}},
              edges=[("start", "out", "end")])
    campaign, run = start(acme, marketer, g, eager=eager)
    with tenant_scope(acme):
        run.refresh_from_db()
        campaign.refresh_from_db()
    assert run.status == "failed"
    assert run.error_node == "end"
    assert "Cannot trigger a campaign that is draft" in run.error
    assert campaign.status == "failed"
    with tenant_scope(acme):
        assert RunLog.objects.filter(run=run, level="error", node_id="end").exists()

    # Fix the cause (make the other campaign live), then retry from the failed node.
    other_graph = {"nodes": [{"id": "s", "type": "scheduler", "config": {"mode": "api"}}], "edges": []}
    with tenant_scope(acme), eager(execute=True):
        services.draft_update(tenant=acme, campaign=other, by=marketer, graph=other_graph)
        services.campaign_publish(tenant=acme, campaign=other, by=marketer)
        services.campaign_start(tenant=acme, campaign=other, by=marketer)
        services.run_retry(tenant=acme, run=run, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
        assert run.status == "completed"
        assert nodes_of(run)["start"].executions == 1  # not run again
        assert Run.objects.filter(campaign=other, trigger="api").count() == 1


def test_suspend_policy_suspends_instead_of_failing(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    other = make_campaign(acme, marketer, {"nodes": [], "edges": []}, name="Not live")
    g = graph({"id": "end", "type": "end", "config": {"trigger_campaign": other.pk}},
              edges=[("start", "out", "end")])
    campaign, run = start(acme, marketer, g, settings={"error_handling": {"mode": "suspend"}}, eager=eager)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "suspended" and run.error_node == "end"


def test_ignore_policy_skips_the_failed_branch(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    other = make_campaign(acme, marketer, {"nodes": [], "edges": []}, name="Not live")
    g = graph({"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
              {"id": "bad", "type": "end", "config": {"trigger_campaign": other.pk}},
              {"id": "good", "type": "end"},
              edges=[("start", "out", "fork"), ("fork", "a", "bad"), ("fork", "b", "good")])
    campaign, run = start(acme, marketer, g, settings={"error_handling": {"mode": "ignore"}}, eager=eager)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed"
    assert nodes_of(run)["good"].status == "done" and nodes_of(run)["bad"].status == "skipped"


def test_tenant_concurrency_cap_queues_runs(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    acme.settings = {"max_concurrent_runs": 1}
    acme.save()
    g = graph({"id": "wait", "type": "wait", "config": {"mode": "duration", "duration": "1h"}},
              edges=[("start", "out", "wait")])
    first = make_campaign(acme, marketer, g, name="first")
    second = make_campaign(acme, marketer, g, name="second")
    with tenant_scope(acme), eager(execute=True):
        for c in (first, second):
            services.campaign_publish(tenant=acme, campaign=c, by=marketer)
        run1 = services.campaign_start(tenant=acme, campaign=first, by=marketer)
        run2 = services.campaign_start(tenant=acme, campaign=second, by=marketer)
    with tenant_scope(acme):
        run1.refresh_from_db()
        run2.refresh_from_db()
    assert run1.status == "running" and run2.status == "queued"


def test_node_execution_is_idempotent(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    g = graph({"id": "end", "type": "end"}, edges=[("start", "out", "end")])
    campaign, run = start(acme, marketer, g, eager=eager)
    with tenant_scope(acme), eager(execute=True):
        # duplicated messages: nothing runs twice
        engine.execute_node(run.pk, "start")
        engine.execute_node(run.pk, "end")
        engine.advance(run.pk)
    assert all(n.executions == 1 for n in nodes_of(run).values())


def test_flow_nodes_beyond_the_inline_budget_are_dispatched_and_each_runs_once(acme, people, eager, monkeypatch):
    """Cheap flow nodes run inside `advance`; past its budget the rest go through execute_node."""
    monkeypatch.setattr(engine, "INLINE_NODES", 3)
    marketer = people["acme"]["marketer"].user
    chain = [{"id": f"t{i}", "type": "test", "config": {"conditions": [
        {"port": "never", "when": {"count": {"op": "lt", "value": 0}}}]}} for i in range(12)]
    edges = [("start", "out", "t0")] + [(f"t{i}", "default", f"t{i + 1}") for i in range(11)]
    campaign, run = start(acme, marketer, graph(*chain, edges=edges), eager=eager)
    with tenant_scope(acme):
        run.refresh_from_db()
        done_logs = RunLog.objects.filter(run=run, message="Test done.").count()
    assert run.status == "completed", run.error
    states = nodes_of(run)
    assert all(n.status == "done" and n.executions == 1 and n.attempts == 1 for n in states.values())
    assert done_logs == 12


@pytest.mark.parametrize("bad,message", [
    ({"nodes": [], "edges": []}, "no activities"),
    ({"nodes": [START, {"id": "x", "type": "nope"}], "edges": []}, "Unknown activity type"),
    ({"nodes": [START, {"id": "w", "type": "wait", "config": {"mode": "duration", "duration": "soon"}}],
      "edges": [{"from": "start", "port": "out", "to": "w"}]}, "Invalid duration"),
    ({"nodes": [START, {"id": "e", "type": "end"}], "edges": [{"from": "start", "port": "nope", "to": "e"}]},
     "no output port"),
    ({"nodes": [START, {"id": "e", "type": "end"}], "edges": []}, "Not reachable"),
    ({"nodes": [START, {"id": "a", "type": "fork", "config": {"branches": [{"port": "x"}, {"port": "y"}]}},
                {"id": "b", "type": "wait", "config": {"mode": "duration", "duration": "1m"}}],
      "edges": [{"from": "start", "port": "out", "to": "a"}, {"from": "a", "port": "x", "to": "b"},
                {"from": "b", "port": "out", "to": "a"}]}, "cycle"),
    ({"nodes": [START, {"id": "j", "type": "and_join"}], "edges": [{"from": "start", "port": "out", "to": "j"}]},
     "at least 2"),
])
def test_validation_names_the_problem(acme, people, bad, message):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, bad)
    with tenant_scope(acme):
        problems = services.graph_problems(campaign, bad)
    assert any(message in p["message"] for p in problems), problems
