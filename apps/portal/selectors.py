"""Reads the portal needs that the tenants app does not offer (yet)."""

from __future__ import annotations

from collections.abc import Iterable

from apps.tenants.models import Membership, Tenant


def membership_emails(*, tenant: Tenant, ids: Iterable[str | int]) -> dict[str, str]:
    """E-mail address of each of `tenant`'s memberships in `ids`, keyed by the membership id as a
    string (the form the audit trail stores object ids in). Ids of other tenants are ignored."""
    wanted = {int(i) for i in ids if str(i).isdigit()}
    if not wanted:
        return {}
    rows = Membership.objects.filter(tenant=tenant, pk__in=wanted).values_list("pk", "user__email")
    return {str(pk): email for pk, email in rows}
