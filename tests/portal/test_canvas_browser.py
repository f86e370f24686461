"""The campaign canvas in a real Chromium (Playwright, Debian's /usr/bin/chromium) against the
live server, the real API, PostgreSQL and a real Celery worker: build a campaign from an empty
canvas, configure each activity through its panel, save, test-run it and read the counts on the
canvas; a concurrent save is a conflict, never an overwrite. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time

import pytest
from django.db import transaction
from playwright.sync_api import Page, expect

from apps.activities import registry
from apps.campaigns import engine, services
from apps.campaigns.models import Campaign, Run
from apps.profiles.services import profile_upsert
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import worker  # noqa: F401  (fixture)
from tests.portal.browser import ARTIFACTS, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]

FR, OTHERS = 12, 9


@pytest.fixture
def profiles(acme):
    with tenant_scope(acme):
        for i in range(FR + OTHERS):
            profile_upsert(tenant=acme, by=None, values={
                "id": f"p{i:02d}", "email": f"p{i:02d}@example.test", "country": "FR" if i < FR else "DE"})


def _node(pg: Page, node_id: str):
    return pg.locator(f'.react-flow__node[data-id="{node_id}"]')


def _drop(pg: Page, activity: str, x: int, y: int) -> None:
    """Drag an activity from the palette onto the canvas, at (x, y) from its top left corner."""
    canvas = pg.get_by_test_id("canvas")
    pg.locator(f'.cv-palette [data-activity="{activity}"]').drag_to(canvas, target_position={"x": x, "y": y})


def _connect(pg: Page, source: str, port: str, target: str) -> None:
    """Drag from an output port of `source` to the input of `target`, as a user does."""
    handle = _node(pg, source).locator(f'.react-flow__handle.source[data-handleid="{port}"]')
    goal = _node(pg, target).locator(".react-flow__handle.target")
    edges = pg.locator(".react-flow__edge")
    before = edges.count()
    a, b = handle.bounding_box(), goal.bounding_box()
    pg.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    pg.mouse.down()
    pg.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    pg.mouse.up()
    expect(edges).to_have_count(before + 1)


def _select(pg: Page, node_id: str) -> None:
    _node(pg, node_id).locator(".cv-node__head").click()
    expect(pg.get_by_test_id("config-panel")).to_contain_text(node_id)


def _count_label(pg: Page, source: str, port: str, target: str):
    return pg.get_by_role("button", name=re.compile(rf"^Population of {source} {port} to {target}: "))


def _run_until_done(tenant, run_id: int, timeout: float = 90) -> Run:
    """Sweep as beat would (so the wait wakes up) until the run ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tenant_scope(tenant):
            run = Run.objects.get(pk=run_id)
        if run.status in ("completed", "failed", "stopped"):
            return run
        with transaction.atomic():
            engine.sweep()
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


def _new_campaign(pg: Page, name: str) -> None:
    pg.get_by_role("navigation", name="Sections").get_by_role("link", name="Campaigns").click()
    pg.wait_for_url("**/campaigns/")
    form = pg.locator("form", has=pg.get_by_role("button", name="Create campaign"))
    form.get_by_label("Name").fill(name)
    form.get_by_role("button", name="Create campaign").click()
    pg.wait_for_url(re.compile(r"/campaigns/\d+/$"))


