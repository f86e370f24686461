"""In a real Chromium: an approver signs in, opens the task from the inbox, reviews the snapshot,
approves with a comment, and the run continues to its end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.campaigns import services as campaign_services
from apps.campaigns.models import NodeState, Run
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph
from tests.campaigns.conftest import make_campaign
from tests.portal.browser import ARTIFACTS, inline_tasks, page, sign_in  # noqa: F401  (page: the browser fixture)

pytestmark = pytest.mark.browser


def test_approver_approves_from_the_inbox_and_the_run_goes_on(page, live_server, people, password,  # noqa: F811
                                                               inline_tasks):  # noqa: F811
    acme = people["acme"]["admin"].tenant
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, approval_graph({"title": "Approve the spring launch", "due": "2d"}),
                             name="Spring launch")
    with tenant_scope(acme):
        campaign_services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = campaign_services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
        assert NodeState.objects.get(run=run, node_id="approve").status == "waiting"

    sign_in(page, "approver@acme.test", password)
    page.get_by_role("link", name=re.compile("^Tasks")).first.click()
    expect(page.get_by_test_id("count-mine")).to_have_text("1")
    page.get_by_role("link", name="Approve the spring launch").click()
    expect(page.get_by_test_id("snapshot-count")).to_have_text("3")
    expect(page.get_by_test_id("sample")).to_contain_text("k2")
    expect(page.locator('[data-waiting-node="approve"] .gnode--waiting')).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "approval-task.png"), full_page=True)
    page.get_by_label(re.compile("^Comment")).fill("Counts look right")
    page.get_by_test_id("decision-form").get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Approved: the campaign goes on.")).to_be_visible()
    expect(page.get_by_test_id("task-status")).to_have_text("Approved")
    expect(page.get_by_test_id("decisions")).to_contain_text("Counts look right")

    with tenant_scope(acme):
        run = Run.objects.get(pk=run.pk)
        states = {n.node_id: n.status for n in NodeState.objects.filter(run=run)}
    assert run.status == "completed" and states["sent"] == "done" and states["dropped"] == "skipped"
