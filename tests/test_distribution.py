"""Ready for Citus: every tenant-owned table carries `tenant_id`, has a unique (tenant_id, id) to
become its distributed key, and every other unique constraint or unique index includes
`tenant_id`. Read from the live database, so raw-SQL tables and migrations are covered too."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

from apps.tenants.scoping import TenantOwnedModel

# Tables created by the project's own apps that are shared by all tenants (reference tables).
# Indexes serving cross-tenant periodic scans: the sweeper looks for due runs of every tenant, the
# schedule fan-out for due schedules of every tenant (docs/scaling.md).
CROSS_TENANT_INDEXES = {"campaigns_run_check_idx", "campaigns_schedule_fire_idx"}

REFERENCE_TABLES = {"tenants_tenant", "tenants_user", "tenants_user_groups", "tenants_user_user_permissions"}


def project_models():
    return [m for m in apps.get_models() if m.__module__.startswith("apps.")]


def tenant_owned_tables() -> set[str]:
    return {m._meta.db_table for m in project_models() if issubclass(m, TenantOwnedModel)}


def unique_column_sets(table: str, *, primary: bool = False) -> list[tuple[str, list[str]]]:
    """The table's unique indexes and their columns; with `primary`, its primary key as well."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname, array_agg(a.attname ORDER BY k.ord)
            FROM pg_index x
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
            LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
            WHERE t.relname = %s AND x.indisunique AND (%s OR NOT x.indisprimary)
            GROUP BY i.relname
            """,
            [table, primary],
        )
        return [(name, [c for c in cols if c]) for name, cols in cursor.fetchall()]


@pytest.mark.django_db
def test_every_project_table_is_tenant_owned_or_a_known_reference_table():
    for model in project_models():
        table = model._meta.db_table
        assert issubclass(model, TenantOwnedModel) or table in REFERENCE_TABLES or model._meta.auto_created, (
            f"{model.__name__} ({table}) is neither tenant-owned nor a declared reference table")


@pytest.mark.django_db
def test_tenant_owned_tables_have_tenant_id_in_every_unique_key():
    tables = tenant_owned_tables()
    assert "tenants_membership" in tables
    for table in tables:
        with connection.cursor() as cursor:
            columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
        assert "tenant_id" in columns, f"{table} lacks tenant_id"
        # (tenant_id, id) as a unique index or as the primary key itself (schemas_record's).
        keys = unique_column_sets(table, primary=True)
        assert any(cols == ["tenant_id", "id"] for _, cols in keys), f"{table} lacks unique (tenant_id, id)"
        for name, cols in unique_column_sets(table):
            assert "tenant_id" in cols, f"{table}: unique {name} on {cols} does not include tenant_id"


@pytest.mark.django_db
def test_lookup_indexes_lead_with_tenant_id():
    """Indexes declared on tenant-owned models start with the tenant (an index that starts with
    another column cannot serve a tenant's lookup on a distributed table). The exceptions serve
    the periodic jobs that look across tenants (on Citus each shard keeps its own copy)."""
    for model in project_models():
        if not issubclass(model, TenantOwnedModel):
            continue
        for index in model._meta.indexes:
            if index.name in CROSS_TENANT_INDEXES:
                continue
            first = index.fields[0] if index.fields else None
            assert first in ("tenant", "tenant_id"), f"{model.__name__}: index {index.name} starts with {first}"
