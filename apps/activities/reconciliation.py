"""Reconciliation: the rows of a population (typically a loaded file) matched to existing records
of a schema, by column = field rules (with trim / lower-case normalisation) and/or a
filter-language condition over the records' fields and the rows' columns. Matched rows continue
keyed by their record's key in the target dimension, carrying their columns; a record several
rows match keeps the first of them (in the rows' key order: line order for a loaded file).
Unmatched rows go to the `unmatched` output, or stay in `out` (`"unmatched": "keep"`, with a
`matched` column false), or are dropped. Each output is one INSERT … SELECT."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from apps.activities.base import (
    Activity,
    Column,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    Shape,
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import (
    FILTER_SCHEMA,
    carried,
    condition,
    count,
    filter_problems,
    needs_records,
    records_of,
    schema_id,
    single_input,
    source,
)
from apps.campaigns.populations import table_ident
from apps.schemas.models import FieldType
from apps.schemas.query.catalog import BUILTIN_FIELDS, Catalog, FieldDef
from apps.schemas.query.compiler import Compiled, compose, field_expression
from apps.schemas.types import pg_type, text_sql

S, Id = sql.SQL, sql.Identifier
NORMALISATIONS = ("trim", "lower")
MATCHED = Column("matched", "boolean")
# Field types whose stored values are already trimmed and lower-cased (types.coerce): normalising
# them again would change nothing, and leaving them bare lets an index on the field serve the match.
CANONICAL_LOWER = {FieldType.EMAIL}
WHITESPACE = sql.Literal(" \t\r\n\x0b\x0c\xa0")


def _target(config: dict[str, Any], default: str) -> str:
    return config.get("schema") or default


def _rule_expressions(rule: dict[str, Any], field: FieldDef, primary_key: str,
                      columns: dict[str, Column]) -> tuple[sql.Composable, sql.Composable]:
    """(record side over `r`, row side over `p`) of one column = field rule, compared as text
    unless the column already has the field's type."""
    normalise = [n for n in NORMALISATIONS if n in rule.get("normalize", [])]
    name = rule["column"]
    row: sql.Composable = S("p.key") if name == "key" and name not in columns else S("p.{}").format(Id(name))
    column_type = "text" if name not in columns else columns[name].type
    if field.name == primary_key or field.column == "key":
        record: sql.Composable = S("r.key")
    elif field.column is not None:  # _created_at, _updated_at
        record = S("r.{}::text").format(Id(field.column))
    elif not normalise and column_type == pg_type(field.type) and column_type != "text":
        return field_expression(field, "r"), row
    else:
        record = text_sql(S("r.attributes"), field.name)
    if column_type != "text":
        row = S("({})::text").format(row)

    def normalised(expr: sql.Composable, *, stored: bool) -> sql.Composable:
        if stored and field.type in CANONICAL_LOWER:
            return expr
        if "trim" in normalise:
            expr = S("btrim({}, {})").format(expr, WHITESPACE)
        if "lower" in normalise:
            expr = S("lower({})").format(expr)
        return expr

    return normalised(record, stored=True), normalised(row, stored=False)


