"""State changes of audiences. Building a static audience is one `INSERT … SELECT` (from a
filter or from a list of keys), never a loop over records; a dynamic audience stores its query
and only its count is computed."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg import sql

from apps.audiences.models import Audience, AudienceKind
from apps.core.errors import ApplicationError, Conflict
from apps.schemas.models import DataSchema
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import TenantScopeError, tenant_scope
from apps.tenants.services import audit_record

MAX_KEYS = 100_000
EXAMPLES = 10


def _schema(tenant: Tenant, schema: DataSchema | str) -> DataSchema:
    if isinstance(schema, DataSchema):
        if schema.tenant_id != tenant.pk:
            raise TenantScopeError("schema of another tenant")
        return schema
    with tenant_scope(tenant):
        found = DataSchema.objects.filter(tenant=tenant, name=str(schema)).first()
    if found is None:
        raise ApplicationError("No such schema.", fields={"schema": ["No schema of this name."]})
    return found


def _name(tenant: Tenant, name: Any, exclude: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ApplicationError("An audience needs a name.", fields={"name": ["Give a name."]})
    name = name.strip()[:200]
    with tenant_scope(tenant):
        clash = Audience.objects.filter(tenant=tenant, name=name).exclude(pk=exclude).exists()
    if clash:
        raise Conflict("An audience with this name already exists.", code="exists", fields={"name": ["Already taken."]})
    return name


def _count(tenant: Tenant, schema: DataSchema, tree: Any) -> int:
    from apps.schemas.query import count_records

    return count_records(tenant=tenant, schema=schema, tree=tree, variables={})


def _keys(keys: Any) -> list[str]:
    if not isinstance(keys, list) or not keys:
        raise ApplicationError("Give the keys of the members.", fields={"keys": ["Give a non-empty list of keys."]})
    if len(keys) > MAX_KEYS:
        raise ApplicationError("Too many keys.", fields={"keys": [f"At most {MAX_KEYS} keys; import a file instead."]})
    cleaned = []
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, str | int) or not str(key) or len(str(key)) > 255:
            raise ApplicationError("Invalid key.", fields={"keys": ["Each key is a text of 1 to 255 characters."]})
        cleaned.append(str(key))
    return list(dict.fromkeys(cleaned))


@transaction.atomic
def audience_create(*, tenant: Tenant, name: str, kind: str, schema: DataSchema | str = "profile",
                    filter: Any = None, keys: list[Any] | None = None, description: str = "",
                    by: User | None) -> tuple[Audience, dict[str, Any]]:
    """A static audience built now from `filter` or from `keys` (records that exist; the keys
    that match none are reported), or a dynamic audience saving `filter`. Returns (audience,
    report) where the report says how many of the keys matched no record, with examples."""
    schema = _schema(tenant, schema)
    name = _name(tenant, name)
    if kind not in AudienceKind.values:
        raise ApplicationError("Invalid kind.", fields={"kind": [f"Choose one of {', '.join(AudienceKind.values)}."]})
    if kind == AudienceKind.DYNAMIC and keys:
        raise ApplicationError("A dynamic audience is a query.", fields={"keys": ["Only for static audiences."]})
    if kind == AudienceKind.DYNAMIC and filter is None:
        raise ApplicationError("A dynamic audience needs a filter.", fields={"filter": ["Give a filter."]})
    if kind == AudienceKind.STATIC and (filter is None) == (keys is None):
        raise ApplicationError("Build a static audience from a filter or from keys.",
                               fields={"filter": ["Give either a filter or keys."]})
    report: dict[str, Any] = {}
    with tenant_scope(tenant):
        audience = Audience(tenant=tenant, name=name, description=description or "", schema=schema, kind=kind,
                            filter=filter, created_by=by if by is not None and by.is_authenticated else None)
        if kind == AudienceKind.DYNAMIC:
            audience.count = _count(tenant, schema, filter)  # validates the filter (400 with paths)
            audience.last_computed_at = timezone.now()
        try:
            with transaction.atomic():
                audience.save()
        except IntegrityError:
            raise Conflict("An audience with this name already exists.", code="exists",
                           fields={"name": ["Already taken."]}) from None
        if kind == AudienceKind.STATIC:
            if filter is not None:
                audience.count = _insert_from_filter(tenant, audience, schema, filter)
            else:
                audience.count, report = _insert_from_keys(tenant, audience, schema, _keys(keys))
            audience.last_computed_at = timezone.now()
            audience.save(update_fields=["count", "last_computed_at"])
    audit_record(tenant=tenant, actor=by, action="audience.create", obj=audience,
                 data={"name": name, "kind": kind, "schema": schema.name, "count": audience.count})
    return audience, report


_INSERT = ("INSERT INTO audiences_audiencemember (tenant_id, audience_id, record_key) "
           "SELECT %s, %s, k.key FROM ({}) k ON CONFLICT DO NOTHING")
_INSERT_NEW = ("INSERT INTO audiences_audiencemember (tenant_id, audience_id, record_key) "
               "SELECT %s, %s, k.key FROM ({}) k")


def _insert_from_filter(tenant: Tenant, audience: Audience, schema: DataSchema, tree: Any) -> int:
    from apps.schemas.query import select_keys_sql

    compiled = select_keys_sql(tenant=tenant, schema=schema, tree=tree, variables={})
    with connection.cursor() as cursor:
        cursor.execute(_INSERT.format(compiled.as_string()), [tenant.pk, audience.pk, *compiled.params])
        return cursor.rowcount


def _insert_from_keys(tenant: Tenant, audience: Audience, schema: DataSchema,
                      keys: list[str]) -> tuple[int, dict[str, Any]]:
    existing = ("SELECT r.key FROM schemas_record r "
                "WHERE r.tenant_id = %s AND r.schema_id = %s AND r.key = ANY(%s::text[])")
    with connection.cursor() as cursor:
        cursor.execute(_INSERT.format(existing), [tenant.pk, audience.pk, tenant.pk, schema.pk, keys])
        inserted = cursor.rowcount
        report: dict[str, Any] = {"keys_not_found": len(keys) - inserted, "examples_not_found": []}
        if report["keys_not_found"]:
            cursor.execute(
                "SELECT k FROM unnest(%s::text[]) WITH ORDINALITY AS u(k, n) WHERE NOT EXISTS ("
                "SELECT 1 FROM schemas_record r WHERE r.tenant_id = %s AND r.schema_id = %s AND r.key = u.k) "
                "ORDER BY n LIMIT %s",
                [keys, tenant.pk, schema.pk, EXAMPLES])
            report["examples_not_found"] = [row[0] for row in cursor.fetchall()]
    return inserted, report


@transaction.atomic
def audience_write_keys(*, tenant: Tenant, keys_sql: str, params: list[Any], mode: str, by: User | None,
                        audience: Audience | None = None, name: str | None = None,
                        schema: DataSchema | str = "profile") -> tuple[Audience, int]:
    """Write the keys `keys_sql` selects (a `SELECT key …` with `%s` parameters) as the members
    of a static audience, replacing them (`mode="replace"`) or adding to them (`"append"`); the
    audience is `audience`, or the static audience called `name`, created when there is none.
    One DELETE and one INSERT … SELECT; keys that are not records of the audience's schema are
    left out. Returns (audience, members now)."""
    if mode not in ("replace", "append"):
        raise ApplicationError("Invalid mode.", fields={"mode": ["Choose replace or append."]})
    with tenant_scope(tenant):
        if audience is None:
            if not isinstance(name, str) or not name.strip():
                raise ApplicationError("An audience needs a name.", fields={"name": ["Give a name."]})
            schema = _schema(tenant, schema)
            audience, created = Audience.objects.get_or_create(
                tenant=tenant, name=name.strip()[:200],
                defaults={"schema": schema, "kind": AudienceKind.STATIC,
                          "created_by": by if by is not None and by.is_authenticated else None})
            if created:
                audit_record(tenant=tenant, actor=by, action="audience.create", obj=audience,
                             data={"name": audience.name, "kind": AudienceKind.STATIC, "schema": schema.name})
        if audience.tenant_id != tenant.pk:
            raise TenantScopeError("audience of another tenant")
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        if not audience.is_static:
            raise Conflict(f"The audience {audience.name!r} is a saved query, not a list.", code="dynamic")
        with connection.cursor() as cursor:
            # each record once: (tenant, schema, key) is unique, and IN is a semi-join
            records = sql.SQL("SELECT r.key FROM schemas_record r WHERE r.tenant_id = %s "
                              "AND r.schema_id = %s AND r.key IN ({})").format(sql.SQL(keys_sql))
            if mode == "replace":
                cursor.execute("DELETE FROM audiences_audiencemember WHERE tenant_id = %s AND audience_id = %s",
                               [tenant.pk, audience.pk])
                # the audience row is locked and now has no member: nothing to conflict with, and
                # the members are what was inserted (no ON CONFLICT check, no count(*) pass)
                statement = sql.SQL(_INSERT_NEW).format(records).as_string(cursor.connection)
            else:
                statement = sql.SQL(_INSERT).format(records).as_string(cursor.connection)
            cursor.execute(statement, [tenant.pk, audience.pk, tenant.pk, audience.schema_id, *params])
            added = cursor.rowcount
            if mode == "replace":
                audience.count = added
            else:
                cursor.execute("SELECT count(*) FROM audiences_audiencemember WHERE tenant_id = %s "
                               "AND audience_id = %s", [tenant.pk, audience.pk])
                audience.count = cursor.fetchone()[0]
        audience.last_computed_at = timezone.now()
        audience.save(update_fields=["count", "last_computed_at", "updated_at"])
    audit_record(tenant=tenant, actor=by, action="audience.write", obj=audience,
                 data={"mode": mode, "added": added, "count": audience.count})
    return audience, audience.count


@transaction.atomic
def audience_update(*, tenant: Tenant, audience: Audience, by: User | None, name: str | None = None,
                    description: str | None = None, filter: Any = None) -> Audience:
    """Rename or describe an audience; a dynamic audience may also get a new query (its count is
    recomputed). A static audience's members are frozen."""
    if audience.tenant_id != tenant.pk:
        raise TenantScopeError("audience of another tenant")
    with tenant_scope(tenant):
        audience = Audience.objects.select_for_update().select_related("schema").get(pk=audience.pk)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = _name(tenant, name, exclude=audience.pk)
        if description is not None:
            changes["description"] = description
        if filter is not None:
            if audience.is_static:
                raise Conflict("A static audience is frozen: build a new one.", code="static")
            audience.count = _count(tenant, audience.schema, filter)
            audience.last_computed_at = timezone.now()
            changes["filter"] = filter
        for key, value in changes.items():
            setattr(audience, key, value)
        if changes:
            audience.save()
            audit_record(tenant=tenant, actor=by, action="audience.update", obj=audience, data=changes)
        return audience


