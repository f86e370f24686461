from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.audiences import services
from apps.audiences.models import Audience
from apps.core.admin_site import TenantOwnedAdmin


@admin.register(Audience)
class AudienceAdmin(TenantOwnedAdmin):
    """Audiences are built through the API or the portal (their members are computed in SQL);
    the admin reads them, renames them and deletes them through the service."""

    list_display = ["name", "kind", "schema", "count", "last_computed_at", "tenant"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    readonly_fields = ["schema", "kind", "filter", "count", "created_by", "created_at", "updated_at",
                       "last_computed_at"]
    fields = ["name", "description", *readonly_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Audience) -> None:
        services.audience_delete(tenant=obj.tenant, audience=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for audience in queryset:
            services.audience_delete(tenant=audience.tenant, audience=audience, by=request.user)
