"""The expression indexes of `schemas_record` that a tenant's schemas ask for.

Each field marked `indexed` gets `(tenant_id, <typed value expression>)`, partial on its schema;
each link gets `(tenant_id, <text of the key field>)` on the side whose key is not the primary key
(the primary-key side is served by the unique (tenant_id, schema_id, key) constraint). The
expressions are exactly those the filter compiler emits (`types.value_sql` / `types.text_sql`), so
filters use them.

Indexes are built and dropped CONCURRENTLY, which cannot run inside a transaction and may take
minutes on a big table: services only change the wanted state (Field.indexed, Link rows) and ask,
after commit, for `sync_record_indexes` to run in a worker. The sync compares what the schema wants
with what exists (pg_indexes) and converges, so it is idempotent, safe to repeat, and repairs an
index a failed build left INVALID. Index names are deterministic and start with
`schemas_rec_t<tenant>_s<schema>_`, which is how the sync finds the ones it owns."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from celery import shared_task
from django.db import connection, transaction
from psycopg import sql

from apps.schemas import types
from apps.schemas.models import DataSchema, Field, FieldType, Link

log = logging.getLogger(__name__)

TABLE = "schemas_record"
MAX_NAME = 63
NOT_INDEXABLE = {FieldType.JSON}


@dataclass(frozen=True)
class WantedIndex:
    name: str
    expression: sql.Composable

    def create_sql(self, *, tenant_id: int, schema_id: int) -> sql.Composable:
        return sql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} (tenant_id, ({expr})) WHERE schema_id = {sid}"
        ).format(name=sql.Identifier(self.name), table=sql.Identifier(TABLE), expr=self.expression,
                 sid=sql.Literal(int(schema_id)))


def index_prefix(tenant_id: int, schema_id: int) -> str:
    return f"schemas_rec_t{int(tenant_id)}_s{int(schema_id)}_"


def index_name(tenant_id: int, schema_id: int, name: str, signature: str) -> str:
    """`schemas_rec_t<tenant>_s<schema>_<name>_<hash>`, at most 63 characters. The hash covers the
    indexed expression, so a field whose type changes gets a new index under a new name."""
    digest = hashlib.sha1(f"{tenant_id}:{schema_id}:{name}:{signature}".encode()).hexdigest()[:8]
    head = f"{index_prefix(tenant_id, schema_id)}{name}"
    return f"{head[: MAX_NAME - len(digest) - 1]}_{digest}"


def field_index(schema: DataSchema, field: Field) -> WantedIndex:
    expression = types.value_sql(field.type, sql.Identifier("attributes"), field.name)
    return WantedIndex(index_name(schema.tenant_id, schema.pk, field.name, f"value:{field.type}"), expression)


TEXT_FAMILY = frozenset({FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM})


def _family(field_type: str) -> str:
    return "text" if field_type in TEXT_FAMILY else field_type


def key_expression(field: Field, other_key: Field | None) -> sql.Composable:
    """The expression a link joins on, for `field` (not a primary key) linked to the primary-key
    field `other_key` of the other side: its typed value when both are of the same kind (as the
    filter compiler joins), else its text."""
    if other_key is not None and _family(field.type) == _family(other_key.type) and field.type != FieldType.JSON:
        return types.value_sql(field.type, sql.Identifier("attributes"), field.name)
    return types.text_sql(sql.Identifier("attributes"), field.name)


def key_index(schema: DataSchema, field: Field, other_key: Field | None) -> WantedIndex:
    expression = key_expression(field, other_key)
    signature = f"key:{expression.as_string(None)}"
    return WantedIndex(index_name(schema.tenant_id, schema.pk, field.name, signature), expression)


def wanted_indexes(*, tenant_id: int, schema_id: int) -> list[WantedIndex]:
    """The indexes schema `schema_id` of tenant `tenant_id` asks for (none when it is gone). An
    expression is indexed once, even when a field is both `indexed` and a link key."""
    schema = DataSchema.dangerously_unscoped.filter(tenant_id=tenant_id, pk=schema_id).first()
    if schema is None:
        return []
    fields = {f.name: f for f in Field.dangerously_unscoped.filter(tenant_id=tenant_id, schema_id=schema_id)}
    wanted: dict[str, WantedIndex] = {}
    for field in fields.values():
        if field.indexed and field.type not in NOT_INDEXABLE and field.name != schema.primary_key:
            index = field_index(schema, field)
            wanted.setdefault(index.expression.as_string(None), index)
    for name, other_key in link_keys(schema).items():
        if name in fields:
            index = key_index(schema, fields[name], other_key)
            wanted.setdefault(index.expression.as_string(None), index)
    return list(wanted.values())


def link_keys(schema: DataSchema) -> dict[str, Field | None]:
    """The fields of `schema` that links (its own, and other schemas' pointing at it) join on and
    that are not its primary key, each with the primary-key field of the other side."""
    keys: dict[str, Field | None] = {}
    own = Link.dangerously_unscoped.filter(tenant_id=schema.tenant_id, schema_id=schema.pk).select_related("target")
    incoming = Link.dangerously_unscoped.filter(tenant_id=schema.tenant_id, target_id=schema.pk).select_related(
        "schema")
    for field_name, other in [*((link.source_field, link.target) for link in own),
                              *((link.target_field, link.schema) for link in incoming)]:
        if field_name != schema.primary_key:
            keys[field_name] = Field.dangerously_unscoped.filter(
                tenant_id=schema.tenant_id, schema_id=other.pk, name=other.primary_key).first()
    return keys


def existing_indexes(*, tenant_id: int, schema_id: int) -> dict[str, bool]:
    """Index name -> is valid, for the indexes of `schemas_record` this module owns for the schema."""
    prefix = index_prefix(tenant_id, schema_id)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, i.indisvalid
                 FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_class t ON t.oid = i.indrelid
                WHERE t.relname = %s AND t.relnamespace = to_regnamespace(current_schema())
                  AND left(c.relname, %s) = %s""",
            [TABLE, len(prefix), prefix],
        )
        return {name: valid for name, valid in cursor.fetchall()}


