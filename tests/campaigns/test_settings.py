"""Campaign settings and their limits as a tenant meets them: guardrails on the size of a graph
(configurable per tenant), the retention of working populations, the minimum interval between API
triggers, and "back to draft" only while a scheduled campaign has not run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from apps.campaigns import engine, schedules, services
from apps.campaigns.models import NodeState, Run, RunLog, Schedule
from apps.campaigns.populations import WORK_SCHEMA
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "api"}}


@pytest.fixture
def marketer(api):
    return api("acme", "marketer")


def chain(count: int, node_type: str = "fork", config: dict | None = None) -> dict:
    """The start and `count` more activities of `node_type` in a row."""
    nodes = [START] + [{"id": f"n{i}", "type": node_type, "config": config or {}} for i in range(count)]
    edges = [{"from": nodes[i]["id"], "port": "out", "to": nodes[i + 1]["id"]} for i in range(count)]
    return {"nodes": nodes, "edges": edges}


def problems_of(client, graph: dict) -> list[str]:
    created = client.post("/api/v1/campaigns/", {"name": "Big", "graph": graph}, format="json")
    assert created.status_code == 201, created.content
    answer = client.post(f"/api/v1/campaigns/{created.json()['id']}/validate").json()
    return [p["message"] for p in answer["problems"]]


def set_tenant_settings(api, **settings) -> None:
    response = api("acme", "admin").patch("/api/v1/tenant", {"settings": settings}, format="json")
    assert response.status_code == 200, response.content


# Guardrails ------------------------------------------------------------------------------------

def test_at_most_500_activities_by_default(marketer):
    wait = {"mode": "duration", "duration": "1m"}
    assert "At most 500 activities per campaign." in problems_of(marketer, chain(500, "wait", wait))
    assert not [p for p in problems_of(marketer, chain(499, "wait", wait)) if p.startswith("At most")]


def test_the_activity_limit_is_a_tenant_setting(api, marketer):
    wait = {"mode": "duration", "duration": "1m"}
    set_tenant_settings(api, max_activities=5)
    assert problems_of(marketer, chain(5, "wait", wait)) == ["At most 5 activities per campaign."]
    assert problems_of(marketer, chain(4, "wait", wait)) == []


def test_at_most_10_channel_activities_by_default_and_per_tenant(api, marketer):
    def channels(count: int) -> dict:
        fork = {"id": "fork", "type": "fork", "config": {"branches": [{"port": f"b{i}"} for i in range(count)]}}
        sends = [{"id": f"email{i}", "type": "email", "config": {}} for i in range(count)]
        return {"nodes": [START, fork, *sends],
                "edges": [{"from": "start", "port": "out", "to": "fork"}]
                + [{"from": "fork", "port": f"b{i}", "to": f"email{i}"} for i in range(count)]}

    assert "At most 10 channel activities per campaign." in problems_of(marketer, channels(11))
    assert "At most 10 channel activities per campaign." not in problems_of(marketer, channels(10))
    set_tenant_settings(api, max_channel_activities=2)
    assert "At most 2 channel activities per campaign." in problems_of(marketer, channels(3))


def test_a_graph_over_the_limit_cannot_be_published(api, marketer):
    set_tenant_settings(api, max_activities=2)
    created = marketer.post("/api/v1/campaigns/", {"name": "Big", "graph": chain(2)}, format="json").json()
    response = marketer.post(f"/api/v1/campaigns/{created['id']}/publish")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_graph"


# Retention of working populations -------------------------------------------------------------

def work_tables(run_id: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
                       [WORK_SCHEMA, f"r{run_id}\\_n%"])
        return [row[0] for row in cursor.fetchall()]


def finished_run_with_a_population(acme, person, eager, **campaign_settings) -> Run:
    graph = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                       {"id": "rows", "type": "test_slow", "config": {"seconds": 0}}, {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "rows"}, {"from": "rows", "port": "out", "to": "end"}]}
    campaign = make_campaign(acme, person, graph, settings=campaign_settings)
    with tenant_scope(acme), eager(execute=True):
        services.campaign_publish(tenant=acme, campaign=campaign, by=person)
        run = services.campaign_start(tenant=acme, campaign=campaign, by=person)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed" and len(work_tables(run.pk)) == 1
    return run


def finished_days_ago(run: Run, days: float) -> None:
    Run.dangerously_unscoped.filter(pk=run.pk).update(finished_at=engine.now() - dt.timedelta(days=days))


def test_populations_are_purged_after_the_tenants_retention_default_30_days(acme, people, eager, marketer):
    person = people["acme"]["marketer"].user
    assert acme.data_retention_days == 30
    old, recent = (finished_run_with_a_population(acme, person, eager) for _ in range(2))
    finished_days_ago(old, 31)
    finished_days_ago(recent, 29)

    assert services.dangerously_purge_expired_runs() == 1
    assert work_tables(old.pk) == [] and len(work_tables(recent.pk)) == 1
    with tenant_scope(acme):
        old.refresh_from_db()
        assert old.purged_at is not None
        assert RunLog.objects.filter(run=old, message="Working populations purged after 30 days.").exists()
        assert NodeState.objects.get(run=old, node_id="rows").count_out == 1
    # Monitoring still answers for transition 1 (rows -> end): its count stays, its rows are gone.
    sample = marketer.get(f"/api/v1/runs/{old.pk}/transitions/1/sample")
    assert sample.status_code == 200, sample.content
    assert sample.json() == {"columns": [], "rows": [], "count": 1, "purged": True}
    kept = marketer.get(f"/api/v1/runs/{recent.pk}/transitions/1/sample").json()
    assert kept["rows"] == [["rows"]] and "purged" not in kept
    assert services.dangerously_purge_expired_runs() == 0  # nothing twice


def test_the_retention_is_the_tenants_setting_and_a_campaign_may_keep_less(api, acme, people, eager):
    person = people["acme"]["marketer"].user
    response = api("acme", "admin").patch("/api/v1/tenant", {"data_retention_days": 5}, format="json")
    assert response.status_code == 200, response.content
    tenant_wide = finished_run_with_a_population(acme, person, eager)
    short = finished_run_with_a_population(acme, person, eager, retention_days=1)
    finished_days_ago(tenant_wide, 4)
    finished_days_ago(short, 2)
    assert services.dangerously_purge_expired_runs() == 1
    assert work_tables(short.pk) == [] and len(work_tables(tenant_wide.pk)) == 1
    finished_days_ago(tenant_wide, 6)
    assert services.dangerously_purge_expired_runs() == 1
    assert work_tables(tenant_wide.pk) == []


def test_a_run_in_progress_is_never_purged(acme, people, eager):
    person = people["acme"]["marketer"].user
    run = finished_run_with_a_population(acme, person, eager)
    Run.dangerously_unscoped.filter(pk=run.pk).update(status="running", finished_at=None)
    assert services.dangerously_purge_expired_runs() == 0
    assert len(work_tables(run.pk)) == 1


# Minimum interval between API triggers -------------------------------------------------------

def test_a_trigger_after_the_interval_is_accepted_again(marketer, eager, monkeypatch):
    graph = {"nodes": [START, {"id": "end", "type": "end"}], "edges": [{"from": "start", "port": "out", "to": "end"}]}
    cid = marketer.post("/api/v1/campaigns/", {"name": "Hook", "graph": graph,
                                                "settings": {"min_trigger_interval_seconds": 60}},
                        format="json").json()["id"]
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    first = engine.now()
    monkeypatch.setattr(engine, "now", lambda: first)
    with eager(execute=True):
        assert marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json").status_code == 201
    monkeypatch.setattr(engine, "now", lambda: first + dt.timedelta(seconds=45))
    too_soon = marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json")
    assert too_soon.status_code == 429 and too_soon["Retry-After"] == "16"
    assert too_soon.json()["error"]["code"] == "too_soon"
    monkeypatch.setattr(engine, "now", lambda: first + dt.timedelta(seconds=61))
    with eager(execute=True):
        assert marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json").status_code == 201
    assert marketer.get(f"/api/v1/campaigns/{cid}/runs/").json()["count"] == 2


# Back to draft ----------------------------------------------------------------------------------

def test_back_to_draft_only_while_a_scheduled_campaign_has_not_run(acme, marketer, eager):
    daily = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                       {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "end"}]}
    cid = marketer.post("/api/v1/campaigns/", {"name": "Daily", "graph": daily}, format="json").json()["id"]
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    assert marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json").json()["campaign"]["status"] == "live"
    with tenant_scope(acme):
        assert Schedule.objects.filter(campaign_id=cid).exists()

    # Not run yet: back to draft disarms the schedule.
    back = marketer.post(f"/api/v1/campaigns/{cid}/back-to-draft")
    assert back.status_code == 200 and back.json()["status"] == "draft"
    with tenant_scope(acme):
        assert not Schedule.objects.filter(campaign_id=cid).exists()

    # Published and started again, it fires once: from then on it stays out of draft.
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    with tenant_scope(acme):
        fire = Schedule.objects.get(campaign_id=cid).next_fire_at
        with eager(execute=True):
            assert schedules.dispatch_due(tenant=acme, now=fire + dt.timedelta(seconds=1)) == 1
    refused = marketer.post(f"/api/v1/campaigns/{cid}/back-to-draft")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "already_ran"
    assert marketer.get(f"/api/v1/campaigns/{cid}/").json()["status"] == "live"


def test_a_test_run_does_not_count_as_having_run(marketer, eager):
    graph = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                       {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "end"}]}
    cid = marketer.post("/api/v1/campaigns/", {"name": "Daily", "graph": graph}, format="json").json()["id"]
    with eager(execute=True):
        assert marketer.post(f"/api/v1/campaigns/{cid}/test", {}, format="json").status_code == 201
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    assert marketer.post(f"/api/v1/campaigns/{cid}/back-to-draft").json()["status"] == "draft"
