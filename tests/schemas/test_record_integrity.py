"""`schemas_record` has no foreign keys (apps/schemas/models.py, Record: they were half the cost
of a bulk import's write); the services keep every record's tenant and schema existing."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.errors import NotFound
from apps.schemas import services
from apps.schemas.models import DataSchema, Record
from apps.tenants.scoping import tenant_scope
from tests.schemas.world import build_purchases


def _count(sql: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def _orphans() -> int:
    return _count(
        "SELECT count(*) FROM schemas_record r WHERE NOT EXISTS (SELECT 1 FROM schemas_dataschema s "
        "WHERE s.id = r.schema_id AND s.tenant_id = r.tenant_id) "
        "OR NOT EXISTS (SELECT 1 FROM tenants_tenant t WHERE t.id = r.tenant_id)")


def _records(tenant_id: int, schema_id: int | None = None) -> int:
    if schema_id is None:
        return _count("SELECT count(*) FROM schemas_record WHERE tenant_id = %s", [tenant_id])
    return _count("SELECT count(*) FROM schemas_record WHERE tenant_id = %s AND schema_id = %s",
                  [tenant_id, schema_id])


def test_the_record_table_has_no_foreign_keys(db):
    assert _count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'schemas_record'::regclass "
                  "AND contype = 'f'") == 0


def test_a_record_write_into_a_schema_deleted_meanwhile_is_refused(acme, people):
    schema = build_purchases(acme)
    stale = DataSchema.dangerously_unscoped.get(pk=schema.pk)  # what a concurrent request still holds
    assert _records(acme.pk, stale.pk) == 3
    services.schema_delete(tenant=acme, schema=schema, by=None, force=True)
    assert _records(acme.pk, stale.pk) == 0
    values = {"order_id": "late-1", "profile_id": "acme-p1", "amount": "1", "channel": "web"}
    with pytest.raises(NotFound):
        services.record_create(tenant=acme, schema=stale, values=values, by=None)
    with pytest.raises(NotFound):
        services.record_upsert(tenant=acme, schema=stale, values=values, by=None)
    assert _records(acme.pk, stale.pk) == 0
    assert _orphans() == 0


def test_deleting_a_tenant_deletes_its_records_and_no_other(acme, globex, people):
    build_purchases(acme)
    build_purchases(globex)
    kept = _records(globex.pk)
    assert _records(acme.pk) == 5 and kept == 5
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL campaigns.allow_audit_purge = 'on'")
        acme.delete()
    assert _records(acme.pk) == 0
    assert _records(globex.pk) == kept
    assert _orphans() == 0


def test_the_primary_key_is_tenant_and_id_and_record_writes_name_the_tenant(acme, people):
    # One B-tree on ids, (tenant_id, id) (migration schemas.0005): a write by id alone could not use it.
    assert _count("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                  "WHERE i.indrelid = 'schemas_record'::regclass AND i.indisprimary "
                  "AND pg_get_indexdef(i.indexrelid) LIKE '%%(tenant_id, id)'") == 1
    assert _count("SELECT count(*) FROM pg_indexes WHERE tablename = 'schemas_record' "
                  "AND indexdef LIKE '%%(id)'") == 0
    schema = build_purchases(acme)
    with tenant_scope(acme):
        record = Record.objects.filter(schema=schema).first()
    with CaptureQueriesContext(connection) as captured:
        services.record_update(tenant=acme, schema=schema, record=record, values={"amount": "7"}, by=None)
        services.record_delete(tenant=acme, schema=schema, record=record, by=None)
    writes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith(("UPDATE \"schemas_record\"",
                                                                                 "DELETE FROM \"schemas_record\""))]
    assert len(writes) == 2
    assert all(f'"schemas_record"."tenant_id" = {acme.pk}' in statement for statement in writes)
    assert _records(acme.pk, schema.pk) == 2
