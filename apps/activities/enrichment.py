"""Enrichment: the population, row for row, with new columns, each under an alias that later
filters, splits and personalization name like a field.

A column comes from the population's dimension (a field of its record), from a link of that
schema (an attribute of the one record a many-to-one link reaches; an aggregate over the rows a
link reaches, narrowed by a filter; the last N of those rows by an order field, as N sets of
columns or one JSON list), from another inbound population joined on chosen keys (the same three
forms over its rows), or is a constant or an event variable.

Everything is ONE `CREATE TABLE … AS SELECT` over the population: its record is LEFT JOINed once; each
many-to-one link is joined once; the aggregates of each (link, filter) pair are one grouped
subquery joined once; collected rows are a LATERAL subquery. Nothing iterates records in Python.
Test mode changes nothing: the activity only writes its working table."""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import dataclass, field
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
    FIELD_TYPES,
    FILTER_SCHEMA,
    carried,
    column_fields,
    filter_problems,
    needs_records,
    source,
    uses_record,
)
from apps.campaigns.populations import table_ident
from apps.core.errors import NotFound
from apps.schemas.models import FieldType
from apps.schemas.query import FilterError, compile_filter
from apps.schemas.query.catalog import Catalog, LinkDef, SchemaDef
from apps.schemas.query.compiler import Compiled, compose, field_expression, link_join
from apps.schemas.types import InvalidValue, coerce, pg_type

# -- rules shared with Change dimension ---------------------------------------------------------

ALIAS = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_IDENTIFIER = 63
ALIAS_RULE = ("starts with a lower-case letter, then lower-case letters, digits or underscores (at most "
              f"{MAX_IDENTIFIER} characters), and is not `key`")
AGGREGATES = ("count", "sum", "min", "max", "avg")
NUMERIC = frozenset({FieldType.INTEGER, FieldType.DECIMAL})
ORDERED = NUMERIC | {FieldType.DATE, FieldType.DATETIME}
VALUE_TYPES = ("string", "integer", "decimal", "boolean", "date", "datetime", "json")
MAX_COLLECT = 20
# Up to this many rows, a population's aggregates group only the linked rows of its own records.
RESTRICT_BELOW = 50_000
# Planner settings of a statement whose aggregates group every linked row (`_Statement.planner_settings`).
BIG_AGGREGATE_PLANNER = {"enable_indexscan": "off", "parallel_leader_participation": "off"}


def alias_problem(ctx: ValidationContext, alias: Any, path: str, taken: set[str]) -> list[Problem]:
    """A problem if `alias` is not a valid new column name, or is already `taken` (the names are
    added to `taken`)."""
    if not isinstance(alias, str) or not ALIAS.match(alias) or len(alias) > MAX_IDENTIFIER or alias == "key":
        return [ctx.problem(f"Invalid alias {alias!r}: an alias {ALIAS_RULE}.", path)]
    if alias in taken:
        return [ctx.problem(f"The alias {alias!r} is used twice (or is already a column of the population).", path)]
    taken.add(alias)
    return []


def aggregate_type(aggregate: str, field_type: str | None) -> str | None:
    """The PostgreSQL type of `aggregate` over values of a filter-language `field_type`, or None
    if the aggregate does not apply to that type (sum/avg need numbers, min/max numbers or dates)."""
    if aggregate == "count":
        return "bigint"
    if aggregate in ("sum", "avg"):
        return "numeric" if field_type in NUMERIC else None
    return pg_type(field_type) if field_type in ORDERED else None


def aggregate_sql(aggregate: str, expression: sql.Composable) -> sql.Composable:
    """`count(*)`, `sum(x)`… (a sum of nothing is computed as NULL here; callers make it 0)."""
    if aggregate == "count":
        return sql.SQL("count(*)")
    return sql.SQL(aggregate + "({})").format(expression)


def zero_of(aggregate: str) -> bool:
    """Whether the aggregate of no row is 0 (count and sum, as in the filter language) rather
    than missing."""
    return aggregate in ("count", "sum")


def aggregate_problem(ctx: ValidationContext, aggregate: str, name: Any, field_type: str | None,
                      path: str) -> list[Problem]:
    if aggregate == "count":
        if name is not None:
            return [ctx.problem("count counts the rows and takes no field.", path)]
        return []
    if name is None:
        return [ctx.problem(f"{aggregate} needs a field.", path)]
    if field_type is not None and aggregate_type(aggregate, field_type) is None:
        wanted = "a number" if aggregate in ("sum", "avg") else "a number, a date or a date and time"
        return [ctx.problem(f"{aggregate} needs {wanted}; {name!r} is {field_type}.", path)]
    return []