@transaction.atomic
def audience_refresh(*, tenant: Tenant, audience: Audience, by: User | None) -> Audience:
    """Recount a dynamic audience now (a static one is frozen: 409)."""
    if audience.tenant_id != tenant.pk:
        raise TenantScopeError("audience of another tenant")
    if audience.is_static:
        raise Conflict("A static audience is frozen; only dynamic audiences are refreshed.", code="static")
    with tenant_scope(tenant):
        audience = Audience.objects.select_for_update().select_related("schema").get(pk=audience.pk)
        audience.count = _count(tenant, audience.schema, audience.filter)
        audience.last_computed_at = timezone.now()
        audience.save(update_fields=["count", "last_computed_at", "updated_at"])
    return audience


@transaction.atomic
def audience_delete(*, tenant: Tenant, audience: Audience, by: User | None) -> None:
    """Delete an audience and its members (one DELETE by tenant and audience)."""
    if audience.tenant_id != tenant.pk:
        raise TenantScopeError("audience of another tenant")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audiences_audiencemember WHERE tenant_id = %s AND audience_id = %s",
                       [tenant.pk, audience.pk])
        removed = cursor.rowcount
    audit_record(tenant=tenant, actor=by, action="audience.delete", obj=audience,
                 data={"name": audience.name, "members": removed})
    with tenant_scope(tenant):
        audience.delete()

