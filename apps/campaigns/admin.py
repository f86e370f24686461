"""Schedules in the Django admin: what is armed and when it fires next, per tenant (tenant admins
see their own, operators every tenant's). Schedules are armed by starting a campaign and stopped
by pausing it (apps/campaigns/services.py); here a tenant's schedules can be paused and resumed
all at once: the tenant setting `schedules_paused`, which the fan-out skips (docs/engine.md)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from apps.campaigns.models import Schedule
from apps.campaigns.schedules import schedules_paused
from apps.core.admin_site import ReadOnlyTenantOwnedAdmin
from apps.tenants.models import Tenant
from apps.tenants.services import tenant_update


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyTenantOwnedAdmin):
    list_display = ["campaign", "node_id", "next_fire_at", "last_fired_at", "is_active", "tenant_schedules",
                    "time_zone", "tenant"]
    list_filter = ["is_active"]
    search_fields = ["campaign__name"]
    ordering = ["next_fire_at", "id"]
    readonly_fields = ["campaign", "node_id", "spec", "time_zone", "next_fire_at", "last_fired_at", "is_active"]
    fields = readonly_fields
    actions = ["pause_tenant_schedules", "resume_tenant_schedules"]

    @admin.display(description="tenant's schedules")
    def tenant_schedules(self, obj: Schedule) -> str:
        return "paused" if schedules_paused(obj.tenant) else "running"

    @admin.action(description="Pause every schedule of the selected schedules' tenants")
    def pause_tenant_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume every schedule of the selected schedules' tenants")
    def resume_tenant_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._set_paused(request, queryset, False)

    def _set_paused(self, request: HttpRequest, queryset: Any, paused: bool) -> None:
        tenants = Tenant.objects.filter(pk__in=queryset.values("tenant_id"))
        for tenant in tenants:
            tenant_update(tenant=tenant, by=request.user, settings={**(tenant.settings or {}), "schedules_paused": paused})
        names = ", ".join(t.name for t in tenants)
        self.message_user(request, f"Schedules {'paused' if paused else 'resumed'} for {names}.", messages.SUCCESS)
