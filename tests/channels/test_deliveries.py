"""Deliveries through the API, and the file export activity."""

from __future__ import annotations

import csv
import io

from apps.profiles.services import profile_upsert
from tests.channels.test_email_activity import add_profiles, email_graph, nodes_of, run_campaign


def test_deliveries_api_shows_counts_by_reason_and_messages(api, acme, people, eager, smtp_ready):
    add_profiles(acme, 3)
    profile_upsert(tenant=acme, values={"id": "optout", "email": "o@example.test", "email_opt_in": False}, by=None)
    run = run_campaign(acme, people, eager, email_graph())
    client = api("acme", "viewer")
    listing = client.get(f"/api/v1/channels/deliveries/?run={run.pk}").json()
    [delivery] = listing["results"]
    assert delivery["channel"] == "email" and delivery["status"] == "done" and delivery["targeted"] == 4
    detail = client.get(f"/api/v1/channels/deliveries/{delivery['id']}/").json()
    assert detail["counts"]["sent"] == 3 and detail["counts"]["excluded_by_reason"] == {"no_consent": 1}
    messages = client.get(f"/api/v1/channels/deliveries/{delivery['id']}/messages/?status=excluded").json()
    assert [(m["recipient_key"], m["reason"]) for m in messages["results"]] == [("optout", "no_consent")]
    assert client.get(f"/api/v1/channels/deliveries/{delivery['id']}/messages/?status=nope").status_code == 400
    assert client.get("/api/v1/channels/deliveries/?run=x").status_code == 400
    assert [d["id"] for d in client.get("/api/v1/channels/deliveries/?status=done").json()["results"]] == [delivery["id"]]
    assert client.get("/api/v1/channels/deliveries/?status=awaiting_confirmation").json()["results"] == []
    bad = client.get("/api/v1/channels/deliveries/?status=nope")
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]
    assert client.get(f"/api/v1/channels/deliveries/{delivery['id']}/file").status_code == 409


def test_file_export_writes_one_formula_safe_line_per_recipient(api, acme, people, eager):
    profile_upsert(tenant=acme, values={"id": "a", "first_name": "Ann", "country": "FR"}, by=None)
    profile_upsert(tenant=acme, values={"id": "b", "first_name": "=HYPERLINK(\"http://evil\")", "country": "DE"},
                   by=None)
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "who", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "file", "type": "file_export", "config": {"content": {"columns": [
                      {"name": "name", "value": "{{ profile.first_name | upcase }}"},
                      {"name": "country", "value": "{{ profile.country }}"}]}}}],
        "edges": [{"from": "start", "port": "out", "to": "who"}, {"from": "who", "port": "out", "to": "file"}],
    }
    run = run_campaign(acme, people, eager, graph)
    assert run.status == "completed", run.error
    assert nodes_of(run)["file"].outputs["sent"]["count"] == 2
    client = api("acme", "marketer")
    [delivery] = client.get(f"/api/v1/channels/deliveries/?run={run.pk}").json()["results"]
    assert delivery["has_file"] is True
    response = client.get(f"/api/v1/channels/deliveries/{delivery['id']}/file")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [["key", "name", "country"], ["a", "ANN", "FR"], ["b", "'=HYPERLINK(\"HTTP://EVIL\")", "DE"]]
