"""The portal's Why / why not page (server-rendered, works without JavaScript): the form on the
campaign page's run section, the path of a record through a real run (build audience → dedup →
split → e-mail sent to a real SMTP server on loopback), bad keys, purged runs, every role and
other tenants."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.campaigns import services
from apps.campaigns.models import Run
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import eager  # noqa: F401  (fixture)
from tests.campaigns.test_why import GRAPH, live_run, people_data, start  # noqa: F401  (fixtures)
from tests.channels.conftest import smtp_ready, smtp_sink  # noqa: F401  (fixtures: SMTP on loopback)
from tests.conftest import ROLES


def why_url(run, **params):
    url = reverse("portal:campaign-run-why", kwargs={"campaign_id": run.campaign_id, "run_id": run.pk})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def rows(html):
    """{node id: status} of the result table."""
    return dict(re.findall(r'<tr data-node="([^"]+)" data-status="([^"]+)">', html))


def test_campaign_page_has_the_form_for_the_shown_run(portal, live_run):  # noqa: F811
    html = portal("acme", "viewer").get(
        reverse("portal:campaign-detail", kwargs={"campaign_id": live_run.campaign_id}) + f"?run={live_run.pk}"
    ).content.decode()
    assert 'data-testid="why-form"' in html
    assert f'action="{why_url(live_run)}"' in html
    assert 'name="key"' in html


def test_without_a_key_the_page_shows_the_form_only(portal, live_run):  # noqa: F811
    response = portal("acme", "marketer").get(why_url(live_run))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="why-page-form"' in html and 'data-testid="why-result"' not in html


def test_excluded_for_consent_at_the_email(portal, live_run):  # noqa: F811
    response = portal("acme", "marketer").get(why_url(live_run, key="optout"))
    assert response.status_code == 200
    html = response.content.decode()
    assert rows(html) == {"start": "passed", "build": "passed", "dedup": "passed", "split": "passed",
                          "mail": "dropped", "rest": "not_reached", "thanks": "not_reached"}
    assert "Dropped at E-mail (mail): Excluded: No consent (opted out or unsubscribed)." in html
    assert "<code>excluded</code>" in html


def test_duplicate_complement_audience_and_sent(portal, live_run):  # noqa: F811
    client = portal("acme", "admin")
    html = client.get(why_url(live_run, key="zoe")).content.decode()
    assert rows(html)["dedup"] == "dropped" and "Kept: <code>adam</code>" in html
    html = client.get(why_url(live_run, key="other")).content.decode()
    assert rows(html)["split"] == "dropped" and rows(html)["rest"] == "passed"
    assert "In no subset: it went to the complement." in html
    html = client.get(why_url(live_run, key="german")).content.decode()
    assert rows(html)["build"] == "dropped" and "does not match the audience&#x27;s filter" in html
    html = client.get(why_url(live_run, key="sent1")).content.decode()
    assert rows(html)["mail"] == "passed" and "Sent to sent1@example.test." in html


@pytest.mark.parametrize(("key", "message"), [
    ("", "Enter the key of the record to look for."),
    ("x" * 256, "At most 255 characters."),
])
def test_bad_key_is_400_with_the_reason(portal, live_run, key, message):  # noqa: F811
    response = portal("acme", "viewer").get(why_url(live_run, key=key))
    assert response.status_code == 400
    assert message in response.content.decode()


def test_purged_run_is_409_with_the_explanation(acme, portal, live_run):  # noqa: F811
    with tenant_scope(acme):
        Run.objects.filter(pk=live_run.pk).update(finished_at=timezone.now() - dt.timedelta(days=40))
    assert services.dangerously_purge_expired_runs() == 1
    response = portal("acme", "viewer").get(why_url(live_run, key="sent1"))
    assert response.status_code == 409
    html = response.content.decode()
    assert "after the retention period" in html and 'data-testid="why-result"' not in html


@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_page(portal, live_run, role):  # noqa: F811
    response = portal("acme", role).get(why_url(live_run, key="other"))
    assert response.status_code == 200
    assert rows(response.content.decode())["split"] == "dropped"


@pytest.mark.parametrize("role", ROLES)
def test_another_tenant_gets_404(portal, live_run, role):  # noqa: F811
    response = portal("globex", role).get(why_url(live_run, key="sent1"))
    assert response.status_code == 404
    assert b"sent1@example.test" not in response.content


def test_run_of_another_campaign_is_404(acme, people, portal, live_run, eager):  # noqa: F811
    other = start(acme, people, eager, GRAPH, test=True)
    url = reverse("portal:campaign-run-why", kwargs={"campaign_id": other.campaign_id, "run_id": live_run.pk})
    assert portal("acme", "admin").get(url + "?key=sent1").status_code == 404


@pytest.mark.browser
def test_a_viewer_traces_a_record_from_the_campaign_page_in_chromium(page, transactional_db, people, password,
                                                                       live_run):  # noqa: F811
    from playwright.sync_api import expect

    from tests.portal.browser import ARTIFACTS, sign_in

    sign_in(page, people["acme"]["viewer"].email, password)
    page.goto(reverse("portal:campaign-detail", kwargs={"campaign_id": live_run.campaign_id}) + f"?run={live_run.pk}")
    form = page.get_by_test_id("why-form")
    expect(form).to_be_visible()  # not replaced by the canvas
    form.get_by_label(f"Where did this record go in run #{live_run.pk}?").fill("optout")
    form.get_by_role("button", name="Trace").click()
    page.wait_for_url(f"**{why_url(live_run)}?key=optout")
    expect(page.locator('tr[data-node="mail"]')).to_have_attribute("data-status", "dropped")
    expect(page.get_by_test_id("why-summary")).to_have_text(
        "Dropped at E-mail (mail): Excluded: No consent (opted out or unsubscribed).")
    page.screenshot(path=str(ARTIFACTS / "why-page.png"), full_page=True)
