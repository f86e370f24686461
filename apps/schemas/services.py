"""State changes of a tenant's data model and of its records: one function per business action,
keyword-only, with the tenant explicit; each validates, writes, audits and, when indexes must
change, asks a worker to converge them after commit (apps/schemas/indexes.py).

Schema changes and record writes of one schema are serialised on the schema's row: a schema
change holds it FOR UPDATE, a record write FOR KEY SHARE (record writes do not wait for each
other), so that no record is validated against a field definition that is being changed."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from psycopg import sql

from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.schemas import conversions, indexes
from apps.schemas.builtin import PROFILE
from apps.schemas.models import IDENTIFIER, DataSchema, Field, FieldType, Link, LinkKind, Record
from apps.schemas.references import references_find
from apps.schemas.types import InvalidValue, coerce, pg_type
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import TenantScopeError, tenant_scope
from apps.tenants.services import audit_record

log = logging.getLogger(__name__)

KEY_TYPES = frozenset({FieldType.STRING, FieldType.INTEGER, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM})
TEXT_TYPES = frozenset({FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM})
MAX_KEY = 255
# A btree index entry holds at most ~2700 bytes: text of indexed fields is kept well below.
MAX_INDEXED_TEXT = 2000
MAX_ENUM_VALUES = 500
EXAMPLES = 10
FIELD_ATTRIBUTES = ("label", "required", "default", "indexed", "enum_values", "type")
_UNSET: Any = object()


def _own(tenant: Tenant, *objects: Any) -> None:
    """A child object must belong to the tenant the service acts for (Zulip's realm check)."""
    for obj in objects:
        if obj is not None and obj.tenant_id != tenant.pk:
            raise TenantScopeError(f"{type(obj).__name__} {obj.pk} belongs to another tenant")


def _identifier(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ApplicationError("Invalid name.", fields={field: ["Give a name."]})
    try:
        IDENTIFIER(value)
    except ValidationError as exc:
        raise ApplicationError("Invalid name.", fields={field: list(exc.messages)}) from None
    return value


def _lock_schema(schema: DataSchema, *, exclusive: bool) -> None:
    """Serialise on the schema row: FOR UPDATE for schema changes, FOR KEY SHARE for record
    writes (which then do not wait for each other). A record write into a schema deleted
    meanwhile is refused here: `schemas_record` has no foreign keys (see models.Record)."""
    statement = ("SELECT 1 FROM schemas_dataschema WHERE tenant_id = %s AND id = %s FOR UPDATE" if exclusive
                 else "SELECT 1 FROM schemas_dataschema WHERE tenant_id = %s AND id = %s FOR KEY SHARE")
    with connection.cursor() as cursor:
        cursor.execute(statement, [schema.tenant_id, schema.pk])
        found = cursor.fetchone() is not None
    if not found and not exclusive:
        raise NotFound("No such schema.")


def _names_in_use(schema: DataSchema) -> set[str]:
    return set(Field.objects.filter(schema=schema).values_list("name", flat=True)) | set(
        Link.objects.filter(schema=schema).values_list("name", flat=True))


def _record_count(schema: DataSchema) -> int:
    return Record.objects.filter(schema=schema).count()


# Field specs ------------------------------------------------------------------------------------

@dataclass
class FieldSpec:
    name: str
    type: str
    label: str = ""
    required: bool = False
    default: Any = None
    indexed: bool = False
    enum_values: list[str] | None = None

    def model_kwargs(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "label": self.label, "required": self.required,
                "default": self.default, "indexed": self.indexed, "enum_values": self.enum_values or []}


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _enum_values(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not values:
        raise ApplicationError("A choice field needs its values.", fields={where: ["Give a non-empty list of values."]})
    if len(values) > MAX_ENUM_VALUES:
        raise ApplicationError("Too many values.", fields={where: [f"At most {MAX_ENUM_VALUES} values."]})
    cleaned = []
    for value in values:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value) or len(str(value)) > 200:
            raise ApplicationError("Invalid value.", fields={where: ["Each value is a text of 1 to 200 characters."]})
        cleaned.append(str(value))
    if len(set(cleaned)) != len(cleaned):
        raise ApplicationError("Duplicate values.", fields={where: ["Each value may appear once."]})
    return cleaned


def _field_spec(raw: Any, prefix: str = "") -> FieldSpec:
    """Validate a field definition sent by a user (a dict) into a FieldSpec."""
    if not isinstance(raw, dict):
        raise ApplicationError("Invalid field.", fields={prefix or "field": ["Give an object."]})
    unknown = set(raw) - {"name", "label", "type", "required", "default", "indexed", "enum_values"}
    if unknown:
        raise ApplicationError("Unknown attributes.", fields={f"{prefix}{k}": ["Unknown attribute."] for k in unknown})
    name = _identifier(raw.get("name"), f"{prefix}name")
    field_type = raw.get("type")
    if field_type not in FieldType.values:
        raise ApplicationError("Invalid type.", fields={f"{prefix}type": [f"Choose one of {', '.join(FieldType.values)}."]})
    spec = FieldSpec(name=name, type=field_type, label=str(raw.get("label") or _label(name))[:200])
    for flag in ("required", "indexed"):
        value = raw.get(flag, False)
        if not isinstance(value, bool):
            raise ApplicationError("Invalid value.", fields={f"{prefix}{flag}": ["Give true or false."]})
        setattr(spec, flag, value)
    if field_type == FieldType.ENUM:
        spec.enum_values = _enum_values(raw.get("enum_values"), f"{prefix}enum_values")
    elif raw.get("enum_values"):
        raise ApplicationError("Only choice fields have values.", fields={f"{prefix}enum_values": ["Only for enum fields."]})
    if spec.indexed and field_type in indexes.NOT_INDEXABLE:
        raise ApplicationError("JSON fields cannot be indexed.", fields={f"{prefix}indexed": ["JSON fields cannot be indexed."]})
    spec.default = _default(raw.get("default"), field_type, spec.enum_values, f"{prefix}default")
    return spec


def _default(value: Any, field_type: str, enum_values: list[str] | None, where: str) -> Any:
    try:
        return coerce(field_type, value, enum_values=enum_values)
    except InvalidValue as exc:
        raise ApplicationError("Invalid default.", fields={where: [str(exc)]}) from None
    except (ValueError, OverflowError, RecursionError):
        raise ApplicationError("Invalid default.", fields={where: [f"not a valid {field_type} value"]}) from None


# Schemas --------------------------------------------------------------------------------------

@transaction.atomic
def schema_create(*, tenant: Tenant, name: str, label: str = "", primary_key: Any, fields: list[Any] | None = None,
                  description: str = "", by: User | None) -> DataSchema:
    """A new schema. `primary_key` is the spec of the field whose value identifies a record, or the
    name of one of `fields`; it is always required, and is a text, integer, e-mail, phone or choice."""
    with tenant_scope(tenant):
        name = _identifier(name, "name")
        specs = [_field_spec(raw, f"fields.{i}.") for i, raw in enumerate(fields or [])]
        if isinstance(primary_key, dict):
            key_spec = _field_spec(primary_key, "primary_key.")
            specs = [key_spec, *specs]
        elif isinstance(primary_key, str) and any(s.name == primary_key for s in specs):
            key_spec = next(s for s in specs if s.name == primary_key)
            specs = [key_spec, *(s for s in specs if s is not key_spec)]
        else:
            raise ApplicationError("A schema needs a primary key.",
                                   fields={"primary_key": ["Give the key field, or the name of one of the fields."]})
        if key_spec.type not in KEY_TYPES:
            raise ApplicationError("Invalid primary key.", fields={"primary_key": [
                f"A key is one of {', '.join(sorted(KEY_TYPES))}."]})
        key_spec.required, key_spec.indexed, key_spec.default = True, False, None
        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen:
                raise ApplicationError("Duplicate field.", fields={"fields": [f"{spec.name!r} appears twice."]})
            seen.add(spec.name)
        if DataSchema.objects.filter(name=name).exists():
            raise Conflict("A schema with this name already exists.", code="exists",
                           fields={"name": ["Already taken."]})
        schema = DataSchema.objects.create(tenant=tenant, name=name, label=(label or _label(name))[:200],
                                           description=description or "", primary_key=key_spec.name)
        Field.objects.bulk_create([
            Field(tenant=tenant, schema=schema, position=position, **spec.model_kwargs())
            for position, spec in enumerate(specs)
        ])
        audit_record(tenant=tenant, actor=by, action="schema.create", obj=schema,
                     data={"name": name, "fields": [s.name for s in specs]})
        if any(s.indexed for s in specs):
            indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)
        return schema


@transaction.atomic
def schema_update(*, tenant: Tenant, schema: DataSchema, by: User | None, label: str | None = None,
                  description: str | None = None) -> DataSchema:
    """Change a schema's label or description (its name and key are what everything else refers
    to, and do not change)."""
    _own(tenant, schema)
    with tenant_scope(tenant):
        changes = {k: v for k, v in {"label": label, "description": description}.items() if v is not None}
        if "label" in changes and not str(changes["label"]).strip():
            raise ApplicationError("Invalid label.", fields={"label": ["Give a label."]})
        for key, value in changes.items():
            setattr(schema, key, str(value)[:200] if key == "label" else str(value))
        if changes:
            schema.save(update_fields=[*changes, "updated_at"])
            audit_record(tenant=tenant, actor=by, action="schema.update", obj=schema, data=changes)
        return schema


@transaction.atomic
def schema_delete(*, tenant: Tenant, schema: DataSchema, by: User | None, force: bool = False) -> None:
    """Delete a schema. Refused for the built-in profile schema and while an audience or a
    campaign uses it; refused while it has records or other schemas link to it, unless `force`,
    which deletes its records and those links too."""
    _own(tenant, schema)
    with tenant_scope(tenant):
        if schema.is_builtin or schema.name == PROFILE:
            raise Conflict("The built-in profile schema cannot be deleted.", code="builtin")
        _lock_schema(schema, exclusive=True)
        users = references_find(tenant=tenant, schema=schema, name=None)
        incoming = list(Link.objects.filter(target=schema).exclude(schema=schema).select_related("schema"))
        for link in incoming:
            users += references_find(tenant=tenant, schema=link.schema, name=link.name)
        if users:
            raise Conflict("This schema is in use.", code="in_use", fields={"users": users})
        count = _record_count(schema)
        if not force and (count or incoming):
            raise Conflict(
                "This schema has records or links to it; delete with force=true to delete them too.",
                code="has_data", fields={"count": count, "links": [f"{link.schema.name}.{link.name}" for link in incoming]})
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM schemas_record WHERE tenant_id = %s AND schema_id = %s",
                           [tenant.pk, schema.pk])
        other_schemas = {link.schema_id for link in incoming}
        Link.objects.filter(pk__in=[link.pk for link in incoming]).delete()
        schema_id = schema.pk
        audit_record(tenant=tenant, actor=by, action="schema.delete", obj=schema,
                     data={"name": schema.name, "records": count})
        schema.delete()
        for sid in {schema_id, *other_schemas}:
            indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=sid)