def test_build_configure_save_and_test_run_a_campaign_on_the_canvas(page, worker, acme, people,  # noqa: F811
                                                                     password, profiles):
    page.set_viewport_size({"width": 1600, "height": 1500})
    sign_in(page, "marketer@acme.test", password)
    _new_campaign(page, "Canvas spring sale")
    cv = page.get_by_test_id("campaign-canvas")  # the header's server-side actions are the no-JS fallback
    canvas = page.get_by_test_id("canvas")
    expect(canvas).to_contain_text("The canvas is empty")
    # Every registered activity is in the palette, under its group.
    palette = page.get_by_role("complementary", name="Activities")
    for group in ("Flow", "Targeting", "Data", "Channels", "Approvals"):
        expect(palette.get_by_role("heading", name=group, exact=True)).to_be_visible()
    expect(palette.get_by_role("button", name="Add Build audience")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "canvas-empty.png"), full_page=True)

    _drop(page, "scheduler", 140, 60)
    _drop(page, "build_audience", 420, 60)
    _drop(page, "split", 140, 210)
    _drop(page, "wait", 420, 210)
    _drop(page, "end", 140, 360)
    _drop(page, "end", 420, 360)
    for node_id in ("scheduler_1", "build_audience_1", "split_1", "wait_1", "end_1", "end_2"):
        expect(_node(page, node_id)).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "canvas-dropped.png"), full_page=True)

    # Configure each activity through its panel.
    panel = page.get_by_test_id("config-panel")
    _select(page, "scheduler_1")
    panel.get_by_label("Mode").select_option("asap")
    _select(page, "build_audience_1")
    panel.get_by_role("button", name="Add rule").click()
    panel.get_by_label("Field of rule 1").select_option("country")
    panel.get_by_label("Operator of rule 1").select_option("eq")
    panel.get_by_label("Value of rule 1").fill("FR")
    expect(panel.get_by_test_id("filter-count")).to_have_text(f"{FR} profile records match")
    page.screenshot(path=str(ARTIFACTS / "canvas-filter.png"), full_page=True)
    _select(page, "split_1")
    panel.get_by_role("button", name="Add subset").click()
    subset = panel.locator('.cv-item[data-item="0"]')
    subset.get_by_label("Code").fill("sample")
    subset.get_by_role("spinbutton", name=re.compile(r"^Count")).fill("5")
    panel.get_by_label("Complement", exact=True).check()
    expect(_node(page, "split_1").locator(".cv-port")).to_have_text(["sample", "complement"])
    _select(page, "wait_1")
    expect(panel.get_by_label("Mode")).to_have_value("duration")
    panel.get_by_label("Duration").fill("2s")

    _connect(page, "scheduler_1", "out", "build_audience_1")
    _connect(page, "build_audience_1", "out", "split_1")
    _connect(page, "split_1", "sample", "wait_1")
    _connect(page, "wait_1", "out", "end_1")
    _connect(page, "split_1", "complement", "end_2")
    cv.get_by_role("button", name="Auto-layout").click()
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    expect(page.get_by_test_id("canvas-valid")).to_be_visible()

    # Keyboard: Delete removes the selection, Ctrl+Z / Ctrl+Y undo and redo.
    _node(page, "end_2").click()
    page.keyboard.press("Delete")
    expect(_node(page, "end_2")).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(_node(page, "end_2")).to_have_count(1)
    page.keyboard.press("Control+y")
    expect(_node(page, "end_2")).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(_node(page, "end_2")).to_have_count(1)
    expect(page.locator(".react-flow__edge")).to_have_count(5)
    page.screenshot(path=str(ARTIFACTS / "canvas-built.png"), full_page=True)

    cv.get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("canvas-message")).to_contain_text("Draft saved")
    expect(page.get_by_test_id("save-state")).to_contain_text("Saved")
    with tenant_scope(acme):
        campaign = Campaign.objects.get(name="Canvas spring sale")
        graph = services.draft_version(campaign).graph
        assert services.graph_problems(campaign, graph) == []
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["build_audience_1"]["config"] == {"filter": {"all": [{"field": "country", "op": "eq", "value": "FR"}]}}
    assert nodes["split_1"]["config"] == {"subsets": [{"code": "sample", "limit": {"count": 5}}], "complement": True}
    assert nodes["wait_1"]["config"] == {"mode": "duration", "duration": "2s"}
    # The ports drawn on the canvas are the ones the server derives from each config.
    for node_id, node in nodes.items():
        expected = registry.get(node["type"]).output_ports(node["config"])
        expect(_node(page, node_id).locator(".cv-port__name")).to_have_text(expected)
    assert {(e["from"], e["port"], e["to"]) for e in graph["edges"]} == {
        ("scheduler_1", "out", "build_audience_1"), ("build_audience_1", "out", "split_1"),
        ("split_1", "sample", "wait_1"), ("wait_1", "out", "end_1"), ("split_1", "complement", "end_2")}

    # Test mode: the canvas shows the run, its node states and the counts on the transitions.
    cv.get_by_role("button", name="Test run").click()
    expect(page.get_by_test_id("canvas-message")).to_contain_text("Test run #")
    expect(page.get_by_test_id("canvas")).to_have_attribute("data-mode", "monitor")
    with tenant_scope(acme):
        run = Run.objects.filter(campaign=campaign).latest("pk")
    assert run.is_test
    run = _run_until_done(acme, run.pk)
    assert run.status == "completed", run.error
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(_count_label(page, "build_audience_1", "out", "split_1")).to_have_text(str(FR))
    expect(_count_label(page, "split_1", "sample", "wait_1")).to_have_text("5")
    expect(_count_label(page, "split_1", "complement", "end_2")).to_have_text(str(FR - 5))
    expect(_count_label(page, "wait_1", "out", "end_1")).to_have_text("5")
    expect(_node(page, "end_1")).to_contain_text("✓ Done")
    expect(_node(page, "wait_1")).to_contain_text("in 5 · out 5")
    page.screenshot(path=str(ARTIFACTS / "canvas-test-run.png"), full_page=True)

    _count_label(page, "split_1", "complement", "end_2").click()
    sample = page.get_by_test_id("transition-sample")
    expect(sample).to_contain_text(f"{FR - 5} record(s)")
    expect(sample.locator("tbody tr")).to_have_count(FR - 5)
    page.screenshot(path=str(ARTIFACTS / "canvas-sample.png"), full_page=True)
    _node(page, "wait_1").locator(".cv-node__head").click()
    expect(page.get_by_test_id("node-log")).to_contain_text("Log of wait_1")
    expect(page.get_by_test_id("node-log")).to_contain_text("✓ Done")
    page.screenshot(path=str(ARTIFACTS / "canvas-node-log.png"), full_page=True)
    _node(page, "end_2").focus()  # the keyboard opens a node's log too
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("node-log")).to_contain_text("Log of end_2")

    # A second test run is compared with the first, transition by transition.
    first = run.pk
    cv.get_by_role("button", name="Test run").click()
    expect(page.get_by_test_id("canvas-message")).to_contain_text(re.compile(rf"Test run #(?!{first}\b)\d+ started"))
    with tenant_scope(acme):
        second = Run.objects.filter(campaign=campaign).latest("pk")
    assert second.pk != first
    assert _run_until_done(acme, second.pk).status == "completed"
    summary = page.get_by_test_id("run-summary")
    expect(summary).to_contain_text(f"Run #{second.pk}")
    expect(page.get_by_test_id("run-status")).to_have_text("completed")
    expect(summary.get_by_role("table", name="Counts per transition").get_by_role("columnheader")).to_have_text(
        ["Transition", "Count", f"Run #{first}"])
    row = summary.get_by_role("row", name=re.compile(r"^split_1 sample → wait_1"))
    expect(row.get_by_role("cell")).to_have_text(["split_1 sample → wait_1", "5", "5"])
    page.screenshot(path=str(ARTIFACTS / "canvas-compare-runs.png"), full_page=True)


