"""Reading records through a filter: compile it for the tenant and schema, count and sample the
matches, or hand the campaign engine a `SELECT` of the matching keys to embed in its own
statements."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.db import connection
from django.utils import timezone
from psycopg import sql

from apps.schemas.models import DataSchema
from apps.schemas.query.catalog import Catalog, FieldDef, SchemaDef
from apps.schemas.query.compiler import Compiled, compile_nodes, compose
from apps.schemas.query.validation import parse_filter
from apps.tenants.models import Tenant

MAX_SAMPLE = 100


def _time_zone(tenant: Tenant) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(tenant.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _with_extra(schema: SchemaDef, extra_fields: Mapping[str, FieldDef] | None) -> SchemaDef:
    """`schema` seen with extra fields (a campaign population's columns), which win on a clash."""
    return replace(schema, fields={**schema.fields, **extra_fields}) if extra_fields else schema


def validate_filter(*, tenant: Tenant, schema: DataSchema | str, tree: Any,
                    variables: Mapping[str, Any] | None = None, now: dt.datetime | None = None,
                    extra_fields: Mapping[str, FieldDef] | None = None) -> set[str]:
    """Check `tree` against the schema (FilterError if it does not hold) and return the names of
    the event variables it references. With `variables=None` the variables are taken as not known
    yet (publishing a campaign): references are accepted and their values not checked.
    `extra_fields` are fields beside the schema's (see `compile_filter`)."""
    catalog = Catalog.load(tenant)
    _, used = parse_filter(catalog=catalog, schema=_with_extra(catalog.resolve(schema), extra_fields), tree=tree,
                           variables=variables, now=now or timezone.now(), tz=_time_zone(tenant))
    return used


def compile_filter(*, tenant: Tenant, schema: DataSchema | str, tree: Any,
                   variables: Mapping[str, Any] | None = None, alias: str = "r",
                   now: dt.datetime | None = None, extra_fields: Mapping[str, FieldDef] | None = None,
                   scoped: bool = True) -> Compiled:
    """The SQL condition selecting the records of `schema` that match `tree`, for the row of
    `schemas_record` aliased `alias`; it includes `alias.tenant_id = %s AND alias.schema_id = %s`.
    Relative dates (`within_last`) are relative to `now` (default: the current time); a variable
    the tree references must be in `variables`. Raises FilterError (400) for an invalid tree.

    `extra_fields` name fields that are not the record's: FieldDefs with `table` set, compiled as
    `<table>.<column>` (the campaign engine's population columns, joined by the caller); with
    `scoped=False` the tenant and schema condition on `alias` is left out (see `compile_nodes`)."""
    catalog = Catalog.load(tenant)
    schema_def = _with_extra(catalog.resolve(schema), extra_fields)
    node, _ = parse_filter(catalog=catalog, schema=schema_def, tree=tree, variables=variables or {},
                           now=now or timezone.now(), tz=_time_zone(tenant))
    return compile_nodes(node, tenant_id=tenant.pk, schema=schema_def, alias=alias, scoped=scoped)


def select_keys_sql(*, tenant: Tenant, schema: DataSchema | str, tree: Any,
                    variables: Mapping[str, Any] | None = None, now: dt.datetime | None = None) -> Compiled:
    """`SELECT r.key FROM schemas_record r WHERE <tenant, schema and filter>`, ready to be
    embedded in an `INSERT … SELECT` (`sql.SQL("INSERT INTO t (key) {}").format(compiled.sql)`)."""
    condition = compile_filter(tenant=tenant, schema=schema, tree=tree, variables=variables, now=now)
    return compose("SELECT r.key FROM schemas_record r WHERE {}", condition)


def count_records(*, tenant: Tenant, schema: DataSchema | str, tree: Any,
                  variables: Mapping[str, Any] | None = None, now: dt.datetime | None = None) -> int:
    """How many records of `schema` match `tree`."""
    condition = compile_filter(tenant=tenant, schema=schema, tree=tree, variables=variables, now=now)
    statement = compose("SELECT count(*) FROM schemas_record r WHERE {}", condition)
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(), statement.params)
        return cursor.fetchone()[0]


def query_records(*, tenant: Tenant, schema: DataSchema | str, tree: Any,
                  variables: Mapping[str, Any] | None = None, sample_size: int = 20,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """{"count": matches, "sample": up to `sample_size` (at most 100) of them, in key order, each
    {"_key": key, **attributes}}."""
    condition = compile_filter(tenant=tenant, schema=schema, tree=tree, variables=variables, now=now)
    size = max(0, min(int(sample_size), MAX_SAMPLE))
    count = compose("SELECT count(*) FROM schemas_record r WHERE {}", condition)
    sample = compose("SELECT r.key, r.attributes FROM schemas_record r WHERE {} ORDER BY r.key LIMIT {}",
                   condition, Compiled(sql.Placeholder(), [size]))
    with connection.cursor() as cursor:
        cursor.execute(count.as_string(), count.params)
        total = cursor.fetchone()[0]
        rows: list[tuple[str, Any]] = []
        if size and total:
            cursor.execute(sample.as_string(), sample.params)
            rows = cursor.fetchall()
    return {"count": total, "sample": [{"_key": key, **_attributes(attributes)} for key, attributes in rows]}


def _attributes(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a cursor without the jsonb loader
        value = json.loads(value)
    return value if isinstance(value, dict) else {}