# Fields ---------------------------------------------------------------------------------------

@transaction.atomic
def field_add(*, tenant: Tenant, schema: DataSchema, by: User | None, **spec: Any) -> Field:
    """Add a field. A required field added to a schema that has records needs a default, which
    the existing records receive."""
    _own(tenant, schema)
    with tenant_scope(tenant):
        parsed = _field_spec(spec)
        _lock_schema(schema, exclusive=True)
        if parsed.name in _names_in_use(schema):
            raise Conflict("This schema already has a field or link with this name.", code="exists",
                           fields={"name": ["Already taken."]})
        if parsed.required and _record_count(schema):
            if parsed.default is None:
                raise ApplicationError("A required field added to a schema with records needs a default.",
                                       fields={"default": ["Give the value existing records receive."]})
            _backfill(schema, parsed.name, parsed.default)
        last = Field.objects.filter(schema=schema).order_by("-position").values_list("position", flat=True).first()
        field = Field.objects.create(tenant=tenant, schema=schema, position=(last or 0) + 1, **parsed.model_kwargs())
        audit_record(tenant=tenant, actor=by, action="field.add", obj=field,
                     data={"schema": schema.name, **parsed.model_kwargs()})
        if field.indexed:
            indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)
        return field


def _backfill(schema: DataSchema, name: str, value: Any) -> int:
    """Give every record of `schema` lacking field `name` the value `value` (one UPDATE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE schemas_record SET attributes = jsonb_set(attributes, ARRAY[%s], %s::jsonb) "
            "WHERE tenant_id = %s AND schema_id = %s AND (attributes -> %s) IS NULL",
            [name, json.dumps(value), schema.tenant_id, schema.pk, name])
        return cursor.rowcount


def _link_users(schema: DataSchema, field_name: str) -> list[dict[str, Any]]:
    """Links of or to `schema` that join on its field `field_name`."""
    found = []
    for link in Link.objects.filter(schema=schema, source_field=field_name):
        found.append({"type": "link", "id": link.pk, "name": f"{schema.name}.{link.name}"})
    for link in Link.objects.filter(target=schema, target_field=field_name).select_related("schema"):
        found.append({"type": "link", "id": link.pk, "name": f"{link.schema.name}.{link.name}"})
    return found


def field_update(*, tenant: Tenant, schema: DataSchema, field: Field, by: User | None,
                 **changes: Any) -> Field:
    """Change a field's label, required, default, indexed, enum_values or type.

    A new type (or a narrower list of choices) is checked against every stored value in one SQL
    statement; if any does not fit, nothing changes and the answer is a 409 with their count and
    up to 10 examples; otherwise the values are rewritten to the new type's canonical form in one
    UPDATE. Making a field required checks that every record has a value (or fills the default).
    Built-in fields keep their type; the primary key keeps its type and stays required."""
    _own(tenant, schema, field)
    if field.schema_id != schema.pk:
        raise TenantScopeError("field of another schema")
    unknown = set(changes) - set(FIELD_ATTRIBUTES)
    if unknown:
        raise ApplicationError("These attributes cannot be changed.", fields={k: ["Not editable."] for k in unknown})
    with tenant_scope(tenant):
        old_index = _old_index_in_the_way(schema, field, changes)
        dropped = False
        if old_index and not connection.in_atomic_block:
            # The old typed index would reject the new values: drop it first, without locking
            # writes. Whatever happens next, the sync converges the indexes afterwards.
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(old_index)).as_string(cursor.connection))
            old_index, dropped = None, True
        try:
            with transaction.atomic():
                return _field_update(tenant=tenant, schema=schema, field=field, by=by, changes=changes,
                                     old_index=old_index, resync=dropped)
        except Exception:
            if dropped:  # refused: build the old index again
                indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)
            raise


def _old_index_in_the_way(schema: DataSchema, field: Field, changes: dict[str, Any]) -> str | None:
    """The name of the field's current index when a type change would leave it unable to read
    the field's new values (a typed expression such as `::bigint`), else None."""
    new_type = changes.get("type", field.type)
    if new_type == field.type or pg_type(field.type) == "text" or field.is_builtin or field.name == schema.primary_key:
        return None
    name = indexes.field_index(schema, field).name
    existing = indexes.existing_indexes(tenant_id=schema.tenant_id, schema_id=schema.pk)
    return name if name in existing else None