SIMPLE = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}, "position": {"x": 0, "y": 0}},
              {"id": "done", "type": "end", "config": {}, "position": {"x": 300, "y": 0}}],
    "edges": [{"from": "start", "port": "out", "to": "done"}],
}


def test_a_concurrent_save_is_a_conflict_problems_show_on_nodes_and_publish(page, acme, people,
                                                                              password):
    marketer, admin = people["acme"]["marketer"].user, people["acme"]["admin"].user
    with tenant_scope(acme):
        campaign = services.campaign_create(tenant=acme, by=marketer, name="Two editors", graph=SIMPLE)
    page.set_viewport_size({"width": 1600, "height": 1500})
    sign_in(page, "marketer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    cv = page.get_by_test_id("campaign-canvas")
    expect(_node(page, "start")).to_be_visible()
    expect(page.get_by_test_id("canvas-valid")).to_be_visible()
    # Nodes are focusable and named for screen readers.
    expect(_node(page, "start")).to_have_attribute("tabindex", "0")
    expect(_node(page, "start")).to_have_attribute("aria-label", re.compile(r"^Scheduler start"))

    # The keyboard adds an activity from the palette; the server's validation marks it.
    page.get_by_role("button", name="Add End").focus()
    page.keyboard.press("Enter")
    expect(_node(page, "end_1")).to_be_visible()
    expect(_node(page, "end_1").get_by_test_id("node-problems")).to_be_visible()
    expect(page.get_by_role("list", name="Problems of end_1")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "canvas-problems.png"), full_page=True)

    # A transition can be added from the panel too (keyboard): the problem goes away.
    _select(page, "start")
    page.get_by_label("Connect out to").select_option("end_1")
    page.get_by_role("button", name="Connect out of start").click()
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    expect(_node(page, "end_1").get_by_test_id("node-problems")).to_have_count(0)

    # Meanwhile someone else saves the draft: saving on the canvas is refused, nothing is lost.
    theirs = {**SIMPLE, "nodes": [SIMPLE["nodes"][0], {**SIMPLE["nodes"][1], "id": "their_end"}],
              "edges": [{"from": "start", "port": "out", "to": "their_end"}]}
    with tenant_scope(acme):
        revision = services.draft_version(campaign).revision
        services.draft_update(tenant=acme, campaign=campaign, by=admin, graph=theirs, revision=revision)
    cv.get_by_role("button", name="Save draft").click()
    message = page.get_by_test_id("canvas-message")
    expect(message).to_contain_text("saved by someone else")
    expect(message).to_contain_text("Nothing was overwritten")
    expect(page.get_by_test_id("save-state")).to_contain_text("Unsaved changes")
    with tenant_scope(acme):
        assert services.draft_version(campaign).graph == theirs
    page.screenshot(path=str(ARTIFACTS / "canvas-conflict.png"), full_page=True)

    message.get_by_role("button", name="Reload the saved draft").click()
    expect(_node(page, "their_end")).to_be_visible()
    expect(_node(page, "end_1")).to_have_count(0)
    expect(page.get_by_test_id("canvas-valid")).to_be_visible()

    cv.get_by_role("button", name="Publish").click()
    expect(message).to_contain_text("Version 1 is published.")
    expect(page.get_by_test_id("campaign-status")).to_have_text("published")
    expect(cv.get_by_role("button", name="Start live")).to_be_enabled()
    with tenant_scope(acme):
        campaign.refresh_from_db()
        assert campaign.status == "published" and campaign.live_version.graph == theirs
    expect(page.get_by_test_id("version-history")).to_contain_text("v1 · published")

    # Live: start, pause, resume and stop from the canvas.
    cv.get_by_role("button", name="Start live").click()
    expect(message).to_contain_text("The campaign is live")
    expect(page.get_by_test_id("campaign-status")).to_have_text("live")
    expect(page.get_by_test_id("canvas")).to_have_attribute("data-mode", "monitor")
    cv.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("paused")
    cv.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("live")
    cv.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("stopped")
    with tenant_scope(acme):
        campaign.refresh_from_db()
        assert campaign.status == "stopped"
        assert Run.objects.filter(campaign=campaign, is_test=False).get().status == "stopped"
    page.screenshot(path=str(ARTIFACTS / "canvas-stopped.png"), full_page=True)

    # The JSON editor stays available as a fallback, in step with what the canvas loaded and saved.
    cv.get_by_role("link", name="Edit as JSON").click()
    json_editor = page.locator("#json-editor")
    expect(json_editor.locator("textarea[name=graph]")).to_be_visible()
    expect(json_editor.locator("textarea[name=graph]")).to_have_value(re.compile("their_end"))
    json_editor.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Draft saved")).to_be_visible()
    expect(_node(page, "their_end")).to_be_visible()


