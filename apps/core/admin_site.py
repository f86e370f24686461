"""The Django admin for two audiences: platform operators (superusers) see every tenant; a
tenant admin sees only the tenant in scope (the portal's current tenant)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.tenants.roles import Role


def is_tenant_admin(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return bool(membership and membership.role == Role.ADMIN and membership.is_active)


class BackOfficeAdminSite(admin.AdminSite):
    site_header = "Campaigns back office"
    site_title = "Campaigns admin"
    index_title = "Administration"

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        if not (user.is_active and user.is_authenticated):
            return False
        return user.is_superuser or is_tenant_admin(request)


class TenantOwnedAdmin(admin.ModelAdmin):
    """ModelAdmin for tenant-owned models: operators see all tenants' rows (through the
    explicitly unscoped manager); a tenant admin sees and edits only their tenant's, and the
    choices of every foreign key are limited to that tenant."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = self.model.dangerously_unscoped.get_queryset()
        ordering = self.get_ordering(request)
        if ordering:
            qs = qs.order_by(*ordering)
        if request.user.is_superuser:
            return qs
        return qs.filter(tenant_id=request.tenant.pk)

    def _is_allowed(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or is_tenant_admin(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_allowed(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_allowed(request) and (obj is None or self._owns(request, obj))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._is_allowed(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request, obj)

    def _owns(self, request: HttpRequest, obj: Any) -> bool:
        return request.user.is_superuser or obj.tenant_id == request.tenant.pk

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        related = db_field.remote_field.model
        if hasattr(related, "dangerously_unscoped"):
            qs = related.dangerously_unscoped.all()
            if not request.user.is_superuser:
                qs = qs.filter(tenant_id=request.tenant.pk)
            kwargs["queryset"] = qs
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.tenant_id is None:
            obj.tenant = request.tenant
        super().save_model(request, obj, form, change)


class ReadOnlyTenantOwnedAdmin(TenantOwnedAdmin):
    """Rows that are read in the admin and written only by the services (records, histories,
    audit, schedules): no add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