def _field_update(*, tenant: Tenant, schema: DataSchema, field: Field, by: User | None, changes: dict[str, Any],
                  old_index: str | None, resync: bool) -> Field:
    _lock_schema(schema, exclusive=True)
    field = Field.objects.select_for_update().get(pk=field.pk)
    is_key = field.name == schema.primary_key
    new_type = changes.get("type", field.type)
    if new_type not in FieldType.values:
        raise ApplicationError("Invalid type.", fields={"type": [f"Choose one of {', '.join(FieldType.values)}."]})
    type_changes = new_type != field.type
    if type_changes and field.is_builtin:
        raise Conflict("The type of a built-in field cannot be changed.", code="builtin")
    if type_changes and is_key:
        raise Conflict("The type of the primary key cannot be changed.", code="primary_key")
    if type_changes and (link_users := _link_users(schema, field.name)):
        raise Conflict("Links join on this field: remove them before changing its type.", code="in_use",
                       fields={"users": link_users})

    if "enum_values" in changes and changes["enum_values"] is not None and new_type == FieldType.ENUM:
        enum_values = _enum_values(changes["enum_values"], "enum_values")
    elif new_type == FieldType.ENUM:
        enum_values = list(field.enum_values or []) if field.type == FieldType.ENUM else None
        if not enum_values:
            enum_values = _enum_values(None, "enum_values")
    else:
        if changes.get("enum_values"):
            raise ApplicationError("Only choice fields have values.", fields={"enum_values": ["Only for enum fields."]})
        enum_values = []
    narrows_choices = new_type == FieldType.ENUM and field.type == FieldType.ENUM and not set(enum_values) >= set(
        field.enum_values or [])

    before = {name: getattr(field, name) for name in FIELD_ATTRIBUTES}
    after = dict(before, type=new_type, enum_values=enum_values)
    if "label" in changes:
        after["label"] = str(changes["label"] or _label(field.name))[:200]
    for flag in ("required", "indexed"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise ApplicationError("Invalid value.", fields={flag: ["Give true or false."]})
            after[flag] = changes[flag]
    if is_key and not after["required"]:
        raise ApplicationError("The primary key is always required.", fields={"required": ["Always required."]})
    if is_key and after["indexed"]:
        raise ApplicationError("The primary key is always indexed.", fields={"indexed": ["The key is indexed already."]})
    if after["indexed"] and new_type in indexes.NOT_INDEXABLE:
        raise ApplicationError("JSON fields cannot be indexed.", fields={"indexed": ["JSON fields cannot be indexed."]})
    if "default" in changes:
        if is_key and changes["default"] is not None:
            raise ApplicationError("The primary key has no default.", fields={"default": ["Not for the key."]})
        after["default"] = _default(changes["default"], new_type, enum_values, "default")
    elif type_changes or narrows_choices:
        after["default"] = _default(field.default, new_type, enum_values, "default")

    if type_changes or narrows_choices:
        if old_index:
            # Called inside a transaction (tests, scripts): the concurrent drop cannot run; drop
            # it here, which locks the table until commit.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # DDL refuses pending deferred checks
                cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(old_index)).as_string(
                    cursor.connection))
        _convert_values(schema, field.name, new_type, enum_values)

    if after["required"] and not before["required"]:
        missing = _missing_values(schema, field.name)
        if missing["count"]:
            if after["default"] is None:
                raise Conflict(f"{missing['count']} records have no value for this field.", code="missing_values",
                               fields=missing)
            _backfill(schema, field.name, after["default"])

    for name, value in after.items():
        setattr(field, name, value)
    field.save()
    diff = {name: {"before": before[name], "after": after[name]} for name in FIELD_ATTRIBUTES
            if before[name] != after[name]}
    if diff:
        audit_record(tenant=tenant, actor=by, action="field.update", obj=field,
                     data={"schema": schema.name, "field": field.name, "changes": diff})
    if "indexed" in diff or ("type" in diff and field.indexed) or old_index or resync:
        indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)
    return field