def test_a_viewer_sees_the_canvas_read_only(page, acme, people, password):
    with tenant_scope(acme):
        campaign = services.campaign_create(tenant=acme, by=people["acme"]["marketer"].user, name="Look only",
                                            graph=SIMPLE)
    sign_in(page, "viewer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    cv = page.get_by_test_id("campaign-canvas")
    expect(_node(page, "start")).to_be_visible()
    expect(page.get_by_role("complementary", name="Activities")).to_have_count(0)
    expect(cv.get_by_role("button", name="Save draft")).to_have_count(0)
    expect(cv.get_by_role("button", name="Test run")).to_have_count(0)
    _node(page, "start").click()
    page.keyboard.press("Delete")
    expect(_node(page, "start")).to_have_count(1)


def test_a_channel_activity_previews_its_message_for_a_chosen_profile(page, acme, people, password):
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {}, "position": {"x": 0, "y": 0}},
                  {"id": "audience", "type": "build_audience", "config": {}, "position": {"x": 260, "y": 0}},
                  {"id": "mail", "type": "email", "config": {"content": {"subject": "Hello", "text": "Hi"}},
                   "position": {"x": 520, "y": 0}}],
        "edges": [{"from": "start", "port": "out", "to": "audience"}, {"from": "audience", "port": "out", "to": "mail"}],
    }
    with tenant_scope(acme):
        profile_upsert(tenant=acme, by=None, values={"id": "ada", "email": "ada@example.test", "first_name": "Ada"})
        campaign = services.campaign_create(tenant=acme, by=people["acme"]["marketer"].user, name="Hello Ada",
                                            graph=graph)
    # Should the Liquid editor's bundle not load, the message's fields are plain text areas.
    page.route("**/canvas/liquid.js", lambda route: route.abort())
    sign_in(page, "marketer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    panel = page.get_by_test_id("config-panel")
    # A Build audience with no filter is refused by the server; the rule builder offers every record.
    expect(_node(page, "audience").get_by_test_id("node-problems")).to_be_visible()
    _select(page, "audience")
    panel.get_by_role("button", name="Match every record").click()
    expect(panel.get_by_test_id("filter-count")).to_have_text("1 profile record matches")
    expect(_node(page, "audience").get_by_test_id("node-problems")).to_have_count(0)
    _select(page, "mail")
    expect(panel.locator("textarea#cfg-mail-content-subject")).to_be_visible()
    panel.get_by_label("Subject").fill("Bonjour {{ profile.first_name | default: 'friend' }}")
    preview = panel.get_by_test_id("message-preview")
    preview.get_by_label("Key of the profile record to preview with").fill("ada")
    preview.get_by_role("button", name="Preview").click()
    expect(preview).to_contain_text("Bonjour Ada")
    page.screenshot(path=str(ARTIFACTS / "canvas-message-preview.png"), full_page=True)
    preview.get_by_label("Key of the profile record to preview with").fill("nobody")
    preview.get_by_role("button", name="Preview").click()
    expect(preview.get_by_role("alert")).to_contain_text("No such record")


def _load_graph(load_config: dict) -> dict:
    return {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}, "position": {"x": 0, "y": 0}},
                  {"id": "load", "type": "load_file", "config": load_config, "position": {"x": 260, "y": 0}},
                  {"id": "done", "type": "end", "config": {}, "position": {"x": 520, "y": 0}}],
        "edges": [{"from": "start", "port": "out", "to": "load"}, {"from": "load", "port": "out", "to": "done"}],
    }


