"""Tenants, the people who log into them, and the audit trail every service writes."""

from __future__ import annotations

import zoneinfo

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from apps.tenants.roles import Role
from apps.tenants.scoping import TenantOwnedModel


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA time zone.")


class Tenant(models.Model):
    """A customer organisation. Not tenant-owned itself: operators manage it."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=63, unique=True,
        validators=[RegexValidator(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$", "Lower-case letters, digits and dashes.")],
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    data_retention_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    settings = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person. Platform operators are superusers; everyone else reaches tenants through
    memberships. The username is the e-mail address."""

    email = models.EmailField(unique=True)

    @property
    def is_operator(self) -> bool:
        return self.is_active and self.is_superuser

    def __str__(self) -> str:
        return self.get_full_name() or self.email or self.username


class Membership(TenantOwnedModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "user"], name="tenants_membership_tenant_user_key"),
        ]
        ordering = ["user__email"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


class AuditEntry(TenantOwnedModel):
    """One row per state change made by a service. Rows cannot be updated or deleted: a database
    trigger refuses it (see the migration), whatever the application code does."""

    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "object_type", "object_id"], name="tenants_audit_object_idx")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"
