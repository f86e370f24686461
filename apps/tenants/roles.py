"""Roles of a tenant membership and what each may do. Views and services ask for a capability,
never for a role, so that the role matrix lives here and nowhere else."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MARKETER = "marketer", "Marketer"
    APPROVER = "approver", "Approver"
    VIEWER = "viewer", "Viewer"


ALL_ROLES = frozenset(Role)

# capability -> roles that hold it
CAPABILITIES: dict[str, frozenset[Role]] = {
    "tenant.read": ALL_ROLES,
    "tenant.manage": frozenset({Role.ADMIN}),
    "users.manage": frozenset({Role.ADMIN}),
    "schemas.manage": frozenset({Role.ADMIN}),
    "data.read": ALL_ROLES,
    "data.write": frozenset({Role.ADMIN, Role.MARKETER}),
    "audiences.write": frozenset({Role.ADMIN, Role.MARKETER}),
    "campaigns.read": ALL_ROLES,
    "campaigns.build": frozenset({Role.ADMIN, Role.MARKETER}),
    "campaigns.run": frozenset({Role.ADMIN, Role.MARKETER}),
    "channels.manage": frozenset({Role.ADMIN}),
    "tasks.read": ALL_ROLES,
    "tasks.decide": frozenset({Role.ADMIN, Role.APPROVER}),
    "tasks.assign": frozenset({Role.ADMIN, Role.MARKETER}),
}


def role_can(role: str | None, capability: str) -> bool:
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability {capability!r}")
    return role is not None and Role(role) in CAPABILITIES[capability]