CUSTOMERS = b"email,amount\nada@example.test,12\nbob@example.test,7\ncy@example.test,30\n"


def test_a_load_file_uploads_its_file_from_the_panel_and_takes_the_columns_found(page, live_server, acme, people,
                                                                                password):
    from tests.activities.datafiles import upload

    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme):
        campaign = services.campaign_create(tenant=acme, by=marketer, name="Loaded", graph=_load_graph({}))
    earlier = upload(acme, campaign, "code;points\nA;1\n", name="earlier.csv", by=marketer)
    page.set_viewport_size({"width": 1600, "height": 1500})
    sign_in(page, "marketer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    cv = page.get_by_test_id("campaign-canvas")
    # With JavaScript, the header's lifecycle buttons give way to the canvas's own toolbar.
    header = page.get_by_test_id("campaign-actions")
    expect(header.get_by_role("button", name="Publish")).to_be_hidden()
    expect(header.get_by_role("button", name="Test run")).to_be_hidden()
    expect(cv.get_by_role("button", name="Publish")).to_be_visible()
    expect(header.locator('button[data-action="test"]')).to_have_count(1)  # still in the page, hidden
    # The header's status badge would go stale as runs change it: the toolbar's own status replaces it.
    expect(page.get_by_test_id("header-status")).to_be_hidden()
    expect(cv.get_by_test_id("campaign-status")).to_have_text("draft")
    expect(page.get_by_role("button", name="Test run")).to_have_count(1)

    panel = page.get_by_test_id("config-panel")
    _select(page, "load")
    source = panel.get_by_test_id("file-source")
    expect(_node(page, "load").get_by_test_id("node-problems")).to_be_visible()
    # The campaign's uploads are offered; a new one is uploaded from the panel and chosen.
    expect(source.get_by_label("Uploaded file").locator("option")).to_contain_text(["— choose a file —",
                                                                                    "earlier.csv · 16 B"])
    source.get_by_label("Upload a file").set_input_files(
        files=[{"name": "customers.csv", "mimeType": "text/csv", "buffer": CUSTOMERS}])
    chosen = source.get_by_test_id("file-chosen")
    expect(chosen).to_contain_text("customers.csv")
    expect(chosen).to_contain_text(f"{len(CUSTOMERS)} B")
    expect(chosen).to_contain_text("by marketer@acme.test")
    expect(source.get_by_test_id("file-preview")).to_contain_text("email,amount\nada@example.test,12")
    columns = source.get_by_role("table", name="Columns found in the file")
    expect(columns.locator("tbody tr")).to_have_count(2)
    expect(columns.locator("tbody tr").nth(0).get_by_role("cell")).to_have_text(["email", "email", "email"])
    expect(columns.locator("tbody tr").nth(1).get_by_role("cell")).to_have_text(["amount", "integer", "amount"])
    page.screenshot(path=str(ARTIFACTS / "canvas-load-file-upload.png"), full_page=True)
    source.get_by_role("button", name="Use these columns").click()
    expect(panel.locator('.cv-item[data-item="1"]').get_by_label("Name")).to_have_value("amount")
    expect(_node(page, "load").get_by_test_id("node-problems")).to_have_count(0)
    cv.get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("save-state")).to_contain_text("Saved")

    from apps.files.models import CampaignFile
    with tenant_scope(acme):
        stored = CampaignFile.objects.get(campaign=campaign, name="customers.csv")
        config = {n["id"]: n for n in services.draft_version(campaign).graph["nodes"]}["load"]["config"]
    assert stored.size == len(CUSTOMERS)
    assert config["file"] == {"upload": stored.pk}
    assert [(c["name"], c["type"]) for c in config["columns"]] == [("email", "email"), ("amount", "integer")]

    # An earlier upload can be chosen instead; its columns are read with the activity's options.
    source.get_by_label("Uploaded file").select_option(str(earlier.pk))
    expect(chosen).to_contain_text("earlier.csv")
    expect(source.get_by_test_id("file-preview")).to_have_count(0)  # no line preview: the API has none
    expect(columns.locator("tbody tr").get_by_role("cell")).to_have_text(["code_points", "string", "code;points"])
    panel.get_by_label("Delimiter").fill(";")
    expect(columns.locator("tbody tr")).to_have_count(2)
    expect(columns.locator("tbody tr").nth(1).get_by_role("cell")).to_have_text(["points", "integer", "points"])

    # Without JavaScript the header's buttons are the way to act.
    plain = page.context.browser.new_context(java_script_enabled=False, base_url=live_server.url)
    try:
        nojs = plain.new_page()
        sign_in(nojs, "marketer@acme.test", password)
        nojs.goto(f"/campaigns/{campaign.pk}/")
        expect(nojs.get_by_test_id("campaign-actions").get_by_role("button", name="Publish")).to_be_visible()
        expect(nojs.get_by_test_id("campaign-actions").get_by_role("button", name="Test run")).to_be_visible()
        expect(nojs.get_by_test_id("header-status")).to_be_visible()
    finally:
        plain.close()


