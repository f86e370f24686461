"""What every portal page's layout needs: the current tenant, the user's other tenants (for
the switcher), what their role may do, and the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from apps.core.admin_site import is_tenant_admin
from apps.tenants.roles import Role, role_can
from apps.tenants.selectors import dangerously_membership_list_for_user

AUDIENCE_PAGES = ("audiences", "audience-new", "audience-builder", "audience-count", "audience-detail",
                  "audience-edit", "audience-refresh", "audience-delete")
DATA_PAGES = ("data", "schema-new", "schema-detail", "schema-edit", "schema-delete", "field-add", "field-edit",
              "field-remove", "link-add", "link-remove", "record-list", "record-detail", "import-list",
              "import-upload", "import-detail")

# (label, url name, icon, capability needed or None, url names that make the item current)
NAVIGATION = [
    ("main", [
        ("Overview", "portal:dashboard", "grid", None, ("dashboard",)),
        ("Campaigns", "portal:campaigns", "send", None, ("campaigns",)),
        ("Audiences", "portal:audiences", "layers", None, AUDIENCE_PAGES),
        ("Data", "portal:data", "database", None, DATA_PAGES),
        ("Tasks", "approvals-portal:inbox", "check-square", None, ("tasks", "approvals-portal:")),
    ]),
    ("Workspace", [
        ("Settings", "portal:settings", "sliders", None, ("settings",)),
        ("Users", "portal:user-list", "users", "users.manage", ("user-list", "user-add", "user-role",
                                                                 "user-deactivate", "user-activate")),
    ]),
]

CAPABILITIES_IN_TEMPLATES = ("users.manage", "tenant.manage", "schemas.manage", "campaigns.build",
                             "campaigns.run", "audiences.write", "data.write", "tasks.decide",
                             "tasks.assign", "channels.manage")


def _is_current(match: Any, names: tuple[str, ...]) -> bool:
    """Whether the page is one of `names`: url names of the portal, or `<namespace>:` for every
    page of another app's portal namespace (the tasks pages)."""
    if not match:
        return False
    if match.namespace == "portal":
        return match.url_name in names
    return f"{match.namespace}:" in names


def _badges(request: HttpRequest) -> dict[str, int]:
    """Counts shown beside navigation items: the open tasks waiting on the user."""
    from apps.approvals.selectors import task_count_open_for
    from apps.tenants.scoping import tenant_scope

    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return {}
    with tenant_scope(tenant):
        return {"Tasks": task_count_open_for(tenant=tenant, user=request.user)}


def _navigation(request: HttpRequest, role: str | None) -> list[dict[str, Any]]:
    match = getattr(request, "resolver_match", None)
    badges = _badges(request)
    groups = []
    for title, items in NAVIGATION:
        entries = [
            {"label": label, "url": reverse(name), "icon": icon, "is_current": _is_current(match, names),
             "badge": badges.get(label, 0)}
            for label, name, icon, capability, names in items
            if capability is None or role_can(role, capability)
        ]
        if entries:
            groups.append({"title": None if title == "main" else title, "items": entries})
    return groups


def portal(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    membership = getattr(request, "membership", None)
    role = membership.role if membership else None
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": membership,
        "current_role_label": Role(role).label if role else None,
        "user_memberships": list(dangerously_membership_list_for_user(user=user)),
        "can": {cap.replace(".", "_"): role_can(role, cap) for cap in CAPABILITIES_IN_TEMPLATES},
        "can_use_admin": user.is_superuser or is_tenant_admin(request),
        "nav": _navigation(request, role) if membership else [],
    }