@register
class Reconciliation(Activity):
    type = "reconciliation"
    label = "Reconciliation"
    group = "data"
    description = ("Matches the population's rows (e.g. a loaded file) to records of a schema by column = field rules "
                   "or a condition; matched rows continue as those records, carrying their columns.")
    inputs = ("in",)
    outputs = ("out", "unmatched")
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "schema": {"type": "string", "description": "the schema to match; default: the campaign's dimension"},
            "rules": {"type": "array", "maxItems": 10, "items": {
                "type": "object", "additionalProperties": False, "required": ["column", "field"],
                "properties": {
                    "column": {"type": "string", "description": "a column of the population (or `key`)"},
                    "field": {"type": "string", "description": "a field of the schema (or `_key`)"},
                    "normalize": {"type": "array", "uniqueItems": True, "items": {"enum": list(NORMALISATIONS)},
                                  "description": "applied to both sides before comparing"},
                }}},
            "condition": {**FILTER_SCHEMA, "description": "a filter over the schema's fields and the population's "
                                                          "columns that a matching record must satisfy"},
            "unmatched": {"enum": ["output", "keep", "drop"], "default": "output",
                          "description": "rows that match no record: to `unmatched`, kept in `out`, or dropped"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        return ["out", "unmatched"] if config.get("unmatched", "output") == "output" else ["out"]

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        target = _target(config, ctx.dimension)
        if target not in ctx.schemas:
            return [ctx.problem(f"Unknown schema {target!r}.", "config.schema")]
        if not config.get("rules") and "condition" not in config:
            return [ctx.problem("Give at least one column = field rule, or a condition.", "config.rules")]
        shape = single_input(ctx)
        problems = needs_records(ctx, shape)
        if problems:
            return problems
        fields = {f.name: f for f in ctx.schemas[target].fields.all()}
        for index, rule in enumerate(config.get("rules", [])):
            path = f"config.rules.{index}"
            if rule["field"] not in fields and rule["field"] not in BUILTIN_FIELDS:
                problems.append(ctx.problem(f"Unknown field {rule['field']!r} of {target!r}.", f"{path}.field"))
            if shape is not None and rule["column"] != "key" and shape.column(rule["column"]) is None:
                names = ", ".join(c.name for c in shape.columns) or "none"
                problems.append(ctx.problem(f"The population has no column {rule['column']!r} (its columns: "
                                            f"{names}).", f"{path}.column"))
        if "condition" in config and shape is not None:
            problems += filter_problems(ctx, config["condition"], path="config.condition",
                                        shape=Shape(target, shape.columns))
        if shape is not None and config.get("unmatched") == "keep" and shape.column("matched"):
            problems.append(ctx.problem("The population already has a column `matched`, which \"keep\" adds.",
                                        "config.unmatched"))
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        shape = next((s for s in inputs if not s.is_token), Shape(None))
        columns = shape.columns + ((MATCHED,) if config.get("unmatched") == "keep" else ())
        shapes = {"out": Shape(_target(config, ctx.dimension), columns)}
        if config.get("unmatched", "output") == "output":
            shapes["unmatched"] = shape
        return shapes

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        target = _target(config, ctx.dimension)
        mode = config.get("unmatched", "output")
        keep = mode == "keep"
        match = self._match(ctx, config, population, target)
        rows = Compiled(source(population), [])
        columns = list(population.columns)
        # Every (record, row) pair that matches; a record keeps its first row in key order (line
        # order for a loaded file: shorter keys first, so "9" comes before "10").
        pairs = compose("SELECT r.key AS _record_key, p.* FROM {} JOIN schemas_record r ON {}", rows, match)
        chosen = [S("x._record_key"), *(S("x.{}").format(Id(c.name)) for c in columns)] + ([S("true")] if keep else [])
        best = compose("SELECT DISTINCT ON (x._record_key) {} FROM ({}) x ORDER BY x._record_key, length(x.key), x.key",
                       Compiled(S(", ").join(chosen), []), pairs)
        unmatched_where = compose("NOT EXISTS (SELECT 1 FROM schemas_record r WHERE {})", match)
        if keep:
            kept = compose("SELECT {} FROM {} WHERE {}", Compiled(S(", ").join(
                [self._kept_key(ctx, config, population, target), *carried(population), S("false")]), []),
                rows, unmatched_where)
            names = [Id(c.name) for c in [*columns, MATCHED]]
            statement = compose("SELECT DISTINCT ON (u._record_key) u.* FROM (({}) UNION ALL ({})) u (_record_key, {}) "
                                "ORDER BY u._record_key, u.matched DESC", best, kept,
                                Compiled(S(", ").join(names), []))
            out = ctx.store.create("out", statement.sql, statement.params, columns=[*columns, MATCHED],
                                   dimension=target)
        else:
            out = ctx.store.create("out", best.sql, best.params, columns=columns, dimension=target)
        outputs = {"out": out}
        unmatched = count(ctx, compose("SELECT count(*) FROM {} WHERE {}", rows, unmatched_where))
        if mode == "output":
            statement = compose("SELECT {} FROM {} WHERE {}",
                                Compiled(S(", ").join([S("p.key"), *carried(population)]), []), rows, unmatched_where)
            outputs["unmatched"] = ctx.store.create("unmatched", statement.sql, statement.params, columns=columns,
                                                    dimension=population.dimension)
        records = out.count
        if keep:
            records = count(ctx, Compiled(S("SELECT count(*) FROM {} WHERE matched").format(table_ident(out.table)),
                                          []))
        matched = population.count - unmatched
        ctx.log(f"{matched} of {population.count} rows matched records of {target!r}.", matched=matched,
                unmatched=unmatched)
        return Done(outputs, summary={"rows": population.count, "matched": matched, "unmatched": unmatched,
                                      "records": records})

    def _match(self, ctx: ExecutionContext, config: dict[str, Any], population: Population,
               target: str) -> Compiled:
        """The condition on `r` (a record) and `p` (a row) that they match."""
        schema = Catalog.load(ctx.tenant).resolve(target)
        columns = {c.name: c for c in population.columns}
        parts = [compose("r.tenant_id = {} AND r.schema_id = {}", Compiled(sql.Placeholder(), [ctx.tenant.pk]),
                         Compiled(sql.Placeholder(), [schema_id(ctx, target)]))]
        for rule in config.get("rules", []):
            field = schema.field_named(rule["field"])
            if field is None:
                raise NodeError(f"The field {rule['field']!r} of {target!r} no longer exists.")
            if rule["column"] not in columns and rule["column"] != "key":
                raise NodeError(f"The population has no column {rule['column']!r}.")
            record, row = _rule_expressions(rule, field, schema.primary_key, columns)
            parts.append(compose("{} = {}", record, row))
        if config.get("condition"):
            parts.append(condition(ctx, Population(table=None, dimension=target, columns=population.columns),
                                   config["condition"]))
        return Compiled(S(" AND ").join(S("({})").format(p.sql) for p in parts),
                        [v for p in parts for v in p.params])

    def _kept_key(self, ctx: ExecutionContext, config: dict[str, Any], population: Population,
                  target: str) -> sql.Composable:
        """The key an unmatched row keeps in `out`: the value of the column a rule matches with the
        schema's key (the key its record would have), else the row's own key."""
        schema = Catalog.load(ctx.tenant).resolve(target)
        columns = {c.name: c for c in population.columns}
        for rule in config.get("rules", []):
            field = schema.field_named(rule["field"])
            if field is not None and (field.name == schema.primary_key or field.column == "key"):
                _, row = _rule_expressions(rule, field, schema.primary_key, columns)
                return S("coalesce({}, p.key)").format(row)
        return S("p.key")