def test_the_liquid_editor_marks_errors_on_their_line_completes_names_and_previews(page, acme, people, password):
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}, "position": {"x": 0, "y": 0}},
                  {"id": "audience", "type": "build_audience", "config": {"filter": {}}, "position": {"x": 260, "y": 0}},
                  {"id": "mail", "type": "email", "config": {"content": {"subject": "Hello", "text": "Hi"}},
                   "position": {"x": 520, "y": 0}}],
        "edges": [{"from": "start", "port": "out", "to": "audience"}, {"from": "audience", "port": "out", "to": "mail"}],
    }
    with tenant_scope(acme):
        profile_upsert(tenant=acme, by=None, values={"id": "ada", "email": "ada@example.test", "first_name": "Ada"})
        campaign = services.campaign_create(tenant=acme, by=people["acme"]["marketer"].user, name="Liquid",
                                            graph=graph)
    page.set_viewport_size({"width": 1600, "height": 1500})
    sign_in(page, "marketer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    panel = page.get_by_test_id("config-panel")
    expect(_node(page, "mail")).to_be_visible()
    assert page.evaluate("typeof window.CanvasLiquid") == "undefined"  # loaded when a message is edited
    _select(page, "mail")
    check = panel.get_by_test_id("content-check")
    expect(check).to_have_text("✓ The message's Liquid is valid.")
    text = panel.get_by_role("textbox", name=re.compile(r"^Text"))
    expect(text).to_have_attribute("aria-multiline", "true")
    assert page.evaluate("typeof window.CanvasLiquid") == "object"
    # Highlighted as Liquid: the delimiters and the names are styled spans, not plain text.
    text.fill("Hello {{ profile.first_name }}\n{% if profile.first_name %}Hi{% endif\nBye")
    text_field = panel.locator(".cv-liquid", has=page.get_by_role("textbox", name=re.compile(r"^Text")))
    expect(text_field.locator(".cm-line").nth(0).locator("span")).not_to_have_count(0)
    problems = text_field.get_by_test_id("liquid-problems")
    expect(problems).to_have_text("Line 2: Syntax error: missing tag name or closing delimiter.")
    expect(text_field.locator(".cm-lint-marker-error")).to_have_count(1)  # in the gutter, on line 2
    expect(check).to_contain_text("! 1 problem in the message")
    page.screenshot(path=str(ARTIFACTS / "canvas-liquid-error.png"), full_page=True)

    # An unknown field and an unknown filter are reported on their lines too.
    text.fill("Hello {{ profile.first_name }}\nSize {{ profile.shoe_size }}\n{{ profile.email | shout }}")
    expect(problems.locator("li")).to_have_text(["Line 3: Unknown filter 'shout'.",
                                                 "Line 2: Unknown field profile.shoe_size."])
    text.fill("Hello {{ profile.first_name }},\nsee you soon.")
    expect(problems).to_have_count(0)
    expect(check).to_have_text("✓ The message's Liquid is valid.")

    # Typed with the keyboard: Liquid's braces close themselves and profile fields are completed.
    subject = panel.get_by_role("textbox", name=re.compile(r"^Subject"))
    expect(subject).to_have_attribute("aria-multiline", "false")
    subject.click()
    page.keyboard.press("End")
    page.keyboard.type(" {{ profile.first_")
    expect(page.get_by_role("option", name=re.compile(r"^first_name"))).to_be_visible()
    page.wait_for_timeout(150)  # CodeMirror ignores Enter for 75 ms after the list changes (interactionDelay)
    page.keyboard.press("Enter")
    expect(subject).to_have_text("Hello {{ profile.first_name}}")
    page.keyboard.press("Enter")  # one line: Enter adds no line break
    expect(subject).to_have_text("Hello {{ profile.first_name}}")
    page.keyboard.press("Tab")  # the editor does not trap the keyboard
    expect(subject).not_to_be_focused()

    preview = panel.get_by_test_id("message-preview")
    preview.get_by_label("Key of the profile record to preview with").fill("ada")
    preview.get_by_role("button", name="Preview").click()
    expect(preview).to_contain_text("Hello Ada")
    expect(preview).to_contain_text("see you soon.")
    page.screenshot(path=str(ARTIFACTS / "canvas-liquid-preview.png"), full_page=True)
    page.get_by_test_id("campaign-canvas").get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("save-state")).to_contain_text("Saved")
    with tenant_scope(acme):
        saved = {n["id"]: n for n in services.draft_version(campaign).graph["nodes"]}["mail"]["config"]["content"]
    assert saved == {"subject": "Hello {{ profile.first_name}}", "text": "Hello {{ profile.first_name }},\nsee you soon."}


