"""In a real Chromium, with the campaign canvas running: a marketer finds the live one-off run's
delivery waiting for confirmation on the campaign page, reads its counts, confirms, and the
messages reach the loopback SMTP server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.campaigns import services
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign
from tests.channels.conftest import smtp_ready, smtp_sink  # noqa: F401
from tests.channels.test_confirmation import audience, one_off_graph  # noqa: F401
from tests.channels.test_email_activity import campaign_mail
from tests.portal.browser import ARTIFACTS, inline_tasks, page, sign_in  # noqa: F401

pytestmark = pytest.mark.browser


def test_a_marketer_confirms_the_waiting_delivery_from_the_campaign_page(page, live_server, people, password,  # noqa: F811
                                                                          inline_tasks, smtp_ready, audience):  # noqa: F811
    acme = people["acme"]["admin"].tenant
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, one_off_graph(), name="Spring launch",
                             variables=[{"name": "promo", "type": "string"}])
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
        run.refresh_from_db()
    assert run.status == "running" and campaign_mail(smtp_ready) == []

    sign_in(page, "marketer@acme.test", password)
    expect(page.get_by_test_id("confirmations-card")).to_contain_text("Spring launch")
    page.get_by_test_id("confirmations-card").get_by_role("link", name=re.compile("Spring launch")).click()
    panel = page.get_by_test_id("confirmations")
    expect(panel).to_be_visible()  # the canvas hides the server-drawn graph, not this panel
    expect(page.get_by_test_id("campaign-canvas")).to_be_visible()
    expect(panel.get_by_test_id("to-send")).to_have_text("3")
    expect(panel.get_by_test_id("excluded")).to_have_text("2")
    expect(panel.get_by_test_id("exclusion-reasons")).to_contain_text("No address 1")
    page.screenshot(path=str(ARTIFACTS / "delivery-confirmation.png"), full_page=True)
    panel.get_by_role("button", name="Confirm and send 3").click()
    expect(page.get_by_text("is confirmed: sending has started.")).to_be_visible()
    expect(page.get_by_test_id("confirmations")).to_have_count(0)
    assert sorted(r for m in campaign_mail(smtp_ready) for r in m.rcpt_tos) == [
        f"p{i}@example.test" for i in range(3)]
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed", run.error
    # The option is in the activity's form on the canvas, generated from its config schema.
    page.locator('.react-flow__node[data-id="mail"] .cv-node__head').click()
    option = page.get_by_test_id("config-panel").get_by_label("Send without confirmation")
    expect(option).not_to_be_checked()
    expect(page.get_by_test_id("config-panel")).to_contain_text("without waiting for someone to confirm")
