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
        ("Tasks", "portal:tasks", "check-square", None, ("tasks",)),
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


def _navigation(request: HttpRequest, role: str | None) -> list[dict[str, Any]]:
    match = getattr(request, "resolver_match", None)
    current = match.url_name if match and match.namespace == "portal" else None
    groups = []
    for title, items in NAVIGATION:
        entries = [
            {"label": label, "url": reverse(name), "icon": icon, "is_current": current in names}
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
