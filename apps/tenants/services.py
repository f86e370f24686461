"""State changes of tenants and memberships. Each function is one business action: it
validates, writes, audits, all in one transaction."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.core.errors import ApplicationError, Conflict
from apps.tenants.models import AuditEntry, Membership, Tenant, User, validate_time_zone
from apps.tenants.roles import Role
from apps.tenants.scoping import tenant_scope
from apps.tenants.signals import tenant_created


def audit_record(*, tenant: Tenant, actor: User | None, action: str, obj: Any = None,
                 object_type: str | None = None, data: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry to the tenant's audit trail."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = str(obj.pk)
    else:
        object_id = ""
    with tenant_scope(tenant):
        return AuditEntry.objects.create(
            tenant=tenant, actor=actor if actor and actor.is_authenticated else None, action=action,
            object_type=object_type or "", object_id=object_id, data=data or {},
        )


def _validation_fields(exc: ValidationError, field: str) -> dict[str, list[str]]:
    return {field: list(exc.messages)}


@transaction.atomic
def tenant_create(*, name: str, slug: str, time_zone: str = "UTC", data_retention_days: int = 30,
                  settings: dict[str, Any] | None = None, by: User | None) -> Tenant:
    if Tenant.objects.filter(slug=slug).exists():
        raise ApplicationError("A tenant with this slug already exists.", fields={"slug": ["Already taken."]})
    tenant = Tenant(name=name, slug=slug, time_zone=time_zone, data_retention_days=data_retention_days,
                    settings=settings or {})
    try:
        tenant.full_clean()
    except ValidationError as exc:
        raise ApplicationError("Invalid tenant.", fields=exc.message_dict) from None
    tenant.save()
    tenant_created.send(sender=Tenant, tenant=tenant, by=by)
    audit_record(tenant=tenant, actor=by, action="tenant.create", obj=tenant, data={"slug": slug})
    return tenant


TENANT_EDITABLE = ("name", "time_zone", "data_retention_days", "settings", "is_active")


@transaction.atomic
def tenant_update(*, tenant: Tenant, by: User | None, **changes: Any) -> Tenant:
    unknown = set(changes) - set(TENANT_EDITABLE)
    if unknown:
        raise ApplicationError("These fields cannot be changed.", fields={f: ["Not editable."] for f in unknown})
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if "time_zone" in changes:
        try:
            validate_time_zone(changes["time_zone"])
        except ValidationError as exc:
            raise ApplicationError("Invalid time zone.", fields=_validation_fields(exc, "time_zone")) from None
    before = {field: getattr(tenant, field) for field in changes}
    for field, value in changes.items():
        setattr(tenant, field, value)
    try:
        tenant.full_clean()
    except ValidationError as exc:
        raise ApplicationError("Invalid tenant.", fields=exc.message_dict) from None
    tenant.save()
    audit_record(tenant=tenant, actor=by, action="tenant.update", obj=tenant,
                 data={"before": before, "after": changes})
    return tenant


@transaction.atomic
def member_create(*, tenant: Tenant, email: str, role: str, by: User | None, first_name: str = "",
                  last_name: str = "", password: str | None = None) -> tuple[Membership, str | None]:
    """Add a person to `tenant` with `role`. A new person gets `password` or a generated one,
    which is returned once; a person who already has an account keeps their password."""
    email = User.objects.normalize_email(email).lower()
    if role not in Role.values:
        raise ApplicationError("Unknown role.", fields={"role": [f"Choose one of {', '.join(Role.values)}."]})
    user = User.objects.filter(email__iexact=email).first()
    generated = None
    if user is None:
        if password is None:
            password = generated = secrets.token_urlsafe(12)
        candidate = User(username=email, email=email, first_name=first_name, last_name=last_name)
        try:
            validate_password(password, candidate)
        except ValidationError as exc:
            raise ApplicationError("Password too weak.", fields=_validation_fields(exc, "password")) from None
        candidate.set_password(password)
        candidate.save()
        user = candidate
    with tenant_scope(tenant):
        if Membership.objects.filter(user=user).exists():
            raise Conflict("This person is already a member of the tenant.", code="already_member",
                           fields={"email": ["Already a member."]})
        membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    audit_record(tenant=tenant, actor=by, action="member.create", obj=membership,
                 data={"email": email, "role": role})
    return membership, generated


def _active_admins(tenant: Tenant) -> int:
    with tenant_scope(tenant):
        return Membership.objects.filter(role=Role.ADMIN, is_active=True, user__is_active=True).count()


@transaction.atomic
def member_update(*, tenant: Tenant, membership: Membership, by: User | None, role: str | None = None,
                  is_active: bool | None = None, first_name: str | None = None,
                  last_name: str | None = None) -> Membership:
    """Change a member's role or (de)activate their membership. The last active admin of a
    tenant can be neither demoted nor deactivated."""
    if membership.tenant_id != tenant.pk:
        raise ApplicationError("No such member.", code="not_found", status=404)
    with tenant_scope(tenant):
        membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    changes: dict[str, Any] = {}
    if role is not None and role != membership.role:
        if role not in Role.values:
            raise ApplicationError("Unknown role.", fields={"role": [f"Choose one of {', '.join(Role.values)}."]})
        changes["role"] = role
    if is_active is not None and is_active != membership.is_active:
        changes["is_active"] = is_active
    loses_admin = membership.role == Role.ADMIN and membership.is_active and (
        changes.get("role", Role.ADMIN) != Role.ADMIN or changes.get("is_active", True) is False
    )
    if loses_admin and _active_admins(tenant) <= 1:
        raise Conflict("A tenant must keep at least one active admin.", code="last_admin")
    for field, value in changes.items():
        setattr(membership, field, value)
    with tenant_scope(tenant):
        membership.save()
    user_changes = {k: v for k, v in {"first_name": first_name, "last_name": last_name}.items() if v is not None}
    if user_changes:
        for field, value in user_changes.items():
            setattr(membership.user, field, value)
        membership.user.save(update_fields=list(user_changes))
    if changes or user_changes:
        audit_record(tenant=tenant, actor=by, action="member.update", obj=membership,
                     data={**changes, **user_changes})
    return membership