def value_type_of(value: Any) -> str:
    """The value type of a constant given as JSON, when no `type` is said."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    return "json"


def bind_value(value_type: str, value: Any) -> Compiled:
    """A coerced value as a parameter cast to the column type of `value_type`."""
    cast = pg_type(value_type)
    if value is None:
        return Compiled(sql.SQL("NULL::" + cast), [])
    if value_type == "json":
        value = json.dumps(value)
    elif value_type == "decimal":
        value = decimal.Decimal(str(value))
    return Compiled(sql.SQL("{}::" + cast).format(sql.Placeholder()), [value])


def load_catalog(tenant: Any) -> Catalog:
    return Catalog.load(tenant)


def schema_of(catalog: Catalog, dimension: str | None) -> SchemaDef | None:
    if dimension is None:
        return None
    try:
        return catalog.resolve(dimension)
    except NotFound:
        return None


# -- config -------------------------------------------------------------------------------------

COLUMN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["alias"],
    "properties": {
        "alias": {"type": "string", "description": f"name of the new column: {ALIAS_RULE}"},
        "field": {"type": "string", "description": "a field of the dimension, or with `link` of the linked rows"},
        "link": {"type": "string", "description": "a link of the dimension's schema, or the name of a join"},
        "aggregate": {"enum": list(AGGREGATES), "description": "aggregate of the linked rows (with `field` "
                                                               "except for count)"},
        "where": {**FILTER_SCHEMA, "description": "only the linked rows that match (aggregate, collect)"},
        "collect": {"type": "integer", "minimum": 1, "maximum": MAX_COLLECT,
                    "description": "collect this many linked rows, ordered by `order_by`"},
        "order_by": {"type": "string", "description": "field of the linked rows that orders collected rows"},
        "direction": {"enum": ["desc", "asc"], "default": "desc",
                      "description": "desc: the last rows (largest values) first"},
        "fields": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string"},
                   "description": "fields of each collected row"},
        "as": {"enum": ["columns", "list"], "default": "columns",
               "description": "columns: <alias>_<n>_<field> for n = 1..collect; list: one JSON list of objects"},
        "constant": {"description": "a constant value"},
        "variable": {"type": "string", "description": "an event variable of the campaign"},
        "type": {"enum": list(VALUE_TYPES), "description": "type of a constant or variable column"},
    },
}

JOIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "input", "on"],
    "properties": {
        "name": {"type": "string", "description": "how columns name this join in `link`"},
        "input": {"type": "string", "description": "id of the node whose population arrives here to be joined"},
        "on": {"type": "array", "minItems": 1, "maxItems": 8, "items": {
            "type": "object", "additionalProperties": False, "required": ["field", "column"],
            "properties": {
                "field": {"type": "string", "description": "field or column of the population"},
                "column": {"type": "string", "description": "column (or `key`) of the joined population"},
            }}},
    },
}


# -- the plan: a config resolved against the data model -----------------------------------------

@dataclass
class Rows:
    """Where linked rows come from: records of a schema through a link of the dimension, or the
    rows of another inbound population (`input`, a node id) joined on key pairs."""

    name: str
    target: SchemaDef | None = None       # a schema link
    link: LinkDef | None = None
    input: str = ""                       # a joined population
    shape: Shape | None = None
    on: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_join(self) -> bool:
        return self.target is None

    def field_type(self, name: str) -> str | None:
        """The filter-language type of `name` in these rows, None if there is no such field."""
        if self.is_join:
            assert self.shape is not None
            if name == "key":
                return FieldType.STRING
            column = self.shape.column(name)
            return FIELD_TYPES.get(column.type, FieldType.STRING) if column else None
        assert self.target is not None
        found = self.target.field_named(name)
        return found.type if found else None

    def pg_type(self, name: str) -> str:
        if self.is_join:
            assert self.shape is not None
            column = self.shape.column(name)
            return column.type if column else "text"
        return pg_type(self.field_type(name) or FieldType.STRING)


@dataclass
class Planned:
    kind: str  # field | attribute | aggregate | collect | constant | variable
    alias: str
    columns: list[Column]
    config: dict[str, Any]
    rows: Rows | None = None
    value_type: str = "string"


LINKED_KEYS = {"field", "aggregate", "where", "collect", "order_by", "direction", "fields", "as"}
ALLOWED_KEYS = {"field": {"field"}, "constant": {"constant", "type"}, "variable": {"variable", "type"},
                "link": {"link", *LINKED_KEYS}}


class Planner:
    """Resolves a config against the catalog and what arrives: the new columns with their types,
    or problems with their paths. With `main` None (inputs not known at validation) only what
    does not depend on the populations is checked."""

    def __init__(self, ctx: ValidationContext, config: dict[str, Any], catalog: Catalog, main: Shape | None,
                 joined: dict[str, Shape], variable_types: dict[str, str]) -> None:
        self.ctx = ctx
        self.config = config
        self.catalog = catalog
        self.main = main
        self.schema = schema_of(catalog, main.dimension) if main is not None else None
        self.joined = joined
        self.variable_types = variable_types
        self.problems: list[Problem] = []
        self.joins: dict[str, Rows] = {}

    @property
    def known(self) -> bool:
        return self.main is not None

    def fail(self, message: str, path: str) -> None:
        self.problems.append(self.ctx.problem(message, path))

    def main_type(self, name: str) -> str | None:
        """The filter-language type of a column or field of the population (None: no such)."""
        assert self.main is not None
        column = self.main.column(name)
        if column is not None:
            return FIELD_TYPES.get(column.type, FieldType.STRING)
        found = self.schema.field_named(name) if self.schema is not None else None
        return found.type if found else None

    def main_pg_type(self, name: str) -> str:
        assert self.main is not None
        column = self.main.column(name)
        return column.type if column else pg_type(self.main_type(name) or FieldType.STRING)

    def unknown_main(self, name: str, path: str) -> bool:
        """Whether `name` is unknown in the population (a problem is recorded)."""
        if self.main is None or self.main_type(name) is not None:
            return False
        where = (f"a field of {self.schema.name!r}" if self.schema is not None
                 else f"a field (the dimension {self.main.dimension!r} is not a schema)")
        self.fail(f"Unknown field {name!r}: not {where} nor a column of the population.", path)
        return True

    # joins

    def plan_joins(self) -> None:
        sources = self.ctx.input_sources
        for index, join in enumerate(self.config.get("joins") or []):
            path = f"config.joins[{index}]"
            name = join["name"]
            if not ALIAS.match(name) or len(name) > MAX_IDENTIFIER:
                self.fail(f"Invalid join name {name!r}: a name {ALIAS_RULE}.", f"{path}.name")
                continue
            if name in self.joins:
                self.fail(f"Two joins are named {name!r}.", f"{path}.name")
                continue
            rows = Rows(name=name, input=join["input"], on=[(p["field"], p["column"]) for p in join["on"]])
            self.joins[name] = rows
            if not self.known:
                continue
            if self.schema is not None and name in self.schema.links:
                self.fail(f"{name!r} is already a link of {self.schema.name!r}: name the join otherwise.",
                          f"{path}.name")
            if join["input"] not in sources:
                self.fail(f"No transition from {join['input']!r} arrives here.", f"{path}.input")
                continue
            if sources.count(join["input"]) > 1:
                self.fail(f"Several transitions from {join['input']!r} arrive here: join one of them only.",
                          f"{path}.input")
                continue
            shape = rows.shape = self.joined[join["input"]]
            if shape.is_token:
                self.fail(f"Nothing but a token arrives from {join['input']!r}: join a population.", f"{path}.input")
                continue
            for pair, (own, other) in enumerate(rows.on):
                self.unknown_main(own, f"{path}.on[{pair}].field")
                if other != "key" and shape.column(other) is None:
                    names = ", ".join(["key", *(c.name for c in shape.columns)])
                    self.fail(f"The population from {join['input']!r} has no column {other!r} (columns: {names}).",
                              f"{path}.on[{pair}].column")
        if self.known:
            used = {j["input"] for j in self.config.get("joins") or []}
            unused = [s for s in sources if s not in used]
            if len(unused) > 1:
                self.fail(f"Several populations arrive (from {', '.join(unused)}): join the extra ones with `joins`, "
                          "or combine them first.", "config.joins")

    # columns

    def plan(self) -> list[Planned]:
        self.plan_joins()
        join_failed = bool(self.problems)
        taken = {c.name for c in self.main.columns} if self.main is not None else set()
        planned: list[Planned] = []
        for index, column in enumerate(self.config["columns"]):
            path = f"config.columns[{index}]"
            before = len(self.problems)
            self.problems += alias_problem(self.ctx, column["alias"], f"{path}.alias", taken)
            if len(self.problems) > before:
                continue
            if join_failed and column.get("link") in self.joins:
                continue  # the join's own problems say what is wrong
            item = self.column(column, path)
            if item is None:
                continue
            if item.kind == "collect" and item.columns[0].name != item.alias:
                for generated in item.columns:
                    self.problems += alias_problem(self.ctx, generated.name, f"{path}.alias", taken)
            planned.append(item)
        return planned

    def column(self, column: dict[str, Any], path: str) -> Planned | None:
        alias = column["alias"]
        kinds = [k for k in ("constant", "variable", "link") if k in column]
        if len(kinds) > 1:
            self.fail(f"A column is a field, a link, a constant or a variable, not both {kinds[0]} and {kinds[1]}.",
                      path)
            return None
        kind = kinds[0] if kinds else "field"
        extra = sorted(set(column) - ALLOWED_KEYS[kind] - {"alias"})
        if extra:
            what = "field" if kind == "field" else kind
            self.fail(f"{extra[0]!r} does not apply to a {what} column"
                      + (" (name a `link` for linked rows)." if extra[0] in LINKED_KEYS else "."), f"{path}.{extra[0]}")
            return None
        if kind == "constant":
            return self.constant(column, path)
        if kind == "variable":
            return self.variable(column, path)
        if kind == "link":
            return self.linked(column, path)
        if "field" not in column:
            self.fail("Say what the column holds: a field, a link, a constant or a variable.", path)
            return None
        if not self.known or self.unknown_main(column["field"], f"{path}.field"):
            return None
        return Planned("field", alias, [Column(alias, self.main_pg_type(column["field"]))], column)

    def constant(self, column: dict[str, Any], path: str) -> Planned | None:
        value = column["constant"]
        if value is None and "type" not in column:
            self.fail("A null constant needs a `type`.", f"{path}.type")
            return None
        value_type = column.get("type") or value_type_of(value)
        try:
            coerce(value_type, value)
        except InvalidValue as error:
            self.fail(f"The constant is not a valid {value_type}: {error}.", f"{path}.constant")
            return None
        return Planned("constant", column["alias"], [Column(column["alias"], pg_type(value_type))], column,
                       value_type=value_type)

    def variable(self, column: dict[str, Any], path: str) -> Planned | None:
        name = column["variable"]
        if name not in self.variable_types:
            self.fail(f"Unknown variable {name!r}: declare it in the campaign's variables.", f"{path}.variable")
            return None
        value_type = column.get("type") or self.variable_types[name]
        if value_type not in VALUE_TYPES:
            value_type = "string"
        return Planned("variable", column["alias"], [Column(column["alias"], pg_type(value_type))], column,
                       value_type=value_type)

    def rows(self, name: str, path: str) -> Rows | None:
        if name in self.joins:
            return self.joins[name]
        assert self.main is not None
        if self.schema is None:
            self.fail(f"Unknown link {name!r}: the population's dimension {self.main.dimension!r} is not a schema, "
                      "and no join has that name.", path)
            return None
        link = self.schema.links.get(name)
        if link is None:
            links = ", ".join(sorted(self.schema.links)) or "none"
            self.fail(f"Unknown link {name!r}: not a link of {self.schema.name!r} (its links: {links}) nor a join.",
                      path)
            return None
        target = self.catalog.schemas.get(link.target_id)
        if target is None:
            self.fail(f"The link {name!r} leads to a schema that no longer exists.", path)
            return None
        return Rows(name=name, target=target, link=link)

    def linked(self, column: dict[str, Any], path: str) -> Planned | None:
        alias = column["alias"]
        if "aggregate" in column and "collect" in column:
            self.fail("A linked column either aggregates or collects rows, not both.", f"{path}.collect")
            return None
        for key in ("order_by", "direction", "fields", "as"):
            if key in column and "collect" not in column:
                self.fail(f"{key!r} applies to collected rows (`collect`).", f"{path}.{key}")
                return None
        if "where" in column and "aggregate" not in column and "collect" not in column:
            self.fail("`where` narrows the rows of an aggregate or of collected rows.", f"{path}.where")
            return None
        if "collect" in column:
            if "order_by" not in column:
                self.fail("Collected rows need an `order_by` field (e.g. the purchase date).", f"{path}.order_by")
                return None
            if "fields" not in column:
                self.fail("Name the `fields` of each collected row.", f"{path}.fields")
                return None
            if len(set(column["fields"])) != len(column["fields"]):
                self.fail("A field is collected twice.", f"{path}.fields")
                return None
        elif "aggregate" not in column and "field" not in column:
            self.fail(f"Name the `field` of {column['link']!r} to read, or an `aggregate`, or `collect` rows.", path)
            return None
        if not self.known:
            return None
        rows = self.rows(column["link"], f"{path}.link")
        if rows is None or (rows.shape is None and rows.is_join):
            return None
        if "where" in column and not self.where_ok(rows, column["where"], f"{path}.where"):
            return None
        if "aggregate" in column:
            name = column.get("field")
            field_type = rows.field_type(name) if name is not None else None
            if name is not None and field_type is None:
                self.fail(self.unknown_field(rows, name), f"{path}.field")
                return None
            found = aggregate_problem(self.ctx, column["aggregate"], name, field_type, f"{path}.field")
            if found:
                self.problems += found
                return None
            return Planned("aggregate", alias, [Column(alias, aggregate_type(column["aggregate"], field_type) or "text")],
                           column, rows)
        if "collect" in column:
            return self.collect(column, rows, path)
        if rows.link is not None and rows.link.kind != "many_to_one":
            self.fail(f"{column['link']!r} is a one-to-many link: a row has several linked rows. Choose an "
                      f"aggregate ({', '.join(AGGREGATES)}) or collect them.", f"{path}.link")
            return None
        if rows.field_type(column["field"]) is None:
            self.fail(self.unknown_field(rows, column["field"]), f"{path}.field")
            return None
        return Planned("attribute", alias, [Column(alias, rows.pg_type(column["field"]))], column, rows)

    def collect(self, column: dict[str, Any], rows: Rows, path: str) -> Planned | None:
        alias = column["alias"]
        for index, name in enumerate([column["order_by"], *column["fields"]]):
            if rows.field_type(name) is None:
                self.fail(self.unknown_field(rows, name),
                          f"{path}.order_by" if index == 0 else f"{path}.fields[{index - 1}]")
                return None
        if rows.field_type(column["order_by"]) == FieldType.JSON:
            self.fail("Rows cannot be ordered by a JSON field.", f"{path}.order_by")
            return None
        if column.get("as", "columns") == "list":
            return Planned("collect", alias, [Column(alias, "jsonb")], column, rows)
        columns = [Column(f"{alias}_{n}_{name}", rows.pg_type(name))
                   for n in range(1, column["collect"] + 1) for name in column["fields"]]
        return Planned("collect", alias, columns, column, rows)

    def unknown_field(self, rows: Rows, name: str) -> str:
        if rows.is_join:
            assert rows.shape is not None
            names = ", ".join(["key", *(c.name for c in rows.shape.columns)])
            return f"The joined population {rows.name!r} has no column {name!r} (columns: {names})."
        assert rows.target is not None
        return f"Unknown field {name!r} of {rows.target.name!r} (through the link {rows.name!r})."

    def where_ok(self, rows: Rows, tree: Any, path: str) -> bool:
        if rows.is_join:
            assert rows.shape is not None
            if uses_record(tree, rows.shape.columns):
                self.fail(f"A filter on the joined population {rows.name!r} names its columns only.", path)
                return False
            found = filter_problems(self.ctx, tree, path=path, shape=Shape(self.filter_schema(rows.shape.dimension),
                                                                          rows.shape.columns))
        else:
            assert rows.target is not None
            found = filter_problems(self.ctx, tree, path=path, shape=Shape(rows.target.name))
        self.problems += found
        return not found

    def filter_schema(self, dimension: str | None) -> str:
        """A schema to compile a filter on a joined population's columns against (its own
        dimension if that is a schema: only its columns are named anyway)."""
        return dimension if schema_of(self.catalog, dimension) else self.ctx.dimension


def _variable_types(declarations: Any) -> dict[str, str]:
    """{name: value type} from the campaign's declarations (a list, or a dict by name)."""
    if isinstance(declarations, list):
        declarations = {d["name"]: d for d in declarations if isinstance(d, dict) and "name" in d}
    if not isinstance(declarations, dict):
        return {}
    return {name: (d or {}).get("type", "string") for name, d in declarations.items()}


