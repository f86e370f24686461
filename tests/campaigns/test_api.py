"""The campaigns API as a marketer meets it: build, validate, publish, start, trigger, monitor."""

from __future__ import annotations

import pytest

GRAPH = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}},
              {"id": "wait", "type": "wait", "config": {"mode": "duration", "duration": "1h"}},
              {"id": "end", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "wait"}, {"from": "wait", "port": "out", "to": "end"}],
}


@pytest.fixture
def marketer(api):
    return api("acme", "marketer")


def create(client, **extra):
    response = client.post("/api/v1/campaigns/", {"name": "Welcome", "graph": GRAPH, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_build_publish_start_trigger_and_monitor(marketer, eager):
    campaign = create(marketer, variables=[{"name": "promo", "type": "string", "required": True}])
    cid = campaign["id"]
    assert marketer.post(f"/api/v1/campaigns/{cid}/validate").json() == {"valid": True, "problems": []}
    assert marketer.post(f"/api/v1/campaigns/{cid}/publish").status_code == 200
    started = marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json").json()
    assert started["campaign"]["status"] == "live" and started["run"] is None  # waits for triggers

    bad = marketer.post(f"/api/v1/campaigns/{cid}/trigger", {"variables": {"nope": 1}}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"variables.nope", "variables.promo"}

    with eager(execute=True):
        run = marketer.post(f"/api/v1/campaigns/{cid}/trigger", {"variables": {"promo": "SPRING"}}, format="json")
    assert run.status_code == 201, run.content
    detail = marketer.get(f"/api/v1/runs/{run.json()['id']}/").json()
    assert detail["variables"] == {"promo": "SPRING"}
    assert {n["node_id"]: n["status"] for n in detail["nodes"]} == {"start": "done", "wait": "waiting",
                                                                     "end": "pending"}
    assert detail["transitions"][0]["active"] is True and detail["transitions"][1]["count"] is None
    log = marketer.get(f"/api/v1/runs/{run.json()['id']}/log?search=waiting").json()
    assert log and "Waiting until" in log[0]["message"]
    assert marketer.get(f"/api/v1/campaigns/{cid}/runs/").json()["count"] == 1


def test_validate_returns_every_problem_with_its_node(marketer):
    cid = create(marketer)["id"]
    broken = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "weekly"}},
                        {"id": "w", "type": "wait", "config": {"mode": "sometime"}},
                        {"id": "orphan", "type": "end"}],
              "edges": [{"from": "start", "port": "out", "to": "w"}]}
    saved = marketer.put(f"/api/v1/campaigns/{cid}/draft", {"graph": broken}, format="json")
    assert saved.status_code == 200
    problems = marketer.post(f"/api/v1/campaigns/{cid}/validate").json()["problems"]
    assert {p["node"] for p in problems} >= {"start", "w", "orphan"}
    response = marketer.post(f"/api/v1/campaigns/{cid}/publish")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_graph"


def test_concurrent_draft_edits_conflict(marketer, api):
    cid = create(marketer)["id"]
    draft = marketer.get(f"/api/v1/campaigns/{cid}/draft").json()
    first = marketer.put(f"/api/v1/campaigns/{cid}/draft", {"graph": GRAPH, "revision": draft["revision"]},
                         format="json")
    assert first.status_code == 200
    second = api("acme", "admin").put(f"/api/v1/campaigns/{cid}/draft",
                                      {"graph": GRAPH, "revision": draft["revision"]}, format="json")
    assert second.status_code == 409 and second.json()["error"]["code"] == "edit_conflict"


def test_editing_a_live_campaign_makes_a_new_draft_and_runs_keep_their_graph(marketer, eager):
    cid = create(marketer)["id"]
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    with eager(execute=True):
        run = marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json").json()
    changed = {**GRAPH, "nodes": [*GRAPH["nodes"][:1], {"id": "wait", "type": "wait",
                                                         "config": {"mode": "duration", "duration": "5m"}},
                                  GRAPH["nodes"][2]]}
    saved = marketer.put(f"/api/v1/campaigns/{cid}/draft", {"graph": changed}, format="json").json()
    assert saved["number"] == 2 and saved["status"] == "draft"
    detail = marketer.get(f"/api/v1/runs/{run['id']}/").json()
    assert detail["graph"]["nodes"][1]["config"]["duration"] == "1h"
    versions = marketer.get(f"/api/v1/campaigns/{cid}/versions/").json()["results"]
    assert [v["status"] for v in versions] == ["draft", "published"]


def test_illegal_transitions_are_409(marketer):
    cid = create(marketer)["id"]
    assert marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json").json()["error"]["code"] == "not_published"
    assert marketer.post(f"/api/v1/campaigns/{cid}/pause").status_code == 409
    assert marketer.post(f"/api/v1/campaigns/{cid}/archive").status_code == 200
    response = marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    assert response.status_code == 409
    assert "archived" in response.json()["error"]["message"]


def test_trigger_too_soon_is_429_with_retry_after(marketer, eager):
    cid = create(marketer, settings={"min_trigger_interval_seconds": 600})["id"]
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    with eager(execute=True):
        assert marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json").status_code == 201
    again = marketer.post(f"/api/v1/campaigns/{cid}/trigger", {}, format="json")
    assert again.status_code == 429
    assert 590 <= int(again["Retry-After"]) <= 601


def test_viewer_reads_but_cannot_build_or_start(api, marketer):
    cid = create(marketer)["id"]
    viewer = api("acme", "viewer")
    assert viewer.get(f"/api/v1/campaigns/{cid}/").status_code == 200
    assert viewer.post("/api/v1/campaigns/", {"name": "x"}, format="json").status_code == 403
    assert viewer.post(f"/api/v1/campaigns/{cid}/publish").status_code == 403


def test_activity_types_are_served_with_config_schemas(marketer):
    types = {t["type"]: t for t in marketer.get("/api/v1/activities/").json()}
    assert {"scheduler", "wait", "fork", "and_join", "test", "end"} <= set(types)
    assert types["wait"]["config_schema"]["required"] == ["mode"]


def test_schedule_preview_and_campaign_schedule(marketer):
    preview = marketer.post("/api/v1/schedules/preview", {"spec": {"mode": "daily", "times": ["09:00"]}},
                            format="json").json()
    assert preview["time_zone"] == "Europe/Paris" and len(preview["upcoming"]) == 10
    bad = marketer.post("/api/v1/schedules/preview", {"spec": {"mode": "hourly"}}, format="json")
    assert bad.status_code == 400


def test_duplicate_and_back_to_draft(marketer):
    cid = create(marketer)["id"]
    marketer.post(f"/api/v1/campaigns/{cid}/publish")
    copy = marketer.post(f"/api/v1/campaigns/{cid}/duplicate").json()
    assert copy["status"] == "draft" and copy["name"] == "Welcome (copy)"
    marketer.post(f"/api/v1/campaigns/{cid}/start", {}, format="json")
    assert marketer.post(f"/api/v1/campaigns/{cid}/back-to-draft").json()["status"] == "draft"