def test_a_node_failing_in_a_live_run_shows_failed_with_its_error_without_a_reload(page, worker, acme, people,  # noqa: F811
                                                                                  password):
    from tests.activities.datafiles import upload

    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme):
        campaign = services.campaign_create(tenant=acme, by=marketer, name="Bad feed", graph=_load_graph({}))
    feed = upload(acme, campaign, "email,amount\nada@example.test,12\nbob@example.test,lots\ncy@example.test,3\n",
                  name="feed.csv", by=marketer)
    graph = _load_graph({"file": {"upload": feed.pk}, "max_rejects": 0,
                         "columns": [{"name": "email", "type": "email"}, {"name": "amount", "type": "integer"}]})
    graph["nodes"].insert(1, {"id": "pause", "type": "wait", "config": {"mode": "duration", "duration": "3s"},
                              "position": {"x": 260, "y": 0}})
    graph["nodes"][2]["position"], graph["nodes"][3]["position"] = {"x": 520, "y": 0}, {"x": 780, "y": 0}
    graph["edges"][0] = {"from": "start", "port": "out", "to": "pause"}
    graph["edges"].append({"from": "pause", "port": "out", "to": "load"})
    with tenant_scope(acme):
        version = services.draft_version(campaign)
        services.draft_update(tenant=acme, campaign=campaign, by=marketer, graph=graph, revision=version.revision)
    page.set_viewport_size({"width": 1600, "height": 1500})
    sign_in(page, "marketer@acme.test", password)
    page.goto(f"/campaigns/{campaign.pk}/")
    cv = page.get_by_test_id("campaign-canvas")
    expect(page.get_by_test_id("canvas-valid")).to_be_visible()
    cv.get_by_role("button", name="Publish").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("published")
    page.evaluate("window.__sameDocument = true")
    cv.get_by_role("button", name="Start live").click()
    expect(page.get_by_test_id("canvas")).to_have_attribute("data-mode", "monitor")
    # The run is followed as it goes: the wait first, then the load that fails.
    expect(_node(page, "pause")).to_contain_text(re.compile(r"‖ Waiting|▶ Running"))
    expect(_node(page, "load")).to_contain_text("○ Pending")
    with tenant_scope(acme):
        run = Run.objects.get(campaign=campaign, is_test=False)
    assert _run_until_done(acme, run.pk).status == "failed"
    load = _node(page, "load")
    expect(load).to_contain_text("✕ Failed")
    expect(load.get_by_role("note")).to_have_text(
        "✕ 1 line(s) of feed.csv were rejected, more than the 0 allowed (first: line 3, column 'amount': "
        "not an integer). Nothing was loaded.")
    expect(load).to_have_attribute("aria-label", re.compile(r"^Load file load, Failed"))
    expect(_node(page, "pause")).to_contain_text("✓ Done")
    expect(page.get_by_test_id("run-status")).to_have_text("failed")
    expect(page.get_by_test_id("run-summary").get_by_role("alert")).to_contain_text("load: 1 line(s) of feed.csv")
    expect(page.get_by_test_id("campaign-status")).to_have_text("failed")
    assert page.evaluate("window.__sameDocument") is True  # refreshed by polling, never by a reload
    page.screenshot(path=str(ARTIFACTS / "canvas-live-node-failed.png"), full_page=True)
    load.locator(".cv-node__head").click()
    expect(page.get_by_test_id("node-log")).to_contain_text("✕ Failed")
    expect(page.get_by_test_id("node-log")).to_contain_text("rejected, more than the 0 allowed")