def _value_statement(template: str, schema: DataSchema, name: str, **parts: sql.Composable) -> str:
    """Compose a statement over the records of `schema` holding field `name`, with the
    conversion columns (`cv.*`) of that field's stored value. Everything is inlined (ids as
    literals, names as literals), so it is executed without parameters."""
    statement = sql.SQL(template).format(
        columns=conversions.value_columns(sql.SQL("r.attributes -> {}").format(sql.Literal(name))),
        tenant=sql.Literal(int(schema.tenant_id)), schema=sql.Literal(int(schema.pk)), name=sql.Literal(name),
        **parts)
    return statement.as_string(None)


def _convert_values(schema: DataSchema, name: str, new_type: str, enum_values: list[str]) -> int:
    """Check every stored value of field `name` against `new_type` (409 with count and examples
    when some do not fit), then rewrite them to its canonical form. Returns the rows rewritten."""
    fits, converted = conversions.conversion_sql(new_type, enum_values)
    with connection.cursor() as cursor:
        cursor.execute(conversions.PRELUDE_SQL)
        cursor.execute(_value_statement(
            """WITH misfits AS (
                   SELECT r.key, cv.v AS value FROM schemas_record r {columns}
                    WHERE r.tenant_id = {tenant} AND r.schema_id = {schema} AND r.attributes ? {name}
                      AND NOT {fits})
               SELECT (SELECT count(*) FROM misfits),
                      (SELECT coalesce(jsonb_agg(jsonb_build_object('key', e.key, 'value', e.value) ORDER BY e.key),
                                       '[]'::jsonb)
                         FROM (SELECT key, value FROM misfits ORDER BY key LIMIT """ + str(EXAMPLES) + """) e)""",
            schema, name, fits=fits))
        count, examples = cursor.fetchone()
        if count:
            examples = json.loads(examples) if isinstance(examples, str) else examples
            raise Conflict(f"{count} stored values do not fit the new type.", code="values_do_not_fit",
                           fields={"count": count, "examples": examples})
        cursor.execute(_value_statement(
            """UPDATE schemas_record t
                  SET attributes = CASE WHEN c.nv IS NULL THEN t.attributes - {name}
                                        ELSE jsonb_set(t.attributes, ARRAY[{name}], c.nv) END
                 FROM (SELECT r.id, {converted} AS nv FROM schemas_record r {columns}
                        WHERE r.tenant_id = {tenant} AND r.schema_id = {schema} AND r.attributes ? {name}) c
                WHERE t.tenant_id = {tenant} AND t.id = c.id AND c.nv IS DISTINCT FROM t.attributes -> {name}""",
            schema, name, converted=converted))
        return cursor.rowcount