def _split_inputs(config: dict[str, Any], sources: list[str], inputs: list[Any]) -> tuple[Any, dict[str, Any]]:
    """(the population, {source node: joined input}) among what arrives (shapes or populations)."""
    joined_ids = {j["input"] for j in config.get("joins") or []}
    main = next((item for name, item in zip(sources, inputs, strict=False) if name not in joined_ids), None)
    if not sources and inputs:
        main = inputs[0]
    joined = {name: item for name, item in zip(sources, inputs, strict=False) if name in joined_ids}
    return main, joined


@register
class Enrichment(Activity):
    type = "enrichment"
    label = "Enrichment"
    group = "targeting"
    description = ("Adds columns to the population: fields of its records, attributes of linked records, aggregates "
                   "(count, sum, min, max, avg) or the last N rows over one-to-many links or over another inbound "
                   "population joined on keys, constants and event variables. Each column gets an alias that "
                   "later filters, splits and personalization can use.")
    inputs = ("in",)
    outputs = ("out",)
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["columns"],
        "properties": {
            "columns": {"type": "array", "minItems": 1, "maxItems": 200, "items": COLUMN_SCHEMA},
            "joins": {"type": "array", "maxItems": 8, "items": JOIN_SCHEMA,
                      "description": "other inbound populations (e.g. a loaded file), joined on keys"},
        },
    }

    def _planner(self, config: dict[str, Any], ctx: ValidationContext, inputs: list[Shape] | None) -> Planner:
        main, joined = _split_inputs(config, ctx.input_sources, inputs) if inputs is not None else (None, {})
        if inputs is not None and main is None:
            main = Shape(None)
        return Planner(ctx, config, load_catalog(ctx.tenant), main, joined, _variable_types(ctx.variables))

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        if ctx.inputs is not None:
            main, _ = _split_inputs(config, ctx.input_sources, ctx.inputs)
            problems = needs_records(ctx, main if main is not None else Shape(None))
            if problems:
                return problems
        planner = self._planner(config, ctx, ctx.inputs)
        planner.plan()
        return planner.problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        planner = self._planner(config, ctx, inputs)
        new = [c for item in planner.plan() for c in item.columns]
        assert planner.main is not None
        return {"out": Shape(planner.main.dimension, (*planner.main.columns, *new))}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        main, joined = _split_inputs(config, ctx.input_sources, inputs)
        if main is None:
            ctx.log("The population to enrich did not arrive (its branch was skipped): nothing to enrich.")
            return Done({}, summary={"count": 0, "skipped": True})
        if main.is_token:
            raise NodeError("No population arrives here: put Enrichment after an activity that selects records.")
        for join in config.get("joins") or []:
            if join["input"] not in joined:
                raise NodeError(f"The population of {join['input']!r} to join as {join['name']!r} did not arrive "
                                "(its branch was skipped).")
        catalog = load_catalog(ctx.tenant)
        validation = ValidationContext(tenant=ctx.tenant, dimension=ctx.dimension, variables={}, schemas={},
                                       node_id=ctx.node_id, input_sources=list(ctx.input_sources))
        # a variable's type is its declaration's (a value the run has but no declaration says: its JSON type)
        variable_types = {name: value_type_of(value) for name, value in ctx.variables.items()}
        variable_types.update(_variable_types(getattr(ctx.campaign, "variables", None)))
        planner = Planner(validation, config, catalog, main.shape, {k: p.shape for k, p in joined.items()},
                          variable_types)
        planned = planner.plan()
        if planner.problems:  # the data model changed since the campaign was published
            problem = planner.problems[0]
            raise NodeError(f"{problem.message} ({problem.path})")
        builder = _Statement(ctx, main, joined, planner)
        statement = builder.build(planned)
        new = [c for item in planned for c in item.columns]
        population = ctx.store.create("out", statement.sql, statement.params, columns=[*main.columns, *new],
                                      dimension=main.dimension, planner=builder.planner_settings())
        return Done({"out": population}, summary={"count": population.count, "columns": [c.name for c in new]})


