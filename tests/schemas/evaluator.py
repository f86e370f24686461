"""A plain-Python reading of the filter language (docs/filter-language.md), written from the
documentation and not from the compiler: the oracle the SQL compiler is tested against.

It evaluates a filter tree, assumed valid, over records held in memory. Values are coerced with
`apps.schemas.types.coerce`, the definition of what each field type stores; everything else
(operators, missing values, links and their aggregates, durations) is re-implemented here."""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
import re
from dataclasses import dataclass, field
from typing import Any

from apps.schemas.types import coerce

TEXT = {"string", "email", "phone", "enum"}
NUMERIC = {"integer", "decimal"}
TEMPORAL = {"date", "datetime"}

# The operators each type accepts, as the documentation lists them.
OPS_BY_TYPE = {
    **{t: {"eq", "ne", "in", "not_in", "contains", "starts_with", "ends_with", "is_null", "is_not_null"} for t in TEXT},
    "boolean": {"eq", "ne", "in", "not_in", "is_null", "is_not_null"},
    **{t: {"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "is_null", "is_not_null"}
       for t in NUMERIC},
    **{t: {"eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "is_null", "is_not_null",
           "within_last", "before", "after"} for t in TEMPORAL},
    "json": {"eq", "ne", "is_null", "is_not_null"},
}
BUILTIN_TYPES = {"_key": "string", "_created_at": "datetime", "_updated_at": "datetime"}


@dataclass
class FieldSpec:
    type: str
    enum_values: list[str] = field(default_factory=list)


@dataclass
class LinkSpec:
    target: str
    source_field: str
    target_field: str
    kind: str = "one_to_many"


@dataclass
class SchemaSpec:
    name: str
    primary_key: str
    fields: dict[str, FieldSpec]
    links: dict[str, LinkSpec] = field(default_factory=dict)

    def type_of(self, name: str) -> str:
        return BUILTIN_TYPES.get(name) or self.fields[name].type


@dataclass
class Rec:
    key: str
    attributes: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass
class World:
    schemas: dict[str, SchemaSpec]
    records: dict[str, list[Rec]]
    now: dt.datetime
    tz: dt.tzinfo


def evaluate(world: World, schema: str, tree: Any, variables: dict[str, Any] | None = None) -> set[str]:
    """The keys of the records of `schema` that `tree` selects."""
    spec = world.schemas[schema]
    evaluator = _Evaluator(world, variables or {})
    return {rec.key for rec in world.records.get(schema, []) if evaluator.holds(rec, spec, tree)}


# Values -------------------------------------------------------------------------------------

def typed(field_type: str, stored: Any) -> Any:
    """The comparable Python value of a canonical stored JSON value (None when missing)."""
    if stored is None:
        return None
    if field_type == "integer":
        return int(stored)
    if field_type == "decimal":
        return decimal.Decimal(str(stored))
    if field_type == "date":
        return dt.date.fromisoformat(stored)
    if field_type == "datetime":
        return dt.datetime.fromisoformat(stored.replace("Z", "+00:00"))
    return stored


def operand(field_type: str, raw: Any, enum_values: list[str] | None = None) -> Any:
    if field_type == "json":
        return raw
    return typed(field_type, coerce(field_type, raw, enum_values=enum_values or None))


def json_equal(a: Any, b: Any) -> bool:
    """jsonb equality: numbers by value, booleans are not numbers, arrays in order, objects by keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return decimal.Decimal(str(a)) == decimal.Decimal(str(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def window(text: str, field_type: str, now: dt.datetime, tz: dt.tzinfo) -> tuple[Any, Any]:
    """[now - duration, now]: m and h are elapsed time; d, w, mo and y are calendar steps back in the
    tenant's time zone (the same wall-clock time); date fields use the tenant's local dates."""
    amount_text, unit = re.fullmatch(r"(\d+)(mo|m|h|d|w|y)", text).groups()
    amount = int(amount_text)
    local = now.astimezone(tz)
    if unit == "m":
        start = (now - dt.timedelta(minutes=amount)).astimezone(tz)
    elif unit == "h":
        start = (now - dt.timedelta(hours=amount)).astimezone(tz)
    elif unit in ("d", "w"):
        naive = local.replace(tzinfo=None) - dt.timedelta(days=amount * (7 if unit == "w" else 1))
        start = naive.replace(tzinfo=tz)
    else:
        months = amount * (12 if unit == "y" else 1)
        index = local.year * 12 + local.month - 1 - months
        year, month0 = divmod(index, 12)
        day = min(local.day, calendar.monthrange(year, month0 + 1)[1])
        start = local.replace(year=year, month=month0 + 1, day=day)
    if field_type == "date":
        return start.date(), local.date()
    return start, now


def satisfies(value: Any, op: str, args: tuple[Any, ...]) -> bool:
    """A missing value (None) satisfies only is_null, ne and not_in."""
    if op == "is_null":
        return value is None
    if op == "is_not_null":
        return value is not None
    if op == "ne":
        return value is None or value != args[0]
    if op == "not_in":
        return value is None or all(value != a for a in args[0])
    if value is None:
        return False
    return {
        "eq": lambda: value == args[0],
        "in": lambda: any(value == a for a in args[0]),
        "lt": lambda: value < args[0], "before": lambda: value < args[0],
        "lte": lambda: value <= args[0],
        "gt": lambda: value > args[0], "after": lambda: value > args[0],
        "gte": lambda: value >= args[0],
        "between": lambda: args[0] <= value <= args[1],
        "within_last": lambda: args[0] <= value <= args[1],
    }[op]()


def pg_text(stored: Any) -> str | None:
    """What `attributes->>'f'` gives for a stored JSON value (for the values the tests store)."""
    if stored is None:
        return None
    if isinstance(stored, bool):
        return "true" if stored else "false"
    return str(stored)


# Trees --------------------------------------------------------------------------------------

class _Evaluator:
    def __init__(self, world: World, variables: dict[str, Any]) -> None:
        self.world = world
        self.variables = variables

    def value(self, raw: Any) -> Any:
        if isinstance(raw, dict) and set(raw) == {"var"}:
            return self.variables[raw["var"]]
        return raw

    def holds(self, rec: Rec, schema: SchemaSpec, node: Any) -> bool:
        if not node:
            return True
        if "all" in node:
            return all(self.holds(rec, schema, child) for child in node["all"])
        if "any" in node:
            return any(self.holds(rec, schema, child) for child in node["any"])
        if "not" in node:
            return not self.holds(rec, schema, node["not"])
        if "link" in node:
            return self.link(rec, schema, node)
        return self.leaf(rec, schema, node)

    def read(self, rec: Rec, schema: SchemaSpec, name: str) -> Any:
        if name == "_key":
            return rec.key
        if name == "_created_at":
            return rec.created_at
        if name == "_updated_at":
            return rec.updated_at
        return typed(schema.fields[name].type, rec.attributes.get(name))

    def args(self, field_type: str, enum_values: list[str], op: str, raw: Any) -> tuple[Any, ...]:
        if op in ("is_null", "is_not_null"):
            return ()
        raw = self.value(raw)
        if op in ("in", "not_in"):
            return (tuple(operand(field_type, self.value(item), enum_values) for item in raw),)
        if op == "between":
            return tuple(operand(field_type, self.value(item), enum_values) for item in raw)
        if op == "within_last":
            return window(raw, field_type, self.world.now, self.world.tz)
        return (operand(field_type, raw, enum_values),)

    def leaf(self, rec: Rec, schema: SchemaSpec, node: dict[str, Any]) -> bool:
        name, op = node["field"], node["op"]
        field_type = schema.type_of(name)
        value = self.read(rec, schema, name)
        if op in ("contains", "starts_with", "ends_with"):
            needle = self.value(node["value"])
            if value is None:
                return False
            if node.get("case_insensitive"):
                value, needle = value.lower(), needle.lower()
            return {"contains": needle in value, "starts_with": value.startswith(needle),
                    "ends_with": value.endswith(needle)}[op]
        enum_values = schema.fields[name].enum_values if name in schema.fields else []
        args = self.args(field_type, enum_values, op, node.get("value"))
        if field_type == "json" and op in ("eq", "ne"):
            equal = value is not None and json_equal(value, args[0])
            return equal if op == "eq" else not equal
        return satisfies(value, op, args)

    def join_value(self, rec: Rec, schema: SchemaSpec, name: str, other_type: str) -> Any:
        """The value a record offers to a link's join, in the form the other side compares with."""
        own_type = schema.fields[name].type
        stored = rec.key if name == schema.primary_key else rec.attributes.get(name)
        family = "text" if own_type in TEXT else own_type
        other_family = "text" if other_type in TEXT else other_type
        if family == other_family and family != "json":
            return None if stored is None else typed(own_type, coerce(own_type, stored))
        return rec.key if name == schema.primary_key else pg_text(stored)

    def linked(self, rec: Rec, schema: SchemaSpec, link: LinkSpec) -> list[Rec]:
        target = self.world.schemas[link.target]
        source_type = schema.fields[link.source_field].type
        target_type = target.fields[link.target_field].type
        mine = self.join_value(rec, schema, link.source_field, target_type)
        if mine is None:
            return []
        return [other for other in self.world.records.get(link.target, [])
                if self.join_value(other, target, link.target_field, source_type) == mine]

    def link(self, rec: Rec, schema: SchemaSpec, node: dict[str, Any]) -> bool:
        link = schema.links[node["link"]]
        target = self.world.schemas[link.target]
        where = node.get("where")
        matches = [other for other in self.linked(rec, schema, link)
                   if where is None or self.holds(other, target, where)]
        having = node.get("having") or {"exists": True}
        ((aggregate, spec),) = having.items()
        if aggregate == "exists":
            return bool(matches) == spec
        if aggregate == "count":
            return satisfies(len(matches), spec["op"], self.args("integer", [], spec["op"], spec.get("value")))
        name = spec["field"]
        field_type = target.type_of(name)
        values = [v for v in (self.read(other, target, name) for other in matches) if v is not None]
        if aggregate == "sum":
            result: Any = sum(values, decimal.Decimal(0))
        elif not values:
            result = None
        elif aggregate == "min":
            result = min(values)
        elif aggregate == "max":
            result = max(values)
        else:
            with decimal.localcontext() as context:
                context.prec = 40
                result = sum((decimal.Decimal(v) for v in values), decimal.Decimal(0)) / len(values)
        value_type = "decimal" if aggregate in ("sum", "avg") else field_type
        return satisfies(result, spec["op"], self.args(value_type, [], spec["op"], spec.get("value")))


# The same world in the database ---------------------------------------------------------------

def store_world(tenant: Any, world: World, *, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the world's schemas (except those in `existing`, name → DataSchema), fields, links
    and records for `tenant`, so that the SQL compiler sees what the evaluator sees. Returns the
    DataSchema of every schema by name."""
    from django.db import connection

    from apps.schemas.models import DataSchema, Field, Link, Record
    from apps.tenants.scoping import tenant_scope

    schemas = dict(existing or {})
    with tenant_scope(tenant):
        for spec in world.schemas.values():
            if spec.name in schemas:
                continue
            schemas[spec.name] = DataSchema.objects.create(name=spec.name, label=spec.name,
                                                           primary_key=spec.primary_key)
            Field.objects.bulk_create([
                Field(tenant=tenant, schema=schemas[spec.name], name=name, type=f.type, enum_values=f.enum_values,
                      position=position)
                for position, (name, f) in enumerate(spec.fields.items())
            ])
        for spec in world.schemas.values():
            for name, link in spec.links.items():
                Link.objects.create(schema=schemas[spec.name], name=name, target=schemas[link.target], kind=link.kind,
                                    source_field=link.source_field, target_field=link.target_field)
        rows = [Record(tenant=tenant, schema=schemas[name], key=rec.key, attributes=rec.attributes)
                for name, recs in world.records.items() for rec in recs]
        Record.dangerously_unscoped.bulk_create(rows)
    stamps = [(row.pk, rec.created_at, rec.updated_at)
              for row, rec in zip(rows, (r for recs in world.records.values() for r in recs), strict=True)]
    if stamps:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE schemas_record AS r SET created_at = s.c, updated_at = s.u "
                "FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS s(id, c, u) "
                "WHERE r.tenant_id = %s AND r.id = s.id",
                [[s[0] for s in stamps], [s[1] for s in stamps], [s[2] for s in stamps], tenant.pk],
            )
    return schemas