def _missing_values(schema: DataSchema, name: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH missing AS (SELECT key FROM schemas_record
                                 WHERE tenant_id = %s AND schema_id = %s AND (attributes ->> %s) IS NULL)
               SELECT (SELECT count(*) FROM missing),
                      (SELECT coalesce(array_agg(key ORDER BY key), '{}') FROM
                         (SELECT key FROM missing ORDER BY key LIMIT %s) e)""",
            [schema.tenant_id, schema.pk, name, EXAMPLES])
        count, keys = cursor.fetchone()
    return {"count": count, "examples": [{"key": key, "value": None} for key in keys]}


@transaction.atomic
def field_remove(*, tenant: Tenant, schema: DataSchema, field: Field, by: User | None) -> None:
    """Remove a field and its values. Refused for built-in fields and the primary key, for a
    field a link joins on, and while an audience or a campaign uses it (409 with the list)."""
    _own(tenant, schema, field)
    with tenant_scope(tenant):
        if field.is_builtin:
            raise Conflict("A built-in field cannot be removed.", code="builtin")
        if field.name == schema.primary_key:
            raise Conflict("The primary key cannot be removed.", code="primary_key")
        _lock_schema(schema, exclusive=True)
        users = _link_users(schema, field.name) + references_find(tenant=tenant, schema=schema, name=field.name)
        if users:
            raise Conflict("This field is in use.", code="in_use", fields={"users": users})
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE schemas_record SET attributes = attributes - %s "
                "WHERE tenant_id = %s AND schema_id = %s AND attributes ? %s",
                [field.name, tenant.pk, schema.pk, field.name])
            cleared = cursor.rowcount
        audit_record(tenant=tenant, actor=by, action="field.remove", obj=field,
                     data={"schema": schema.name, "field": field.name, "values_removed": cleared})
        field.delete()
        indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)


# Links ----------------------------------------------------------------------------------------

@transaction.atomic
def link_create(*, tenant: Tenant, schema: DataSchema, name: str, target: DataSchema | str, kind: str,
                source_field: str, target_field: str, label: str = "", reverse_name: str | None = None,
                reverse_label: str = "", by: User | None) -> Link:
    """A link from `schema` to `target` joining `source_field` (of schema) to `target_field` (of
    target). Many-to-one links end on the target's primary key, one-to-many links start from the
    schema's. With `reverse_name`, the reverse link is created on the target too. The non-key side
    gets an index on its key expression (built concurrently, after commit)."""
    _own(tenant, schema)
    with tenant_scope(tenant):
        name = _identifier(name, "name")
        if isinstance(target, str):
            target_obj = DataSchema.objects.filter(name=target).first()
            if target_obj is None:
                raise ApplicationError("No such schema.", fields={"target": ["No schema of this name."]})
            target = target_obj
        _own(tenant, target)
        if kind not in LinkKind.values:
            raise ApplicationError("Invalid kind.", fields={"kind": [f"Choose one of {', '.join(LinkKind.values)}."]})
        _lock_schema(schema, exclusive=True)
        if target.pk != schema.pk:
            _lock_schema(target, exclusive=True)
        source = Field.objects.filter(schema=schema, name=source_field).first()
        if source is None:
            raise ApplicationError("No such field.", fields={"source_field": [f"{schema.name} has no such field."]})
        target_key = Field.objects.filter(schema=target, name=target_field).first()
        if target_key is None:
            raise ApplicationError("No such field.", fields={"target_field": [f"{target.name} has no such field."]})
        for which, fld in (("source_field", source), ("target_field", target_key)):
            if fld.type not in KEY_TYPES:
                raise ApplicationError("This field cannot join a link.", fields={which: [
                    f"A link joins on a {', '.join(sorted(KEY_TYPES))} field."]})
        if kind == LinkKind.MANY_TO_ONE and target_field != target.primary_key:
            raise ApplicationError("A many-to-one link ends on the target's primary key.",
                                   fields={"target_field": [f"Use {target.primary_key!r}."]})
        if kind == LinkKind.ONE_TO_MANY and source_field != schema.primary_key:
            raise ApplicationError("A one-to-many link starts from the schema's primary key.",
                                   fields={"source_field": [f"Use {schema.primary_key!r}."]})
        if name in _names_in_use(schema):
            raise Conflict("This schema already has a field or link with this name.", code="exists",
                           fields={"name": ["Already taken."]})
        link = Link.objects.create(tenant=tenant, schema=schema, name=name, label=(label or _label(name))[:200],
                                   target=target, kind=kind, source_field=source_field, target_field=target_field)
        data: dict[str, Any] = {"schema": schema.name, "name": name, "target": target.name, "kind": kind,
                                "source_field": source_field, "target_field": target_field}
        if reverse_name:
            reverse_name = _identifier(reverse_name, "reverse_name")
            if reverse_name in _names_in_use(target):
                raise Conflict("The target already has a field or link with this name.", code="exists",
                               fields={"reverse_name": ["Already taken."]})
            reverse_kind = LinkKind.ONE_TO_MANY if kind == LinkKind.MANY_TO_ONE else LinkKind.MANY_TO_ONE
            link.reverse = Link.objects.create(
                tenant=tenant, schema=target, name=reverse_name, label=(reverse_label or _label(reverse_name))[:200],
                target=schema, kind=reverse_kind, source_field=target_field, target_field=source_field)
            data["reverse_name"] = reverse_name
        audit_record(tenant=tenant, actor=by, action="link.create", obj=link, data=data)
        for sid in {schema.pk, target.pk}:
            indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=sid)
        return link


@transaction.atomic
def link_remove(*, tenant: Tenant, schema: DataSchema, link: Link, by: User | None) -> None:
    """Remove a link; refused while an audience or a campaign uses it (409 with the list). Its key
    index goes when no other link needs it."""
    _own(tenant, schema, link)
    with tenant_scope(tenant):
        users = references_find(tenant=tenant, schema=schema, name=link.name)
        if users:
            raise Conflict("This link is in use.", code="in_use", fields={"users": users})
        target_id = link.target_id
        audit_record(tenant=tenant, actor=by, action="link.remove", obj=link,
                     data={"schema": schema.name, "name": link.name})
        link.delete()
        for sid in {schema.pk, target_id}:
            indexes.indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=sid)


# Records --------------------------------------------------------------------------------------

def _fields(schema: DataSchema) -> list[Field]:
    return list(Field.objects.filter(schema=schema).order_by("position", "id"))


def record_values(*, schema: DataSchema, fields: list[Field], values: Any, base: dict[str, Any] | None = None,
                  apply_defaults: bool = True) -> tuple[str, dict[str, Any]]:
    """Validate `values` (field name -> value as sent) into (key, canonical attributes), merged
    over `base` (a partial update) or on their own. Every value goes through `types.coerce`;
    unknown fields are refused; defaults fill absent fields; None removes a value. A 400 lists
    every field in error with its reasons."""
    if not isinstance(values, dict):
        raise ApplicationError("Send an object of field values.", fields={"non_field_errors": ["Expected an object."]})
    by_name = {f.name: f for f in fields}
    errors: dict[str, list[str]] = {}
    attributes = dict(base or {})
    for name, value in values.items():
        field = by_name.get(name)
        if field is None:
            errors[str(name)] = ["Unknown field."]
            continue
        try:
            canonical = coerce(field.type, value, enum_values=field.enum_values or None)
        except InvalidValue as exc:
            errors[name] = [str(exc)]
            continue
        except (ValueError, OverflowError, RecursionError):  # coerce's own edge cases (e.g. "0\x1f")
            errors[name] = [f"not a valid {field.type} value"]
            continue
        if _has_nul(canonical):
            errors[name] = ["contains a NUL character"]
            continue
        if (field.indexed or field.name == schema.primary_key) and isinstance(canonical, str) \
                and len(canonical) > (MAX_KEY if field.name == schema.primary_key else MAX_INDEXED_TEXT):
            limit = MAX_KEY if field.name == schema.primary_key else MAX_INDEXED_TEXT
            errors[name] = [f"At most {limit} characters."]
            continue
        if canonical is None:
            attributes.pop(name, None)
        else:
            attributes[name] = canonical
    if apply_defaults:
        for field in fields:
            if field.name not in values and field.name not in attributes and field.default is not None:
                attributes[field.name] = field.default
    for field in fields:
        if field.required and attributes.get(field.name) in (None, "") and field.name not in errors:
            errors[field.name] = ["This field is required."]
    if errors:
        raise ApplicationError("Invalid record.", fields=errors)
    key_value = attributes[schema.primary_key]
    key = str(key_value)
    if len(key) > MAX_KEY:
        raise ApplicationError("Invalid record.", fields={schema.primary_key: [f"At most {MAX_KEY} characters."]})
    return key, attributes


def _has_nul(value: Any, depth: int = 0) -> bool:
    """PostgreSQL's JSONB cannot hold U+0000, in a text or in a key."""
    if isinstance(value, str):
        return "\x00" in value
    if depth > 100:
        return False
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v, depth + 1) for k, v in value.items())
    return False


