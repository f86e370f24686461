from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.tenants.roles import role_can
from apps.tenants.selectors import dangerously_membership_list_for_user


def portal(request: HttpRequest) -> dict[str, Any]:
    """The current tenant, the user's other tenants (switcher) and what their role may do."""
    user = getattr(request, "user", None)
    membership = getattr(request, "membership", None)
    if user is None or not user.is_authenticated:
        return {}
    role = membership.role if membership else None
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": membership,
        "user_memberships": list(dangerously_membership_list_for_user(user=user)),
        "can": {cap.replace(".", "_"): role_can(role, cap) for cap in (
            "users.manage", "tenant.manage", "schemas.manage", "campaigns.build", "tasks.decide")},
    }
