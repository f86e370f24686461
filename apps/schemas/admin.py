"""The admin shows a tenant's data model and records; it changes only labels and descriptions.
Structure changes (types, indexes, links, removals) go through the API, whose services check the
stored data, the users of what changes and the indexes."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin_site import ReadOnlyTenantOwnedAdmin, TenantOwnedAdmin
from apps.schemas.models import DataSchema, Field, Link, Record


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The parent admin already limits schemas to the tenant; the formset filters by parent.
        return self.model.dangerously_unscoped.get_queryset()

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FieldInline(_ReadOnlyInline):
    model = Field
    fields = ["position", "name", "label", "type", "required", "default", "indexed", "enum_values", "is_builtin"]
    readonly_fields = fields
    ordering = ["position", "id"]


class LinkInline(_ReadOnlyInline):
    model = Link
    fk_name = "schema"
    fields = ["name", "label", "kind", "target", "source_field", "target_field"]
    readonly_fields = fields


@admin.register(DataSchema)
class DataSchemaAdmin(TenantOwnedAdmin):
    list_display = ["name", "label", "primary_key", "is_builtin", "tenant", "updated_at"]
    list_filter = ["is_builtin"]
    search_fields = ["name", "label"]
    fields = ["name", "label", "description", "primary_key", "is_builtin", "created_at", "updated_at"]
    readonly_fields = ["name", "primary_key", "is_builtin", "created_at", "updated_at"]
    inlines = [FieldInline, LinkInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # through the API: a schema needs a valid key field

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # through the API: refused while in use or holding records


@admin.register(Record)
class RecordAdmin(ReadOnlyTenantOwnedAdmin):
    list_display = ["key", "schema", "tenant", "updated_at"]
    list_select_related = ["schema", "tenant"]
    search_fields = ["=key"]
    show_full_result_count = False
    fields = ["schema", "key", "attributes", "created_at", "updated_at"]
    readonly_fields = fields