def _audit_record_write(tenant: Tenant, by: User | None, action: str, schema: DataSchema, record: Record) -> None:
    # Values are personal data: the trail keeps which record changed, not its content.
    audit_record(tenant=tenant, actor=by, action=action, obj=record, data={"schema": schema.name, "key": record.key})


@transaction.atomic
def record_create(*, tenant: Tenant, schema: DataSchema, values: dict[str, Any], by: User | None) -> Record:
    _own(tenant, schema)
    with tenant_scope(tenant):
        _lock_schema(schema, exclusive=False)
        key, attributes = record_values(schema=schema, fields=_fields(schema), values=values)
        try:
            with transaction.atomic():
                record = Record.objects.create(tenant=tenant, schema=schema, key=key, attributes=attributes)
        except IntegrityError:
            raise Conflict("A record with this key already exists.", code="exists",
                           fields={schema.primary_key: ["A record with this key already exists."]}) from None
        _audit_record_write(tenant, by, "record.create", schema, record)
        return record


@transaction.atomic
def record_update(*, tenant: Tenant, schema: DataSchema, record: Record, values: dict[str, Any],
                  partial: bool = True, by: User | None) -> Record:
    """Change a record: `partial` merges `values` into it (PATCH), otherwise they replace it
    (PUT: absent fields take their default or go). Its key cannot change."""
    _own(tenant, schema, record)
    with tenant_scope(tenant):
        _lock_schema(schema, exclusive=False)
        record = Record.objects.select_for_update().get(pk=record.pk)
        fields = _fields(schema)
        values = dict(values) if isinstance(values, dict) else values
        if isinstance(values, dict) and not partial and schema.primary_key not in values:
            values[schema.primary_key] = record.attributes.get(schema.primary_key, record.key)
        key, attributes = record_values(schema=schema, fields=fields, values=values,
                                        base=record.attributes if partial else None, apply_defaults=not partial)
        if key != record.key:
            raise ApplicationError("The key of a record cannot be changed.",
                                   fields={schema.primary_key: ["The key of a record cannot be changed."]})
        if attributes != record.attributes:
            record.attributes = attributes
            record.save(update_fields=["attributes", "updated_at"])
            _audit_record_write(tenant, by, "record.update", schema, record)
        return record


