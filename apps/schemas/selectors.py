"""Reads of a tenant's data model and records. Every `*_get` raises the same NotFound for a
missing object and for another tenant's."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.db.models import Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL
from psycopg import sql

from apps.core.errors import ApplicationError, NotFound
from apps.schemas.models import DataSchema, Field, FieldType, Link, Record
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

SEARCHABLE = (FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM)
MAX_SAMPLE = 100


def schema_list(*, tenant: Tenant) -> QuerySet[DataSchema]:
    with tenant_scope(tenant):
        return DataSchema.objects.filter(tenant=tenant).prefetch_related(
            Prefetch("fields", queryset=Field.objects.filter(tenant=tenant).order_by("position", "id")),
            Prefetch("links", queryset=Link.objects.filter(tenant=tenant).select_related("target")),
        ).order_by("name")


def schema_get(*, tenant: Tenant, name: str) -> DataSchema:
    with tenant_scope(tenant):
        found = schema_list(tenant=tenant).filter(name=str(name)).first()
    if found is None:
        raise NotFound("No such schema.")
    return found


def field_list(*, tenant: Tenant, schema: DataSchema) -> QuerySet[Field]:
    with tenant_scope(tenant):
        return Field.objects.filter(tenant=tenant, schema=schema).order_by("position", "id")


def field_get(*, tenant: Tenant, schema: DataSchema, name: str) -> Field:
    with tenant_scope(tenant):
        found = field_list(tenant=tenant, schema=schema).filter(name=str(name)).first()
    if found is None:
        raise NotFound("No such field.")
    return found


def link_list(*, tenant: Tenant, schema: DataSchema) -> QuerySet[Link]:
    with tenant_scope(tenant):
        return Link.objects.filter(tenant=tenant, schema=schema).select_related("target").order_by("name")


def link_get(*, tenant: Tenant, schema: DataSchema, name: str) -> Link:
    with tenant_scope(tenant):
        found = link_list(tenant=tenant, schema=schema).filter(name=str(name)).first()
    if found is None:
        raise NotFound("No such link.")
    return found


def record_list(*, tenant: Tenant, schema: DataSchema, search: str | None = None, filter: Any = None,
                variables: dict[str, Any] | None = None) -> QuerySet[Record]:
    """Records of `schema` in key order; `search` matches the key and the text fields (case
    insensitive, substring); `filter` is a filter tree (JSON text or parsed), compiled by the
    filter compiler (FilterError, a 400, when it does not hold)."""
    with tenant_scope(tenant):
        qs = Record.objects.filter(tenant=tenant, schema=schema)
        if search:
            condition = Q(key__icontains=search)
            for name in Field.objects.filter(schema=schema, type__in=SEARCHABLE).values_list("name", flat=True):
                condition |= Q(**{f"attributes__{name}__icontains": search})
            qs = qs.filter(condition)
        if filter not in (None, ""):
            tree = _parse_filter(filter)
            from apps.schemas.query import compile_filter

            compiled = compile_filter(tenant=tenant, schema=schema, tree=tree, variables=variables or {}, alias="r")
            subquery = sql.SQL("SELECT r.id FROM schemas_record r WHERE {}").format(compiled.sql)
            qs = qs.filter(id__in=RawSQL(subquery.as_string(connection.connection), compiled.params))
        return qs.order_by("key")


def _parse_filter(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ApplicationError("The filter is not valid JSON.", code="invalid_filter",
                                   fields={"filter": [{"path": "", "message": "Not valid JSON."}]}) from None
    return value


def record_get(*, tenant: Tenant, schema: DataSchema, key: str) -> Record:
    with tenant_scope(tenant):
        found = Record.objects.filter(tenant=tenant, schema=schema, key=str(key)).first()
    if found is None:
        raise NotFound("No such record.")
    return found


def record_count(*, tenant: Tenant, schema: DataSchema) -> int:
    with tenant_scope(tenant):
        return Record.objects.filter(tenant=tenant, schema=schema).count()


def records_query(*, tenant: Tenant, schema: DataSchema, tree: Any, variables: dict[str, Any] | None = None,
                  sample_size: int = 20) -> dict[str, Any]:
    """{"count", "sample": [{"key", "values"}]} of the records matching a filter tree (an empty
    tree matches every record)."""
    from apps.schemas.query import query_records

    tree = _parse_filter(tree)
    result = query_records(tenant=tenant, schema=schema, tree={} if tree is None else tree,
                           variables=variables or {}, sample_size=max(0, min(int(sample_size), MAX_SAMPLE)))
    sample = []
    for row in result["sample"]:
        values = dict(row)
        sample.append({"key": values.pop("_key"), "values": values})
    return {"count": result["count"], "sample": sample}
