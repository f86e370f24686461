"""Send confirmation on the campaign page (docs/channels.md): a live one-off run's delivery that
waits for confirmation is shown with its counts and Confirm / Cancel buttons (CSRF-protected
POSTs to the channels services)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from apps.campaigns import selectors as campaign_selectors
from apps.campaigns.models import Run
from apps.channels import selectors as channel_selectors
from apps.channels import services as channel_services
from apps.channels.models import ExclusionReason
from apps.core.errors import ApplicationError
from apps.portal.selectors import deliveries_awaiting_confirmation
from apps.portal.views import portal_page
from apps.tenants.roles import role_can

DECISIONS = {"confirm": channel_services.delivery_confirm, "cancel": channel_services.delivery_cancel}


def confirmation_context(request: HttpRequest, run: Run | None) -> dict[str, Any]:
    """What `portal/campaigns/_confirmations.html` shows for `run`: its deliveries waiting for
    confirmation with their counts, and whether the member may decide."""
    rows = []
    if run is not None and not run.is_test:
        for delivery in deliveries_awaiting_confirmation(tenant=request.tenant, run=run):
            # The counts stored when it started waiting: nothing changes the ledger of a delivery
            # waiting for confirmation, so they are the live counts, without a count over the
            # ledger at each refresh of the panel (every 3 s while the run is active).
            counts = delivery.counts or channel_selectors.delivery_counts(tenant=request.tenant, delivery=delivery)
            reasons = [(ExclusionReason(reason).label if reason in ExclusionReason.values else reason, count)
                       for reason, count in sorted(counts["excluded_by_reason"].items())]
            rows.append({"delivery": delivery, "counts": counts, "reasons": reasons})
    return {"confirmations": rows, "confirmation_run": run,
            "can_confirm": role_can(request.membership.role, channel_services.CONFIRM_CAPABILITY)}


@portal_page()
@require_GET
def run_confirmations(request: HttpRequest, campaign_id: int, run_id: int) -> HttpResponse:
    """The panel alone: refreshed while the run is active, so a delivery shows up once prepared."""
    campaign = campaign_selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    run = campaign_selectors.run_get(tenant=request.tenant, id=run_id)
    if run.campaign_id != campaign.pk:
        raise Http404("No such run.")
    response = render(request, "portal/campaigns/_confirmations.html",
                      {"campaign": campaign, **confirmation_context(request, run)})
    patch_vary_headers(response, ["HX-Request"])
    return response


@portal_page()
@require_POST
def delivery_decide(request: HttpRequest, campaign_id: int, delivery_id: int, decision: str) -> HttpResponse:
    if decision not in DECISIONS:
        raise Http404("No such action.")
    campaign = campaign_selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    delivery = channel_selectors.delivery_get(tenant=request.tenant, id=delivery_id)
    if delivery.campaign_id != campaign.pk:
        raise Http404("No such delivery.")
    if not role_can(request.membership.role, channel_services.CONFIRM_CAPABILITY):
        raise PermissionDenied("Your role cannot do this.")
    try:
        DECISIONS[decision](tenant=request.tenant, delivery=delivery, by=request.user)
    except ApplicationError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Delivery #{delivery.pk} ({delivery.node_id}) is confirmed: sending has started."
                         if decision == "confirm" else
                         f"Delivery #{delivery.pk} ({delivery.node_id}) is cancelled: nothing is sent.")
    target = reverse("portal:campaign-detail", kwargs={"campaign_id": campaign.pk})
    return redirect(f"{target}?run={delivery.run_id}")
