"""Reads of audiences, and what the campaign engine embeds: `audience_keys_sql` gives a
`SELECT key` of an audience's members to compose into its own statements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from psycopg import sql

from apps.audiences.models import Audience
from apps.core.errors import NotFound
from apps.schemas.models import DataSchema
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

MAX_SAMPLE = 100
EXPORT_BATCH = 2000


def audience_list(*, tenant: Tenant, filters: dict[str, Any] | None = None) -> QuerySet[Audience]:
    filters = filters or {}
    with tenant_scope(tenant):
        qs = Audience.objects.filter(tenant=tenant).select_related("schema", "created_by")
        if kind := filters.get("kind"):
            qs = qs.filter(kind=kind)
        if schema := filters.get("schema"):
            qs = qs.filter(schema__name=schema)
        if search := filters.get("search"):
            qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
        return qs.order_by("name", "id")


def audience_get(*, tenant: Tenant, id: Any) -> Audience:
    """The audience `id` of `tenant`; the same NotFound for a missing id and another tenant's."""
    try:
        with tenant_scope(tenant):
            return Audience.objects.select_related("schema", "created_by").get(tenant=tenant, pk=int(id))
    except (Audience.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such audience.") from None


def audience_keys_sql(*, tenant: Tenant, audience: Audience) -> tuple[str, list[Any]]:
    """A `SELECT key` statement (with `%s` parameters, tenant bound) listing the keys of the
    audience's members that are records of its schema now: a static audience's frozen list, a
    dynamic audience's saved query evaluated when the statement runs."""
    if audience.tenant_id != tenant.pk:
        raise NotFound("No such audience.")
    if audience.is_static:
        statement = (
            "SELECT r.key FROM audiences_audiencemember m "
            "JOIN schemas_record r ON r.tenant_id = m.tenant_id AND r.schema_id = %s AND r.key = m.record_key "
            "WHERE m.tenant_id = %s AND m.audience_id = %s"
        )
        return statement, [audience.schema_id, tenant.pk, audience.pk]
    from apps.schemas.query import select_keys_sql

    compiled = select_keys_sql(tenant=tenant, schema=_schema(tenant, audience), tree=audience.filter or {},
                               variables={})
    return compiled.as_string(), list(compiled.params)


def _schema(tenant: Tenant, audience: Audience) -> DataSchema:
    with tenant_scope(tenant):
        return DataSchema.objects.get(tenant=tenant, pk=audience.schema_id)


def audience_preview(*, tenant: Tenant, audience: Audience, sample_size: int = 20) -> dict[str, Any]:
    """{"count": members now, "sample": the first `sample_size` in key order, as records}."""
    keys, params = audience_keys_sql(tenant=tenant, audience=audience)
    size = max(0, min(int(sample_size), MAX_SAMPLE))
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM ({}) a").format(sql.SQL(keys)).as_string(cursor.connection),
                       params)
        count = cursor.fetchone()[0]
        rows: list[tuple[str, Any]] = []
        if size and count:
            cursor.execute(sql.SQL("{} LIMIT %s").format(_records_sql(keys)).as_string(cursor.connection),
                           [*_records_params(tenant, audience), *params, size])
            rows = cursor.fetchall()
    return {"count": count, "sample": [{"key": key, "values": _json(values)} for key, values in rows]}


def _records_sql(keys: str) -> sql.Composable:
    """Records of the audience's members; `keys` is a statement from `audience_keys_sql`."""
    return sql.SQL("SELECT r.key, r.attributes FROM schemas_record r "
                   "WHERE r.tenant_id = %s AND r.schema_id = %s AND r.key IN ({}) ORDER BY r.key").format(sql.SQL(keys))


def _records_params(tenant: Tenant, audience: Audience) -> list[Any]:
    return [tenant.pk, audience.schema_id]


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def audience_member_rows(*, tenant: Tenant, audience: Audience) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, attributes) of every member, in key order, read through a server-side cursor in
    batches: the memory used does not grow with the audience. The statement is prepared now (so
    that a filter error surfaces before a response starts) and runs when iterated."""
    keys, params = audience_keys_sql(tenant=tenant, audience=audience)
    statement, all_params = _records_sql(keys), [*_records_params(tenant, audience), *params]

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(statement.as_string(connection.connection), all_params)
            while batch := cursor.fetchmany(EXPORT_BATCH):
                for key, values in batch:
                    yield key, _json(values)

    return rows()
