"""Reads about tenants and their people."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.core.errors import NotFound
from apps.tenants.models import AuditEntry, Membership, Tenant, User


def dangerously_membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    """Every active membership of `user` in an active tenant, across tenants. Tenant resolution
    needs this before any tenant is in scope; nothing else should."""
    if not user.is_authenticated:
        return Membership.dangerously_unscoped.none()
    return (
        Membership.dangerously_unscoped.filter(user=user, is_active=True, tenant__is_active=True)
        .select_related("tenant")
        .order_by("tenant__name")
    )


def membership_resolve(*, user: User, slug: str | None = None, tenant_id: int | None = None) -> Membership | None:
    """The membership through which `user` acts: the one of the tenant named by `slug` or
    `tenant_id`, or, with neither, the only one they have. None when it cannot be decided."""
    memberships = dangerously_membership_list_for_user(user=user)
    if slug:
        return memberships.filter(tenant__slug=slug).first()
    if tenant_id:
        found = memberships.filter(tenant_id=tenant_id).first()
        if found is not None:
            return found
    first_two = list(memberships[:2])
    if len(first_two) == 1 or (first_two and tenant_id is None):
        return first_two[0]
    return None


def member_list(*, tenant: Tenant, filters: dict[str, Any] | None = None) -> QuerySet[Membership]:
    filters = filters or {}
    qs = Membership.objects.filter(tenant=tenant).select_related("user")
    if role := filters.get("role"):
        qs = qs.filter(role=role)
    if "is_active" in filters and filters["is_active"] is not None:
        qs = qs.filter(is_active=filters["is_active"])
    if search := filters.get("search"):
        qs = qs.filter(
            Q(user__email__icontains=search) | Q(user__first_name__icontains=search)
            | Q(user__last_name__icontains=search)
        )
    return qs.order_by("user__email")


def member_get(*, tenant: Tenant, user_id: Any) -> Membership:
    """The membership of user `user_id` in `tenant`; the same NotFound whether the user does not
    exist or belongs to another tenant."""
    try:
        return Membership.objects.select_related("user").get(tenant=tenant, user_id=int(user_id))
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such user in this tenant.") from None


def tenant_list() -> QuerySet[Tenant]:
    return Tenant.objects.order_by("name")


def tenant_get(*, id: Any) -> Tenant:
    try:
        return Tenant.objects.get(pk=int(id))
    except (Tenant.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such tenant.") from None


def audit_list(*, tenant: Tenant, object_type: str | None = None, object_id: str | None = None,
               limit: int = 50) -> list[AuditEntry]:
    qs = AuditEntry.objects.filter(tenant=tenant).select_related("actor")
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=str(object_id))
    return list(qs[:limit])


def role_counts(*, tenant: Tenant) -> dict[str, int]:
    rows = Membership.objects.filter(tenant=tenant, is_active=True).values("role").annotate(n=Count("id"))
    return {row["role"]: row["n"] for row in rows}
