"""Send confirmation on the campaign page: the run view shows the delivery that waits with its
counts and Confirm / Cancel buttons (CSRF-protected POSTs); roles and tenancy."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.channels.models import Delivery
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import eager  # noqa: F401
from tests.channels.conftest import smtp_ready, smtp_sink  # noqa: F401
from tests.channels.test_confirmation import audience, one_off_graph  # noqa: F401
from tests.channels.test_email_activity import campaign_mail, run_campaign


@pytest.fixture
def waiting(acme, people, eager, smtp_ready, audience):  # noqa: F811
    run = run_campaign(acme, people, eager, one_off_graph())
    with tenant_scope(acme):
        delivery = Delivery.objects.get(run=run)
    assert delivery.status == "awaiting_confirmation"
    return run, delivery


def page_url(run):
    return reverse("portal:campaign-detail", kwargs={"campaign_id": run.campaign_id}) + f"?run={run.pk}"


def decide_url(delivery, decision):
    return reverse("portal:delivery-decide", kwargs={"campaign_id": delivery.campaign_id,
                                                     "delivery_id": delivery.pk, "decision": decision})


def test_the_run_view_shows_the_waiting_delivery_with_counts_and_buttons(portal, waiting):
    run, delivery = waiting
    html = portal("acme", "marketer").get(page_url(run)).content.decode()
    panel = html[html.index('data-testid="confirmations"'):]
    assert "Waiting for confirmation" in panel and f"delivery #{delivery.pk}" in panel
    assert re.search(r'data-testid="to-send">3<', panel) and re.search(r'data-testid="excluded">2<', panel)
    assert "No address 1" in panel and "No consent (opted out or unsubscribed) 1" in panel
    assert 'data-action="confirm-delivery"' in panel and 'data-action="cancel-delivery"' in panel
    assert decide_url(delivery, "confirm") in panel and "csrfmiddlewaretoken" in panel
    # The panel refreshes itself while the run is active.
    fragment = reverse("portal:campaign-run-confirmations", kwargs={"campaign_id": run.campaign_id,
                                                                    "run_id": run.pk})
    assert f'hx-get="{fragment}"' in html
    assert 'data-testid="confirmation"' in portal("acme", "admin").get(fragment).content.decode()


@pytest.mark.parametrize("role", ["approver", "viewer"])
def test_roles_that_cannot_run_campaigns_see_the_counts_but_no_buttons(portal, waiting, smtp_ready, role):  # noqa: F811
    run, delivery = waiting
    client = portal("acme", role)
    html = client.get(page_url(run)).content.decode()
    assert 'data-testid="confirmation"' in html and "confirm-delivery" not in html
    assert "An admin or a marketer confirms or cancels it." in html
    assert client.post(decide_url(delivery, "confirm")).status_code == 403
    with tenant_scope(delivery.tenant):
        delivery.refresh_from_db()
    assert delivery.status == "awaiting_confirmation" and campaign_mail(smtp_ready) == []


def test_confirm_from_the_page_sends(portal, waiting, eager, smtp_ready):  # noqa: F811
    run, delivery = waiting
    client = portal("acme", "marketer")
    with eager(execute=True):
        response = client.post(decide_url(delivery, "confirm"))
    assert response.status_code == 302 and response["Location"] == page_url(run)
    html = client.get(page_url(run)).content.decode()
    assert f"Delivery #{delivery.pk} (mail) is confirmed: sending has started." in html
    assert 'data-testid="confirmation"' not in html
    assert len(campaign_mail(smtp_ready)) == 3
    # A second decision is refused with a message, not an error page.
    again = client.post(decide_url(delivery, "cancel"), follow=True).content.decode()
    assert "The delivery is not waiting for confirmation (it is done)." in again


def test_cancel_from_the_page_sends_nothing(portal, waiting, eager, smtp_ready):  # noqa: F811
    run, delivery = waiting
    with eager(execute=True):
        html = portal("acme", "admin").post(decide_url(delivery, "cancel"), follow=True).content.decode()
    assert f"Delivery #{delivery.pk} (mail) is cancelled: nothing is sent." in html
    with tenant_scope(run.tenant):
        delivery.refresh_from_db()
        run.refresh_from_db()
    assert delivery.status == "cancelled" and run.status == "completed" and campaign_mail(smtp_ready) == []


def test_posts_need_the_csrf_token(people, waiting):
    run, delivery = waiting
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["acme"]["marketer"].user)
    assert client.post(decide_url(delivery, "confirm")).status_code == 403
    html = client.get(page_url(run)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    assert client.post(decide_url(delivery, "cancel"), {"csrfmiddlewaretoken": token}).status_code == 302
    with tenant_scope(run.tenant):
        delivery.refresh_from_db()
    assert delivery.status == "cancelled"


def test_another_tenant_gets_404(portal, waiting):
    run, delivery = waiting
    for role in ("admin", "marketer", "viewer"):
        client = portal("globex", role)
        assert client.post(decide_url(delivery, "confirm")).status_code == 404
        assert client.get(reverse("portal:campaign-run-confirmations", kwargs={
            "campaign_id": run.campaign_id, "run_id": run.pk})).status_code == 404
    with tenant_scope(run.tenant):
        delivery.refresh_from_db()
    assert delivery.status == "awaiting_confirmation"


def test_unknown_decision_is_404(portal, waiting):
    _, delivery = waiting
    assert portal("acme", "admin").post(decide_url(delivery, "approve")).status_code == 404


def test_the_dashboard_lists_deliveries_waiting_for_confirmation(portal, waiting, eager):  # noqa: F811
    run, delivery = waiting
    client = portal("acme", "viewer")
    html = client.get(reverse("portal:dashboard")).content.decode()
    card = html[html.index('data-testid="confirmations-card"'):]
    assert "1 delivery prepared and waiting" in card and "3 to send" in card and page_url(run) in card
    assert 'data-testid="confirmations-card"' not in portal("globex", "admin").get(
        reverse("portal:dashboard")).content.decode()
    with eager(execute=True):
        portal("acme", "admin").post(decide_url(delivery, "cancel"))
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert 'data-testid="confirmations-card"' not in html and "cancelled delivery #" in html