# -- SQL ----------------------------------------------------------------------------------------

def _ident(*names: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(n) for n in names)


def _raw(composable: sql.Composable) -> Compiled:
    return Compiled(composable, [])


def _join(separator: str, parts: list[Compiled]) -> Compiled:
    return Compiled(sql.SQL(separator).join(p.sql for p in parts), [v for p in parts for v in p.params])


@dataclass
class _Group:
    """The aggregates of one (link, filter): one grouped subquery joined once."""

    alias: str
    rows: Rows
    tree: Any
    aggregates: list[Compiled] = field(default_factory=list)
    arguments: list[sql.Composable] = field(default_factory=list)  # `<value> AS v<n>` of each linked row


class _Statement:
    """Builds the one `SELECT p.key, <carried columns>, <new columns> FROM p LEFT JOIN …`."""

    def __init__(self, ctx: ExecutionContext, main: Population, joined: dict[str, Population],
                 planner: Planner) -> None:
        self.ctx = ctx
        self.main = main
        self.schema = planner.schema
        self.planner = planner
        self.joined = joined
        self.needs_record = False
        self.froms: list[Compiled] = []
        self.counter = 0
        self.attributes: dict[str, str] = {}
        self.groups: dict[tuple[str, str], _Group] = {}
        self.lateral = False  # a LATERAL subquery per population row (it wants index scans)

    def planner_settings(self) -> dict[str, str] | None:
        """For a big population whose aggregates group every linked row of a schema (see
        `restriction`): no plain index scans, and parallel workers that only read the rows.

        PostgreSQL has no statistics for the expressions of the partial indexes a tenant's fields
        get (it ignores them for selectivity), so it takes a filter such as `within_last` on an
        indexed date as matching 0.5 % of the rows, and reads millions of linked rows through an
        index scan, visiting the heap pages in index order, each many times (21 s of CPU for 5M
        purchases). Without plain index scans it reads them with a bitmap heap scan: each page once
        in physical order, and the index condition is not evaluated again (4.6 s). With the leader
        out of the scan, two workers read and pass the rows while the leader aggregates them: the
        partial aggregates the leader would otherwise finalize are about a million groups, nearly
        as many rows as their input (measured on 5M purchases: 5.4 to 7.2 s against 7.5 to 8.7 s serial
        and 8.3 to 8.5 s with partial aggregates). Statements with a LATERAL subquery per row keep the
        planner's own choice (those subqueries want index scans)."""
        if self.lateral or self.main.count <= RESTRICT_BELOW:
            return None
        if not any(not group.rows.is_join for group in self.groups.values()):
            return None
        return dict(BIG_AGGREGATE_PLANNER)

    def next_alias(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def build(self, planned: list[Planned]) -> Compiled:
        values = [value for item in planned for value in self.column(item)]
        for group in self.groups.values():
            self.froms.append(self.grouped(group))
        froms = [_raw(source(self.main))]
        if self.needs_record:
            assert self.schema is not None
            froms.append(compose("LEFT JOIN schemas_record r ON {} AND r.key = p.key", self.scope("r", self.schema)))
        select = [_raw(_ident("p", "key")), *(_raw(c) for c in carried(self.main)), *values]
        return compose("SELECT {} FROM {}", _join(", ", select), _join(" ", froms + self.froms))

    # values of the population's own rows, and how linked rows meet them

    def own(self, name: str) -> tuple[sql.Composable, str]:
        """(expression, pg type) of a column or field of the population."""
        column = next((c for c in self.main.columns if c.name == name), None)
        if column is not None:
            return _ident("p", name), column.type
        assert self.schema is not None
        found = self.schema.field_named(name)
        assert found is not None
        if found.column == "key":
            return _ident("p", "key"), "text"
        self.needs_record = True
        return field_expression(found, "r"), pg_type(found.type)

    def scope(self, alias: str, schema: SchemaDef) -> Compiled:
        return compose("{}.tenant_id = {} AND {}.schema_id = {}", sql.Identifier(alias),
                       Compiled(sql.Placeholder(), [self.ctx.tenant.pk]), sql.Identifier(alias),
                       Compiled(sql.Placeholder(), [schema.id]))

    def pairs(self, rows: Rows, inner: str) -> list[tuple[sql.Composable, sql.Composable]]:
        """(population side, linked side) of each equality that links a row to linked rows
        aliased `inner`: a schema link's index-friendly sides, or a join's key pairs (compared as
        text when their types differ)."""
        if not rows.is_join:
            assert rows.link is not None and rows.target is not None and self.schema is not None
            outer = "p" if rows.link.source_field == self.schema.primary_key else "r"
            self.needs_record = self.needs_record or outer == "r"
            return [link_join(self.schema, outer, rows.link.source_field, rows.target, inner,
                              rows.link.target_field)]
        result = []
        for own_name, other in rows.on:
            own, own_type = self.own(own_name)
            theirs: sql.Composable = _ident(inner, other)
            if own_type != ("text" if other == "key" else rows.pg_type(other)):
                own, theirs = sql.SQL("({})::text").format(own), sql.SQL("({})::text").format(theirs)
            result.append((own, theirs))
        return result

    def relation(self, rows: Rows, inner: str) -> Compiled:
        """`schemas_record <inner>` or `campaign_work.<table> AS <inner>`, with the condition that
        scopes it (the tenant and schema of a link's target)."""
        if rows.is_join:
            table = self.joined[rows.input].table
            assert table is not None
            return compose("{} AS {}", table_ident(table), sql.Identifier(inner))
        return compose("schemas_record {}", sql.Identifier(inner))

    def scoped(self, rows: Rows, inner: str) -> Compiled:
        if rows.is_join:
            return _raw(sql.SQL("TRUE"))
        assert rows.target is not None
        return self.scope(inner, rows.target)

    def value(self, rows: Rows, name: str, alias: str) -> sql.Composable:
        """The typed value of `name` in linked rows aliased `alias`."""
        if rows.is_join:
            return _ident(alias, name)
        assert rows.target is not None
        found = rows.target.field_named(name)
        assert found is not None
        return field_expression(found, alias)

    def json_value(self, rows: Rows, name: str, alias: str) -> sql.Composable:
        """`name` as JSON: a record's stored value as it is (what the records API shows)."""
        if rows.is_join:
            return sql.SQL("to_jsonb({})").format(_ident(alias, name))
        assert rows.target is not None
        found = rows.target.field_named(name)
        assert found is not None
        if found.column is not None:
            return sql.SQL("to_jsonb({})").format(_ident(alias, found.column))
        return sql.SQL("({} -> {})").format(_ident(alias, "attributes"), sql.Literal(name))

    def where(self, rows: Rows, tree: Any, alias: str) -> Compiled:
        if not tree:
            return _raw(sql.SQL("TRUE"))
        try:
            if rows.is_join:
                population = self.joined[rows.input]
                return compile_filter(tenant=self.ctx.tenant, schema=self.planner.filter_schema(population.dimension),
                                      tree=tree, variables=self.ctx.variables, alias=alias, now=self.ctx.now,
                                      extra_fields=column_fields(population.columns, alias), scoped=False)
            assert rows.target is not None
            return compile_filter(tenant=self.ctx.tenant, schema=rows.target.name, tree=tree,
                                  variables=self.ctx.variables, alias=alias, now=self.ctx.now, scoped=False)
        except FilterError as error:
            raise NodeError(error.message) from None

    # the columns

    def column(self, item: Planned) -> list[Compiled]:
        config = item.config
        if item.kind == "constant":
            return [bind_value(item.value_type, coerce(item.value_type, config["constant"]))]
        if item.kind == "variable":
            try:
                value = coerce(item.value_type, self.ctx.variables.get(config["variable"]))
            except InvalidValue as error:
                raise NodeError(f"The variable {config['variable']!r} is not a valid {item.value_type}: "
                                f"{error}.") from None
            return [bind_value(item.value_type, value)]
        if item.kind == "field":
            return [_raw(self.own(config["field"])[0])]
        assert item.rows is not None
        if item.kind == "attribute":
            return [_raw(self.value(item.rows, config["field"], self.attribute_join(item.rows)))]
        if item.kind == "aggregate":
            return [self.aggregate(item, item.rows)]
        return self.collect(item, item.rows)

    def attribute_join(self, rows: Rows) -> str:
        """The alias of the one linked row of each population row, joined once per link or join.
        When several rows could match (a join, a link on a field that is not the target's key),
        the one with the smallest key is read."""
        if rows.name in self.attributes:
            return self.attributes[rows.name]
        alias = self.attributes[rows.name] = self.next_alias("m")
        if not rows.is_join:
            assert rows.target is not None and rows.link is not None
            if rows.link.target_field == rows.target.primary_key:
                ((outer, inner),) = self.pairs(rows, alias)
                self.froms.append(compose("LEFT JOIN schemas_record {} ON {} AND {} = {}", sql.Identifier(alias),
                                          self.scope(alias, rows.target), _raw(inner), _raw(outer)))
                return alias
            ((outer, inner),) = self.pairs(rows, "t")
            self.lateral = True
            self.froms.append(compose(
                "LEFT JOIN LATERAL (SELECT t.key, t.attributes, t.created_at, t.updated_at FROM schemas_record t "
                "WHERE {} AND {} = {} ORDER BY t.key COLLATE \"C\" LIMIT 1) {} ON TRUE",
                self.scope("t", rows.target), _raw(inner), _raw(outer), sql.Identifier(alias)))
            return alias
        population = self.joined[rows.input]
        pairs = self.pairs(rows, "q")
        names = [f"__on{i}" for i in range(len(pairs))]
        keys = [_raw(theirs) for _, theirs in pairs]
        self.froms.append(compose(
            "LEFT JOIN (SELECT DISTINCT ON ({}) {}, {} FROM {} WHERE {} ORDER BY {}, q.key COLLATE \"C\") {} ON {}",
            _join(", ", keys),
            _join(", ", [compose("{} AS {}", k, sql.Identifier(n)) for k, n in zip(keys, names, strict=True)]),
            _join(", ", [_raw(_ident("q", "key")), *(_raw(_ident("q", c.name)) for c in population.columns)]),
            self.relation(rows, "q"),
            _join(" AND ", [compose("{} IS NOT NULL", k) for k in keys]),
            _join(", ", keys), sql.Identifier(alias),
            _join(" AND ", [compose("{} = {}", _raw(_ident(alias, n)), _raw(own))
                            for (own, _), n in zip(pairs, names, strict=True)])))
        return alias

    def aggregate(self, item: Planned, rows: Rows) -> Compiled:
        """`g<n>.a<m>`: a slot of the grouped subquery of (link, filter), made on first use."""
        config = item.config
        key = (rows.name, json.dumps(config.get("where") or {}, sort_keys=True))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(self.next_alias("g"), rows, config.get("where"))
        slot = f"a{len(group.aggregates)}"
        expression: sql.Composable = sql.SQL("NULL")
        if config.get("field"):
            argument = f"v{len(group.arguments)}"
            group.arguments.append(sql.SQL("{} AS {}").format(self.value(rows, config["field"], "x"),
                                                              sql.Identifier(argument)))
            expression = sql.Identifier(argument)
        group.aggregates.append(compose("{} AS {}", _raw(aggregate_sql(config["aggregate"], expression)),
                                        sql.Identifier(slot)))
        value = _raw(_ident(group.alias, slot))
        return compose("COALESCE({}, 0)", value) if zero_of(config["aggregate"]) else value

    def grouped(self, group: _Group) -> Compiled:
        rows = group.rows
        pairs = self.pairs(rows, "x")
        names = [f"__on{i}" for i in range(len(pairs))]
        keys = [compose("{} AS {}", _raw(theirs), sql.Identifier(n)) for (_, theirs), n in zip(pairs, names,
                                                                                               strict=True)]
        # The linked rows' values are read in a subquery, grouped outside it. For a big population
        # it is kept apart (OFFSET 0): parallel workers then read the values and pass them on, not
        # whole records, to the leader that groups them (see `planner_settings`).
        # No `<link side> IS NOT NULL` test: rows without a link value form one group that the
        # equality below never joins, and the test would read every linked row's value once more.
        fence = " OFFSET 0" if self.planner_settings() is not None else ""
        linked = compose("SELECT {} FROM {} WHERE {} AND {} AND {}" + fence,
                         _join(", ", keys + [_raw(a) for a in group.arguments]), self.relation(rows, "x"),
                         self.scoped(rows, "x"), self.where(rows, group.tree, "x"), self.restriction(rows, pairs))
        return compose(
            "LEFT JOIN (SELECT {} FROM ({}) x GROUP BY {}) {} ON {}",
            _join(", ", [_raw(sql.Identifier(n)) for n in names] + group.aggregates), linked,
            _join(", ", [_raw(sql.SQL(str(i + 1))) for i in range(len(pairs))]), sql.Identifier(group.alias),
            _join(" AND ", [compose("{} = {}", _raw(_ident(group.alias, n)), _raw(own))
                            for (own, _), n in zip(pairs, names, strict=True)]))

    def restriction(self, rows: Rows, pairs: list[tuple[sql.Composable, sql.Composable]]) -> Compiled:
        """For a population much smaller than what a link may reach, only the linked rows of the
        population's records are grouped (`<link side> IN (SELECT <population side> FROM p)`, which
        the link's index can serve); a big population groups every linked row in one pass."""
        if rows.is_join or self.main.count > RESTRICT_BELOW:
            return _raw(sql.SQL("TRUE"))
        assert rows.link is not None and self.schema is not None
        ((own, theirs),) = pairs
        froms = [_raw(source(self.main))]
        if rows.link.source_field != self.schema.primary_key:
            froms.append(compose("JOIN schemas_record r ON {} AND r.key = p.key", self.scope("r", self.schema)))
        return compose("{} IN (SELECT {} FROM {})", _raw(theirs), _raw(own), _join(" ", froms))

    def collect(self, item: Planned, rows: Rows) -> list[Compiled]:
        """The last (or first) N linked rows by `order_by` (rows without a value come last; equal
        values are ordered by key), from one LATERAL subquery per population row."""
        config = item.config
        alias = self.next_alias("c")
        self.lateral = True
        direction = sql.SQL("DESC" if config.get("direction", "desc") == "desc" else "ASC")
        order = compose("{} {} NULLS LAST, y.key COLLATE \"C\" {}", _raw(self.value(rows, config["order_by"], "y")),
                        direction, direction)
        match = _join(" AND ", [compose("{} = {}", _raw(theirs), _raw(own)) for own, theirs in self.pairs(rows, "y")])
        fields = config["fields"]
        as_list = config.get("as", "columns") == "list"
        reader = self.json_value if as_list else self.value
        values = [compose("{} AS {}", _raw(reader(rows, name, "y")), sql.Identifier(f"v{i}"))
                  for i, name in enumerate(fields)]
        if as_list:
            pairs = [compose("{}, s.{}", _raw(sql.Literal(name)), sql.Identifier(f"v{i}"))
                     for i, name in enumerate(fields)]
            outer = compose("jsonb_agg(jsonb_build_object({}) ORDER BY s.__n) AS list", _join(", ", pairs))
        else:
            outer = _join(", ", [compose("array_agg(s.{} ORDER BY s.__n) AS {}", sql.Identifier(f"v{i}"),
                                         sql.Identifier(f"v{i}")) for i in range(len(fields))])
        self.froms.append(compose(
            "LEFT JOIN LATERAL (SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS __n FROM {} "
            "WHERE {} AND {} AND {} ORDER BY {} LIMIT {}) s) {} ON TRUE",
            outer, _join(", ", values), order, self.relation(rows, "y"), self.scoped(rows, "y"), match,
            self.where(rows, config.get("where"), "y"), order, Compiled(sql.Placeholder(), [int(config["collect"])]),
            sql.Identifier(alias)))
        if as_list:
            return [compose("COALESCE({}.list, '[]'::jsonb)", sql.Identifier(alias))]
        return [compose("({})[{}]", _raw(_ident(alias, f"v{i}")), _raw(sql.SQL(str(n))))
                for n in range(1, config["collect"] + 1) for i in range(len(fields))]