@transaction.atomic
def record_upsert(*, tenant: Tenant, schema: DataSchema, values: dict[str, Any], by: User | None
                  ) -> tuple[Record, bool]:
    """Create the record `values` identify by their primary key, or merge them into it.
    Returns (record, created)."""
    _own(tenant, schema)
    with tenant_scope(tenant):
        _lock_schema(schema, exclusive=False)
        fields = _fields(schema)
        key, _ = _probe_key(schema, fields, values)
        for _attempt in range(2):
            existing = Record.objects.select_for_update().filter(schema=schema, key=key).first()
            if existing is not None:
                return record_update(tenant=tenant, schema=schema, record=existing, values=values, by=by), False
            _, attributes = record_values(schema=schema, fields=fields, values=values)
            try:
                with transaction.atomic():
                    record = Record.objects.create(tenant=tenant, schema=schema, key=key, attributes=attributes)
            except IntegrityError:
                continue  # created concurrently: merge into it
            _audit_record_write(tenant, by, "record.create", schema, record)
            return record, True
        raise Conflict("The record changed concurrently; try again.", code="concurrent")


def _probe_key(schema: DataSchema, fields: list[Field], values: Any) -> tuple[str, Any]:
    """The key `values` name (400 when they name none)."""
    if not isinstance(values, dict):
        raise ApplicationError("Send an object of field values.", fields={"non_field_errors": ["Expected an object."]})
    key_field = next((f for f in fields if f.name == schema.primary_key), None)
    raw = values.get(schema.primary_key)
    if key_field is None or raw is None:
        raise ApplicationError("Invalid record.", fields={schema.primary_key: ["This field is required."]})
    try:
        canonical = coerce(key_field.type, raw, enum_values=key_field.enum_values or None)
    except (ValueError, OverflowError) as exc:
        reason = str(exc) if isinstance(exc, InvalidValue) else f"not a valid {key_field.type} value"
        raise ApplicationError("Invalid record.", fields={schema.primary_key: [reason]}) from None
    if canonical in (None, ""):
        raise ApplicationError("Invalid record.", fields={schema.primary_key: ["This field is required."]})
    return str(canonical), canonical


@transaction.atomic
def record_delete(*, tenant: Tenant, schema: DataSchema, record: Record, by: User | None) -> None:
    _own(tenant, schema, record)
    with tenant_scope(tenant):
        _lock_schema(schema, exclusive=False)
        _audit_record_write(tenant, by, "record.delete", schema, record)
        record.delete()


@contextlib.contextmanager
def schema_write_lock(*, schema: DataSchema) -> Iterator[None]:
    """For bulk writers (imports, the Update data activity): hold the schema's record-write lock
    (FOR KEY SHARE) for the current transaction, so that no field definition changes under the
    values being written. Must be used inside a transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("schema_write_lock() must be used inside a transaction")
    _lock_schema(schema, exclusive=False)
    yield
