"""Validated filter nodes → one parameterised SQL condition over `schemas_record`.

The condition is a psycopg `sql.Composed` with `%s` placeholders and a list of parameters in the
same order, so that callers can embed it in larger statements built with `psycopg.sql` (an
`INSERT … SELECT` of a campaign step) and still bind every value.

Shape of what is produced, for the record alias `r`:

- a field is exactly `apps.schemas.types.value_sql(...)` of `r.attributes`, so the expression
  indexes built from the same function serve it; `_key`, `_created_at`, `_updated_at` are the
  row's own columns;
- every condition is two-valued as seen from the filter: a comparison with a missing value is
  false, `ne`/`not_in` are the exact negations of `eq`/`in` (so they match missing values), and
  `not` is pushed down to the conditions (`not lt` is `value IS NULL OR NOT value < x`), so SQL's
  unknown never leaks through a negation;
- `exists` on a link is a correlated `EXISTS` whose join uses the target's key column or the
  indexed expression of its field; `count`/`sum`/`min`/`max`/`avg` are an uncorrelated
  `join value IN (SELECT … GROUP BY … HAVING …)` that PostgreSQL runs as one hashed pass over the
  linked records (or its negation, when having no linked record satisfies the condition);
- every subquery binds `tenant_id` and `schema_id` as parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from psycopg import sql

from apps.schemas.models import FieldType
from apps.schemas.query.catalog import FieldDef, SchemaDef
from apps.schemas.query.nodes import All, Any_, Condition, Constant, LinkCondition, Node, Not
from apps.schemas.query.validation import TEXT_TYPES, UNKNOWN
from apps.schemas.types import pg_type, text_sql, value_sql


@dataclass(frozen=True)
class Compiled:
    """A piece of SQL with `%s` placeholders and the parameters they bind, in order."""

    sql: sql.Composable
    params: list[Any]

    def as_string(self, context: Any = None) -> str:
        """The SQL text with its `%s` placeholders, for `cursor.execute(text, params)` (Django's
        cursor or psycopg's). `context` is a psycopg connection or cursor, or None."""
        return self.sql.as_string(context)


def compose(template: str, *parts: Compiled | sql.Composable) -> Compiled:
    """`template` with its `{}` filled by `parts` in order; parameters follow the same order."""
    params: list[Any] = []
    composables: list[sql.Composable] = []
    for part in parts:
        if isinstance(part, Compiled):
            composables.append(part.sql)
            params.extend(part.params)
        else:
            composables.append(part)
    return Compiled(sql.SQL(template).format(*composables), params)


def _join(separator: str, parts: list[Compiled]) -> Compiled:
    params = [param for part in parts for param in part.params]
    return Compiled(sql.SQL(separator).join(part.sql for part in parts), params)


def _param(value: Any, cast: str | None = None) -> Compiled:
    if cast is None:
        return Compiled(sql.Placeholder(), [value])
    return Compiled(sql.SQL("{}::" + cast).format(sql.Placeholder()), [value])


def _bind(field_type: str, value: Any) -> Compiled:
    """A value as a parameter of the PostgreSQL type of `field_type`'s expression."""
    if field_type == FieldType.JSON:
        return _param(json.dumps(value), "jsonb")
    return _param(value, pg_type(field_type))


def _bind_list(field_type: str, values: tuple[Any, ...]) -> Compiled:
    return _param(list(values), pg_type(field_type) + "[]")


def like_pattern(text: str, op: str) -> str:
    """A LIKE pattern for `op` matching `text` literally (its `\\`, `%` and `_` escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"contains": f"%{escaped}%", "starts_with": f"{escaped}%", "ends_with": f"%{escaped}"}[op]


def _column(alias: str, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))


def field_expression(field: FieldDef, alias: str) -> sql.Composable:
    """The typed SQL expression of `field` of the record aliased `alias`."""
    if field.table is not None:
        return _column(field.table, field.column or field.name)
    if field.column is not None:
        return _column(alias, field.column)
    return value_sql(field.type, _column(alias, "attributes"), field.name)


_KEY_CASTS = {
    FieldType.INTEGER: "(({})::bigint)", FieldType.DECIMAL: "(({})::numeric)", FieldType.BOOLEAN: "(({})::boolean)",
    FieldType.DATE: "schemas_to_date({})", FieldType.DATETIME: "schemas_to_timestamptz({})",
}


def _family(field_type: str) -> str:
    return "text" if field_type in TEXT_TYPES else field_type


def link_join(source: SchemaDef, source_alias: str, link_source_field: str,
              target: SchemaDef, target_alias: str, link_target_field: str) -> tuple[sql.Composable, sql.Composable]:
    """(source side, target side) of a link's join, equal when two records are linked.

    The target side is what an index of the target can serve: its `key` column when the target
    field is the target's primary key (the unique (tenant_id, schema_id, key) index), else the
    field's `value_sql` expression (a link index). The source side is converted to match: keys
    are the text form of their primary-key value; fields of different kinds compare as text."""
    source_field = source.fields[link_source_field]
    target_field = target.fields[link_target_field]
    source_is_key = link_source_field == source.primary_key
    source_text = _column(source_alias, "key") if source_is_key else text_sql(_column(source_alias, "attributes"),
                                                                                 link_source_field)
    if link_target_field == target.primary_key:
        return source_text, _column(target_alias, "key")
    target_attributes = _column(target_alias, "attributes")
    if _family(source_field.type) == _family(target_field.type) and target_field.type != FieldType.JSON:
        target_side = value_sql(target_field.type, target_attributes, link_target_field)
        if not source_is_key:
            return field_expression(source_field, source_alias), target_side
        if target_field.type in TEXT_TYPES:
            return _column(source_alias, "key"), target_side
        return sql.SQL(_KEY_CASTS[target_field.type]).format(_column(source_alias, "key")), target_side
    return source_text, text_sql(target_attributes, link_target_field)


def satisfies(value: Any, op: str, operands: tuple[Any, ...]) -> bool:
    """Whether a (Python) value satisfies `op`: the rule for a missing value (None) is that only
    ne, not_in and is_null hold."""
    if op == "is_null":
        return value is None
    if op == "is_not_null":
        return value is not None
    if op == "ne":
        return value is None or value != operands[0]
    if op == "not_in":
        return value is None or value not in operands[0]
    if value is None:
        return False
    match op:
        case "eq":
            return value == operands[0]
        case "lt" | "before":
            return value < operands[0]
        case "lte":
            return value <= operands[0]
        case "gt" | "after":
            return value > operands[0]
        case "gte":
            return value >= operands[0]
        case "in":
            return value in operands[0]
        case "between" | "within_last":
            return operands[0] <= value <= operands[1]
    raise ValueError(op)


_COMPLEMENTS = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "is_null": "is_not_null",
                "is_not_null": "is_null"}


class _Compiler:
    """Compiles nodes with negations pushed down to the conditions (`not` of `all` is `any` of
    the negations, `not` of `eq` is `ne`, `not` of `exists` is `NOT EXISTS`…): the SQL stays
    two-valued without wrapping whole subtrees in COALESCE, which would hide them from the
    planner's estimates."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id

    def node(self, node: Node, schema: SchemaDef, alias: str, depth: int, negated: bool = False) -> Compiled:
        match node:
            case Constant(value=value):
                return Compiled(sql.SQL("TRUE" if value != negated else "FALSE"), [])
            case All(children=children) | Any_(children=children):
                conjunction = isinstance(node, All) != negated
                parts = [self.node(child, schema, alias, depth, negated) for child in children]
                return compose("({})", _join(" AND " if conjunction else " OR ", parts))
            case Not(child=child):
                return self.node(child, schema, alias, depth, not negated)
            case Condition():
                if negated and node.op in _COMPLEMENTS:
                    return self.condition(replace(node, op=_COMPLEMENTS[node.op]), alias)
                if negated:  # false exactly when the value is missing or the condition holds
                    expression = field_expression(node.field, alias)
                    return compose("({} IS NULL OR NOT {})", expression, self.condition(node, alias))
                return self.condition(node, alias)
            case LinkCondition():
                return self.link(node, alias, depth, negated)
        raise TypeError(f"not a filter node: {node!r}")

    def condition(self, node: Condition, alias: str) -> Compiled:
        field, op, values = node.field, node.op, node.values
        if any(value is UNKNOWN for value in values):
            raise ValueError("a filter validated without its variables cannot be compiled")
        expression = Compiled(field_expression(field, alias), [])
        if field.type == FieldType.JSON and op in ("is_null", "is_not_null") and field.table is None:
            # `attributes->'f'` of a stored JSON null is the jsonb 'null', not SQL NULL: test the text
            expression = Compiled(text_sql(_column(alias, "attributes"), field.name), [])
        if op in ("contains", "starts_with", "ends_with"):
            operator = "ILIKE" if node.case_insensitive else "LIKE"
            return compose("({} " + operator + " {} ESCAPE '\\')", expression, _param(like_pattern(values[0], op)))
        return _compare(expression, field.type, op, values)

    def link(self, node: LinkCondition, outer: str, depth: int, negated: bool) -> Compiled:
        inner = f"l{depth}"
        source_side, target_side = link_join(node.source, outer, node.link.source_field,
                                             node.target, inner, node.link.target_field)
        scope = compose("{}.tenant_id = {} AND {}.schema_id = {}", sql.Identifier(inner), _param(self.tenant_id),
                        sql.Identifier(inner), _param(node.target.id))
        where = self.node(node.where, node.target, inner, depth + 1)
        if node.aggregate == "exists":
            found = compose("EXISTS (SELECT 1 FROM schemas_record {} WHERE {} AND {} = {} AND {})",
                            sql.Identifier(inner), scope, target_side, source_side, where)
            return found if node.values[0] != negated else compose("(NOT {})", found)
        if node.aggregate == "count":
            aggregate, zero, value_type = Compiled(sql.SQL("count(*)"), []), 0, FieldType.INTEGER
        else:
            assert node.field is not None
            expression = field_expression(node.field, inner)
            if node.aggregate == "sum":
                aggregate = compose("COALESCE(sum({}), 0)", expression)
                zero, value_type = 0, FieldType.DECIMAL
            else:
                aggregate = compose(node.aggregate + "({})", expression)
                zero = None
                value_type = FieldType.DECIMAL if node.aggregate == "avg" else node.field.type
        assert node.op is not None
        test = _compare(aggregate, value_type, node.op, node.values)
        holds, fails = test, compose("NOT COALESCE({}, FALSE)", test)
        if negated:
            holds, fails = fails, holds
        # A record with no linked record at all gets the aggregate of nothing (0 or missing): it
        # satisfies the condition or not as a whole, so the subquery lists the join values of the
        # groups that decide the other way and the condition is membership or non-membership.
        if satisfies(zero, node.op, node.values) != negated:
            having, template = fails, "(NOT COALESCE({} IN ({}), FALSE))"
        else:
            having, template = holds, "({} IN ({}))"
        groups = compose("SELECT {} FROM schemas_record {} WHERE {} AND {} IS NOT NULL AND {} GROUP BY 1 HAVING {}",
                         target_side, sql.Identifier(inner), scope, target_side, where, having)
        return compose(template, source_side, groups)


def _compare(expression: Compiled, value_type: str, op: str, values: tuple[Any, ...]) -> Compiled:
    match op:
        case "is_null":
            return compose("({} IS NULL)", expression)
        case "is_not_null":
            return compose("({} IS NOT NULL)", expression)
        case "eq":
            return compose("({} = {})", expression, _bind(value_type, values[0]))
        case "ne":
            return compose("({} IS DISTINCT FROM {})", expression, _bind(value_type, values[0]))
        case "in":
            return compose("({} = ANY({}))", expression, _bind_list(value_type, values[0]))
        case "not_in":
            return compose("({} IS NULL OR {} <> ALL({}))", expression, expression, _bind_list(value_type, values[0]))
        case "lt" | "before":
            return compose("({} < {})", expression, _bind(value_type, values[0]))
        case "lte":
            return compose("({} <= {})", expression, _bind(value_type, values[0]))
        case "gt" | "after":
            return compose("({} > {})", expression, _bind(value_type, values[0]))
        case "gte":
            return compose("({} >= {})", expression, _bind(value_type, values[0]))
        case "between" | "within_last":
            return compose("({} BETWEEN {} AND {})", expression, _bind(value_type, values[0]),
                         _bind(value_type, values[1]))
    raise ValueError(f"operator {op} has no SQL form")


def compile_nodes(node: Node, *, tenant_id: int, schema: SchemaDef, alias: str, scoped: bool = True) -> Compiled:
    """The condition for records of `schema` aliased `alias`, scoped to the tenant and schema
    (unless `scoped` is False: the caller has scoped `alias` itself, or the tree names no field
    of the record, only `extra_fields` of other tables)."""
    if alias.startswith("l") and alias[1:].isdigit():
        raise ValueError(f"alias {alias!r} is reserved for link subqueries")
    condition = _Compiler(tenant_id).node(node, schema, alias, 1)
    if not scoped:
        return compose("({})", condition)
    scope = compose("{}.tenant_id = {} AND {}.schema_id = {}", sql.Identifier(alias), _param(tenant_id),
                  sql.Identifier(alias), _param(schema.id))
    if isinstance(node, Constant) and node.value:
        return compose("({})", scope)
    return compose("({} AND {})", scope, condition)