def indexes_sync(*, tenant_id: int, schema_id: int) -> dict[str, list[str]]:
    """Create the indexes the schema wants and drop the ones it no longer wants, CONCURRENTLY.
    Must run outside any transaction (a worker, or after commit)."""
    if connection.in_atomic_block:
        raise RuntimeError("indexes_sync() builds indexes CONCURRENTLY and cannot run inside a transaction")
    wanted = {index.name: index for index in wanted_indexes(tenant_id=tenant_id, schema_id=schema_id)}
    existing = existing_indexes(tenant_id=tenant_id, schema_id=schema_id)
    created, dropped = [], []
    with connection.cursor() as cursor:
        for name, valid in existing.items():
            if name not in wanted or not valid:
                # an INVALID index is what an interrupted CONCURRENTLY build leaves: rebuild it
                cursor.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(name)).as_string(cursor.connection))
                dropped.append(name)
        for name, index in wanted.items():
            if existing.get(name) is True:
                continue
            cursor.execute(index.create_sql(tenant_id=tenant_id, schema_id=schema_id).as_string(cursor.connection))
            created.append(name)
    if created or dropped:
        log.info("record indexes of schema %s (tenant %s): created %s, dropped %s", schema_id, tenant_id,
                 created, dropped)
    return {"created": created, "dropped": dropped}


@shared_task(name="schemas.sync_record_indexes", acks_late=True)
def sync_record_indexes(*, tenant_id: int, schema_id: int) -> dict[str, list[str]]:
    """Kick: converge the record indexes of one schema (idempotent)."""
    return indexes_sync(tenant_id=tenant_id, schema_id=schema_id)


def indexes_sync_on_commit(*, tenant_id: int, schema_id: int) -> None:
    """Ask a worker to sync the schema's indexes once the current transaction commits."""
    transaction.on_commit(
        lambda: sync_record_indexes.delay(tenant_id=tenant_id, schema_id=schema_id), robust=True
    )
