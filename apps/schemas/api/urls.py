"""Routes of the schemas API, included under /api/v1/."""

from __future__ import annotations

import importlib

from django.urls import include, path

from apps.schemas.api import views

schemas = views.SchemaViewSet
fields = views.FieldViewSet
links = views.LinkViewSet
records = views.RecordViewSet

urlpatterns = [
    path("schemas/", schemas.as_view({"get": "list", "post": "create"}), name="schema-list"),
    path("schemas/<str:schema_name>/", schemas.as_view(
        {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}), name="schema-detail"),
    path("schemas/<str:schema_name>/fields/", fields.as_view({"get": "list", "post": "create"}), name="field-list"),
    path("schemas/<str:schema_name>/fields/<str:field_name>/", fields.as_view(
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}), name="field-detail"),
    path("schemas/<str:schema_name>/links/", links.as_view({"get": "list", "post": "create"}), name="link-list"),
    path("schemas/<str:schema_name>/links/<str:link_name>/", links.as_view({"get": "retrieve", "delete": "destroy"}),
         name="link-detail"),
    path("schemas/<str:schema_name>/records/", records.as_view({"get": "list", "post": "create"}),
         name="record-list"),
    path("schemas/<str:schema_name>/records/<str:key>/", records.as_view(
        {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}), name="record-detail"),
    path("schemas/<str:schema_name>/query", views.QueryView.as_view({"post": "query"}), name="schema-query"),
]


def _imports_urls() -> list:
    """Bulk imports (apps/schemas/api/imports.py) when that module is there."""
    try:
        module = importlib.import_module("apps.schemas.api.imports")
    except ModuleNotFoundError as exc:
        if exc.name != "apps.schemas.api.imports":
            raise
        return []
    return [path("schemas/<str:schema_name>/imports/", include(module.urlpatterns_imports))]


urlpatterns += _imports_urls()
