"""Campaign pages of the portal: list, create, the campaign page (actions, SVG graph, counts,
transition preview, run log, JSON editor), permissions and tenancy."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from apps.campaigns import engine, selectors, services
from apps.campaigns.models import Campaign, CampaignVersion, Run
from apps.portal.graph_layout import layers, layout
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import eager, make_campaign  # noqa: F401

GRAPH = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
              {"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
              {"id": "end_a", "type": "end"}, {"id": "end_b", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "a", "to": "end_a"},
              {"from": "fork", "port": "b", "to": "end_b"}],
}


def detail_url(campaign):
    return reverse("portal:campaign-detail", kwargs={"campaign_id": campaign.pk})


def action_url(campaign, action):
    return reverse("portal:campaign-action", kwargs={"campaign_id": campaign.pk, "action": action})


@pytest.fixture
def campaign(acme, people):
    return make_campaign(acme, people["acme"]["marketer"].user, GRAPH, name="Spring sale", tags=["promo"])


@pytest.fixture
def test_run(acme, people, campaign, eager):  # noqa: F811
    with tenant_scope(acme), eager(execute=True):
        run = services.campaign_test(tenant=acme, campaign=campaign, by=people["acme"]["marketer"].user)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed", run.error
    return run


# --- Layout ---------------------------------------------------------------------------------------


def test_layout_longest_path_layers_left_to_right():
    nodes = ["a", "b", "c", "d"]
    edges = [("a", "out", "b"), ("b", "out", "d"), ("a", "out", "c"), ("c", "out", "d"), ("a", "out", "d")]
    assert layers(nodes, [(s, t) for s, _, t in edges]) == {"a": 0, "b": 1, "c": 1, "d": 2}
    drawn = layout(nodes, edges)
    assert drawn.nodes["a"].x < drawn.nodes["b"].x == drawn.nodes["c"].x < drawn.nodes["d"].x
    assert drawn.nodes["b"].y != drawn.nodes["c"].y
    assert [e.index for e in drawn.edges] == [0, 1, 2, 3, 4]
    assert all(e.d.startswith("M") and not e.backward for e in drawn.edges)
    assert drawn.width >= drawn.nodes["d"].x + drawn.nodes["d"].width


def test_layout_survives_cycles_unknown_nodes_and_empty_graphs():
    assert layers(["a", "b"], [("a", "b"), ("b", "a")]) == {"a": 0, "b": 1}
    drawn = layout(["a", "b"], [("a", "out", "b"), ("b", "out", "a"), ("a", "out", "ghost")])
    assert [e.backward for e in drawn.edges] == [False, True]
    empty = layout([], [])
    assert empty.nodes == {} and empty.width > 0


# --- List and create ------------------------------------------------------------------------------


def test_list_shows_campaigns_with_status_last_run_and_tags(portal, campaign, test_run):
    html = portal("acme", "viewer").get(reverse("portal:campaigns")).content.decode()
    assert "Spring sale" in html and "promo" in html and "Draft" in html
    assert "Completed" in html  # the last run
    assert "No campaigns in this workspace" not in html
    assert "New campaign" not in html  # viewers cannot build


def test_next_fire_times_in_the_campaigns_time_zone_on_list_and_page(portal, acme, people):
    marketer = people["acme"]["marketer"].user
    weekly = {"nodes": [{"id": "start", "type": "scheduler",
                         "config": {"mode": "weekly", "weekdays": ["mon", "thu"], "times": ["09:30"]}},
                        {"id": "end", "type": "end"}],
              "edges": [{"from": "start", "port": "out", "to": "end"}]}
    campaign = make_campaign(acme, marketer, weekly, name="Weekly digest")
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
        fires = selectors.schedule_next_fires(schedule=selectors.campaign_schedule(campaign=campaign))
    assert len(fires) == 5 and {(f.strftime("%a"), f.hour, f.minute) for f in fires} <= {("Mon", 9, 30),
                                                                                            ("Thu", 9, 30)}
    assert all(str(f.tzinfo) == "Europe/Paris" for f in fires)  # acme's zone, the campaign's default
    with tenant_scope(acme):  # the campaign's own zone wins, in the portal too
        services.campaign_update(tenant=acme, campaign=campaign, by=marketer, settings={"time_zone": "Asia/Tokyo"})
        services.campaign_pause(tenant=acme, campaign=campaign, by=marketer)
        services.campaign_resume(tenant=acme, campaign=campaign, by=marketer)
        fires = selectors.schedule_next_fires(schedule=selectors.campaign_schedule(campaign=campaign))
    assert {(f.hour, f.minute, f.tzname()) for f in fires} == {(9, 30, "JST")}

    client = portal("acme", "viewer")
    listing = client.get(reverse("portal:campaigns")).content.decode()
    first = f"{fires[0]:%b} {fires[0].day}, {fires[0]:%Y} 09:30 JST"
    assert re.search(rf'data-testid="next-run"><time[^>]*>{first}</time>', listing), first
    page = client.get(detail_url(campaign)).content.decode()
    shown = re.search(r'data-testid="next-runs">(.*?)</p>', page, re.S).group(1)
    assert "Asia/Tokyo" in shown
    assert re.findall(r"<time[^>]*>([^<]*)</time>", shown) == [f"{f:%a %b} {f.day}, 09:30 JST" for f in fires]

    with tenant_scope(acme):
        services.campaign_pause(tenant=acme, campaign=campaign, by=marketer)
    listing = client.get(reverse("portal:campaigns")).content.decode()
    assert re.search(r'data-testid="next-run">\s*<span class="muted">Paused</span>', listing)
    assert 'data-testid="next-runs"' not in client.get(detail_url(campaign)).content.decode()


def test_create_redirects_to_the_campaign_page(portal, acme):
    client = portal("acme", "marketer")
    assert "New campaign" in client.get(reverse("portal:campaigns")).content.decode()
    response = client.post(reverse("portal:campaign-new"), {"name": "Welcome", "description": "Hello"})
    with tenant_scope(acme):
        created = Campaign.objects.get(name="Welcome")
    assert response.status_code == 302 and response["Location"] == detail_url(created)
    assert created.description == "Hello"
    assert client.post(reverse("portal:campaign-new"), {"name": ""}).status_code == 400


# --- Campaign page --------------------------------------------------------------------------------


def test_campaign_page_draws_the_graph_and_offers_actions_by_status(portal, campaign):
    html = portal("acme", "marketer").get(detail_url(campaign)).content.decode()
    assert "<svg" in html
    for node in ("start", "fork", "end_a", "end_b"):
        assert f'data-node="{node}"' in html
    actions = set(re.findall(r'data-action="(\w+)"', html))
    assert actions == {"validate", "publish", "test"}
    assert 'hx-trigger="every 3s"' not in html  # no run in progress
    assert "Draft graph (JSON)" in html and 'name="revision"' in html


def test_test_run_shows_counts_on_edges_and_polls_only_while_active(portal, campaign, test_run):
    client = portal("acme", "viewer")
    html = client.get(detail_url(campaign)).content.decode()
    assert f"Run #{test_run.pk}" in html
    with tenant_scope(campaign.tenant):
        transitions = selectors.run_transitions(run=test_run)
    assert all(t["count"] is not None for t in transitions)
    for t in transitions:
        assert f'data-count="{t["index"]}">{t["count"]}<' in html
        label = re.search(rf'data-edge-label="{t["index"]}".*?<text[^>]*>([^<]*)</text>', html, re.S).group(1)
        assert label == f"{t['count']:,}"
    assert "✓ Done" in html  # status as text, not only colour
    assert 'hx-trigger="every 3s"' not in html

    # While a run is active the fragment polls itself.
    with tenant_scope(campaign.tenant):
        Run.objects.filter(pk=test_run.pk).update(status="running")
    fragment = client.get(reverse("portal:campaign-graph", kwargs={"campaign_id": campaign.pk}),
                          {"run": test_run.pk}, HTTP_HX_REQUEST="true")
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in body
    assert 'hx-trigger="every 3s"' in body and f"?run={test_run.pk}" in body


def test_transition_preview_fragment(portal, campaign, test_run, monkeypatch):
    url = reverse("portal:campaign-transition", kwargs={"campaign_id": campaign.pk, "run_id": test_run.pk,
                                                         "index": 1})
    client = portal("acme", "viewer")
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "fork" in response.content.decode() and "end_a" in response.content.decode()
    assert client.get(url.replace("/1/", "/99/")).status_code == 404

    monkeypatch.setattr(selectors, "transition_sample", lambda **kw: {
        "columns": ["key", "email"], "rows": [[str(i), f"p{i}@x.test"] for i in range(20)], "count": 500})
    html = client.get(url).content.decode()
    assert "<th scope=\"col\">email</th>" in html and "p19@x.test" in html and "First 20 rows" in html


def test_log_filter(portal, campaign, test_run):
    with tenant_scope(campaign.tenant):
        engine.log(test_run, "Something odd happened", level="warning", node_id="fork")
        engine.log(test_run, "Routine note", level="info")
    url = reverse("portal:campaign-run-log", kwargs={"campaign_id": campaign.pk, "run_id": test_run.pk})
    client = portal("acme", "viewer")
    html = client.get(url, {"level": "warning"}).content.decode()
    assert "Something odd happened" in html and "Routine note" not in html
    html = client.get(url, {"search": "routine"}).content.decode()
    assert "Routine note" in html and "Something odd" not in html
    page = client.get(detail_url(campaign)).content.decode()
    assert "Run log" in page and "Routine note" in page


def test_actions_call_the_services_and_flash_errors(portal, campaign, eager):  # noqa: F811
    client = portal("acme", "marketer")
    broken = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                        {"id": "lost", "type": "end"}], "edges": []}
    with tenant_scope(campaign.tenant):
        version = services.draft_version(campaign)
        services.draft_update(tenant=campaign.tenant, campaign=campaign, by=None, graph=broken,
                              revision=version.revision)
    html = client.post(action_url(campaign, "publish"), follow=True).content.decode()
    assert "problem(s)" in html and "lost" in html
    assert re.search(r'data-node="lost"[^>]*>.*?gnode__mark', html, re.S) or 'gnode--attention" data-node="lost"' in html

    with tenant_scope(campaign.tenant):
        version = services.draft_version(campaign)
        services.draft_update(tenant=campaign.tenant, campaign=campaign, by=None, graph=GRAPH,
                              revision=version.revision)
    html = client.post(action_url(campaign, "validate"), follow=True).content.decode()
    assert "The draft is valid" in html
    client.post(action_url(campaign, "publish"))
    with eager(execute=True):
        response = client.post(action_url(campaign, "start"))
    with tenant_scope(campaign.tenant):
        campaign.refresh_from_db()
    assert campaign.status in ("live", "completed")
    assert response.status_code == 302 and "?run=" in response["Location"]
    html = client.post(action_url(campaign, "resume"), follow=True).content.decode()
    assert "Cannot resume" in html


def test_json_editor_save_and_conflict(portal, campaign):
    client = portal("acme", "marketer")
    with tenant_scope(campaign.tenant):
        revision = services.draft_version(campaign).revision
    url = reverse("portal:campaign-draft", kwargs={"campaign_id": campaign.pk})
    new_graph = {**GRAPH, "nodes": [*GRAPH["nodes"], {"id": "extra", "type": "end"}],
                 "edges": [*GRAPH["edges"], {"from": "fork", "port": "b", "to": "extra"}]}
    response = client.post(url, {"graph": json.dumps(new_graph), "revision": revision}, follow=True)
    html = response.content.decode()
    assert "Draft saved" in html and 'data-node="extra"' in html
    with tenant_scope(campaign.tenant):
        assert services.draft_version(campaign).graph == new_graph

    # Someone else saved meanwhile: the stale revision is a conflict, the text is kept.
    stale = client.post(url, {"graph": json.dumps(GRAPH), "revision": revision})
    assert stale.status_code == 409
    assert "saved by someone else" in stale.content.decode()
    with tenant_scope(campaign.tenant):
        assert services.draft_version(campaign).graph == new_graph

    bad = client.post(url, {"graph": "{nope", "revision": revision + 1})
    assert bad.status_code == 400 and "not valid JSON" in bad.content.decode()


def test_viewer_sees_no_actions_and_cannot_post(portal, campaign):
    client = portal("acme", "viewer")
    html = client.get(detail_url(campaign)).content.decode()
    assert "data-action=" not in html and 'name="revision"' not in html
    assert client.post(action_url(campaign, "publish")).status_code in (403, 404)
    assert client.post(action_url(campaign, "test")).status_code in (403, 404)
    with tenant_scope(campaign.tenant):
        revision = services.draft_version(campaign).revision
    response = client.post(reverse("portal:campaign-draft", kwargs={"campaign_id": campaign.pk}),
                           {"graph": "{}", "revision": revision})
    assert response.status_code in (403, 404)
    assert client.post(reverse("portal:campaign-new"), {"name": "x"}).status_code in (403, 404)
    with tenant_scope(campaign.tenant):
        assert services.draft_version(campaign).revision == revision
        assert CampaignVersion.objects.filter(campaign=campaign, status="published").count() == 0


def test_another_tenants_campaign_is_404(portal, campaign, test_run):
    client = portal("globex", "admin")
    assert client.get(detail_url(campaign)).status_code == 404
    assert client.post(action_url(campaign, "test")).status_code == 404
    assert client.get(reverse("portal:campaign-run-log", kwargs={"campaign_id": campaign.pk,
                                                                 "run_id": test_run.pk})).status_code == 404
    # a run of another campaign is not shown under this one
    other = make_campaign(campaign.tenant, None, GRAPH, name="Other")
    assert portal("acme", "admin").get(detail_url(other), {"run": test_run.pk}).status_code == 404


def test_dashboard_card(portal, campaign, test_run):
    html = portal("acme", "viewer").get(reverse("portal:dashboard")).content.decode()
    assert "All campaigns" in html and 'data-testid="campaign-count">1<' in html
