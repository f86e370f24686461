"""Expression indexes of schemas_record: built CONCURRENTLY after commit (by a Celery task, run
eagerly here), dropped when no longer wanted. These tests commit for real (transaction=True):
CREATE INDEX CONCURRENTLY cannot run inside the transaction a normal test runs in."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from psycopg import sql

from apps.schemas import indexes
from apps.schemas.models import DataSchema
from apps.tenants.scoping import tenant_scope
from config.celery import app as celery_app
from tests.schemas.world import build_purchases

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMAS = "/api/v1/schemas/"


@pytest.fixture(autouse=True)
def eager_tasks():
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def drop_record_indexes():
    """Flushing tables keeps their indexes: drop the ones these tests built."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'schemas_record' "
                       "AND indexname LIKE 'schemas\\_rec\\_t%'")
        for (name,) in cursor.fetchall():
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))


def record_indexes(tenant, schema) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'schemas_record' "
                       "AND left(indexname, %s) = %s",
                       [len(indexes.index_prefix(tenant.pk, schema.pk)), indexes.index_prefix(tenant.pk, schema.pk)])
        return dict(cursor.fetchall())


def profile(tenant) -> DataSchema:
    with tenant_scope(tenant):
        return DataSchema.objects.get(name="profile")


def test_new_tenants_get_the_profile_email_index(acme):
    defs = list(record_indexes(acme, profile(acme)).values())
    assert len(defs) == 1
    assert "(tenant_id, ((attributes ->> 'email'::text)))" in defs[0]
    assert f"WHERE (schema_id = {profile(acme).pk})" in defs[0]


def test_marking_a_field_indexed_builds_its_index_concurrently_and_unmarking_drops_it(api, acme):
    admin = api("acme", "admin")
    schema = profile(acme)
    with CaptureQueriesContext(connection) as queries:
        response = admin.patch(f"{SCHEMAS}profile/fields/birth_date/", {"indexed": True})
    assert response.status_code == 200
    assert any(q["sql"].startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS") for q in queries.captured_queries)
    defs = record_indexes(acme, schema)
    birth = [d for d in defs.values() if "birth_date" in d]
    assert len(birth) == 1 and "schemas_to_date((attributes ->> 'birth_date'::text))" in birth[0]
    assert all(name.startswith(f"schemas_rec_t{acme.pk}_s{schema.pk}_") and len(name) <= 63 for name in defs)

    # a new type means a new expression: the index follows
    assert admin.patch(f"{SCHEMAS}profile/fields/country/", {"indexed": True}).status_code == 200
    assert admin.patch(f"{SCHEMAS}profile/fields/birth_date/", {"indexed": False}).status_code == 200
    defs = record_indexes(acme, schema)
    assert not any("birth_date" in d for d in defs.values())
    assert any("country" in d for d in defs.values())


def test_a_link_indexes_the_key_of_its_non_key_side(acme, people):
    purchases = build_purchases(acme, by=None)
    defs = list(record_indexes(acme, purchases).values())
    # amount (indexed) and the link key profile_id; the profile side is served by its key
    assert any("(tenant_id, ((attributes ->> 'profile_id'::text)))" in d for d in defs)
    assert any("((attributes ->> 'amount'::text))::numeric" in d for d in defs)
    assert len(defs) == 2
    assert not any("'id'" in d for d in record_indexes(acme, profile(acme)).values())


def test_removing_a_field_or_a_schema_drops_its_indexes(api, acme, people):
    purchases = build_purchases(acme, by=None)
    admin = api("acme", "admin")
    assert admin.delete(f"{SCHEMAS}{purchases.name}/fields/amount/").status_code == 204
    assert len(record_indexes(acme, purchases)) == 1
    assert admin.delete(f"{SCHEMAS}{purchases.name}/?force=true").status_code == 204
    assert record_indexes(acme, purchases) == {}


def test_retyping_an_indexed_field_rebuilds_the_index_for_the_new_type(api, acme, people):
    purchases = build_purchases(acme, by=None)
    admin = api("acme", "admin")
    response = admin.patch(f"{SCHEMAS}{purchases.name}/fields/amount/", {"type": "string"})
    assert response.status_code == 200, response.content
    defs = list(record_indexes(acme, purchases).values())
    assert any("(tenant_id, ((attributes ->> 'amount'::text)))" in d for d in defs)
    assert not any("numeric" in d for d in defs)


def test_a_refused_retype_keeps_the_index(api, acme, people):
    purchases = build_purchases(acme, by=None)
    admin = api("acme", "admin")
    before = record_indexes(acme, purchases)
    assert admin.patch(f"{SCHEMAS}{purchases.name}/fields/amount/", {"type": "boolean"}).status_code == 409
    assert record_indexes(acme, purchases) == before


def test_the_sync_is_idempotent_and_refuses_to_run_in_a_transaction(acme):
    schema = profile(acme)
    assert indexes.indexes_sync(tenant_id=acme.pk, schema_id=schema.pk) == {"created": [], "dropped": []}
    with transaction.atomic(), pytest.raises(RuntimeError):
        indexes.indexes_sync(tenant_id=acme.pk, schema_id=schema.pk)


def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(acme):
    schema = profile(acme)
    (name,) = record_indexes(acme, schema)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [name])
    assert indexes.indexes_sync(tenant_id=acme.pk, schema_id=schema.pk) == {"created": [name], "dropped": [name]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [name])
        assert cursor.fetchone()[0] is True
