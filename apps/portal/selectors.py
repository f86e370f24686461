"""Reads the portal needs that the tenants app does not offer (yet)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.tenants.models import Membership, Tenant


def membership_emails(*, tenant: Tenant, ids: Iterable[str | int]) -> dict[str, str]:
    """E-mail address of each of `tenant`'s memberships in `ids`, keyed by the membership id as a
    string (the form the audit trail stores object ids in). Ids of other tenants are ignored."""
    wanted = {int(i) for i in ids if str(i).isdigit()}
    if not wanted:
        return {}
    rows = Membership.objects.filter(tenant=tenant, pk__in=wanted).values_list("pk", "user__email")
    return {str(pk): email for pk, email in rows}


def deliveries_awaiting_confirmation(*, tenant: Tenant, run: Any = None) -> list[Any]:
    """The tenant's deliveries waiting for someone to confirm their send (of one run, when given),
    oldest first, with their campaign."""
    from apps.channels.models import Delivery, DeliveryStatus
    from apps.tenants.scoping import tenant_scope

    with tenant_scope(tenant):
        qs = Delivery.objects.filter(tenant=tenant, status=DeliveryStatus.AWAITING_CONFIRMATION)
        if run is not None:
            qs = qs.filter(run=run)
        return list(qs.select_related("campaign").order_by("created_at", "id"))
