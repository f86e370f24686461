"""Change dimension: move the population to another schema through a link of its own (purchases →
their profiles, profiles → their purchases). Each row becomes the record(s) its link reaches; a
row that reaches none drops out. When several rows reach the same record, one row per record is
kept: the first or the last by a field or column (carrying that row's columns), or only the
aggregates of the rows (count, sum, min, max, avg of their columns or fields), which the two
other rules can add too.

One `INSERT … SELECT`: the population joined to its records (when a field is needed) and to the
records of the target schema through the link's index-friendly join; `DISTINCT ON` with window
aggregates for first/last, `GROUP BY` for aggregates. Test mode changes nothing: the activity
only writes its working table."""

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
from apps.activities.enrichment import (
    AGGREGATES,
    aggregate_problem,
    aggregate_sql,
    aggregate_type,
    alias_problem,
    load_catalog,
    schema_of,
    zero_of,
)
from apps.activities.registry import register
from apps.activities.targeting import FIELD_TYPES, carried, needs_records, records_of, single_input, source
from apps.schemas.models import FieldType
from apps.schemas.query.catalog import Catalog, LinkDef, SchemaDef
from apps.schemas.query.compiler import Compiled, compose, field_expression, link_join
from apps.schemas.types import pg_type

KEEP_RULES = ("first", "last", "aggregate")


class _Plan:
    """A config resolved against the catalog and the arriving population: the link, the target
    schema and the output columns; or problems with their paths."""

    def __init__(self, ctx: ValidationContext, config: dict[str, Any], catalog: Catalog, shape: Shape) -> None:
        self.ctx = ctx
        self.config = config
        self.catalog = catalog
        self.shape = shape
        self.schema = schema_of(catalog, shape.dimension)
        self.problems: list[Problem] = []
        self.link: LinkDef | None = None
        self.target: SchemaDef | None = None
        self.columns: list[Column] = []
        self.resolve()

    def fail(self, message: str, path: str) -> None:
        self.problems.append(self.ctx.problem(message, path))

    def type_of(self, name: str) -> str | None:
        """The filter-language type of a column or field of the population (None: no such)."""
        column = self.shape.column(name)
        if column is not None:
            return FIELD_TYPES.get(column.type, FieldType.STRING)
        found = self.schema.field_named(name) if self.schema is not None else None
        return found.type if found else None

    def pg_type_of(self, name: str) -> str:
        column = self.shape.column(name)
        return column.type if column else pg_type(self.type_of(name) or FieldType.STRING)

    def unknown(self, name: str, path: str) -> bool:
        if self.type_of(name) is not None:
            return False
        assert self.schema is not None
        self.fail(f"Unknown field {name!r}: not a field of {self.schema.name!r} nor a column of the population.",
                  path)
        return True

    def resolve(self) -> None:
        config = self.config
        if self.schema is None:
            self.fail(f"The population holds rows of {self.shape.dimension!r}, which is not a schema with links: "
                      "reconcile it with records first.", "config")
            return
        self.resolve_link()
        keep = config.get("keep", "first")
        if "order_by" in config:
            if keep == "aggregate":
                self.fail("`order_by` chooses the first or last row; with keep = aggregate no row is kept.",
                          "config.order_by")
            elif not self.unknown(config["order_by"], "config.order_by") and \
                    self.type_of(config["order_by"]) == FieldType.JSON:
                self.fail("Rows cannot be ordered by a JSON field.", "config.order_by")
        carried_columns = list(self.shape.columns) if keep != "aggregate" else []
        taken = {c.name for c in carried_columns}
        new: list[Column] = []
        for index, item in enumerate(config.get("aggregates") or []):
            path = f"config.aggregates[{index}]"
            found = alias_problem(self.ctx, item["alias"], f"{path}.alias", taken)
            name = item.get("field")
            if not found and name is not None and self.unknown(name, f"{path}.field"):
                continue
            field_type = self.type_of(name) if name is not None else None
            found += aggregate_problem(self.ctx, item["aggregate"], name, field_type, f"{path}.field")
            self.problems += found
            if not found:
                new.append(Column(item["alias"], aggregate_type(item["aggregate"], field_type) or "text"))
        if keep == "aggregate" and not config.get("aggregates"):
            self.fail("keep = aggregate keeps one row per record with its aggregates: list them in `aggregates` "
                      "(e.g. a count).", "config.aggregates")
        self.columns = carried_columns + new

    def resolve_link(self) -> None:
        assert self.schema is not None
        config = self.config
        wanted = config.get("dimension")
        links = ", ".join(sorted(self.schema.links)) or "none"
        if "link" in config:
            self.link = self.schema.links.get(config["link"])
            if self.link is None:
                self.fail(f"Unknown link {config['link']!r}: not a link of {self.schema.name!r} (its links: {links}).",
                          "config.link")
                return
        else:
            if wanted is None:
                self.fail("Name the `link` to follow (or the target `dimension`).", "config.link")
                return
            targets = {link.name: self.catalog.schemas.get(link.target_id) for link in self.schema.links.values()}
            candidates = [link for link in self.schema.links.values()
                          if (targets[link.name] is not None and targets[link.name].name == wanted)]
            if len(candidates) != 1:
                self.fail(f"{'No' if not candidates else 'More than one'} link of {self.schema.name!r} leads to "
                          f"{wanted!r}: name the `link` (links: {links}).", "config.link")
                return
            self.link = candidates[0]
        self.target = self.catalog.schemas.get(self.link.target_id)
        if self.target is None:
            self.fail(f"The link {self.link.name!r} leads to a schema that no longer exists.", "config.link")
        elif wanted is not None and self.target.name != wanted:
            self.fail(f"The link {self.link.name!r} leads to {self.target.name!r}, not to {wanted!r}.",
                      "config.dimension")


def _plan(config: dict[str, Any], ctx: ValidationContext, shape: Shape) -> _Plan:
    return _Plan(ctx, config, load_catalog(ctx.tenant), shape)


@register
class ChangeDimension(Activity):
    type = "change_dimension"
    label = "Change dimension"
    group = "targeting"
    description = ("Moves the population to another schema through a link (e.g. purchases → their profiles). When "
                   "several rows lead to the same record, keeps the first or last by a field, or aggregates them.")
    inputs = ("in",)
    outputs = ("out",)
    max_inputs = 1
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "link": {"type": "string", "description": "the link of the population's schema to follow"},
            "dimension": {"type": "string", "description": "the target schema (enough when one link leads there)"},
            "keep": {"enum": list(KEEP_RULES), "default": "first",
                     "description": "when several rows lead to one record: keep the first or the last row by "
                                    "`order_by` (with its columns), or only `aggregates` of the rows"},
            "order_by": {"type": "string", "description": "field or column that orders the rows (default: their "
                                                          "key); rows without a value come last"},
            "aggregates": {"type": "array", "maxItems": 100, "items": {
                "type": "object", "additionalProperties": False, "required": ["alias", "aggregate"],
                "properties": {
                    "alias": {"type": "string", "description": "name of the new column"},
                    "aggregate": {"enum": list(AGGREGATES)},
                    "field": {"type": "string", "description": "field or column of the rows (not for count)"},
                }}},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = single_input(ctx)
        problems = needs_records(ctx, shape)
        if problems or shape is None:
            return problems
        return _plan(config, ctx, shape).problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        shape = next((s for s in inputs if not s.is_token), None)
        if shape is None:
            return {"out": Shape(None)}
        plan = _plan(config, ctx, shape)
        assert plan.target is not None
        return {"out": Shape(plan.target.name, tuple(plan.columns))}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        validation = ValidationContext(tenant=ctx.tenant, dimension=ctx.dimension, variables={}, schemas={},
                                       node_id=ctx.node_id)
        plan = _plan(config, validation, population.shape)
        if plan.problems:  # the data model changed since the campaign was published
            raise NodeError(f"{plan.problems[0].message} ({plan.problems[0].path})")
        statement = _statement(ctx, config, population, plan)
        assert plan.target is not None
        out = ctx.store.create("out", statement.sql, statement.params, columns=plan.columns,
                               dimension=plan.target.name)
        return Done({"out": out}, summary={"count": out.count, "rows_in": population.count,
                                           "dimension": plan.target.name, "link": plan.link.name if plan.link else ""})


def _statement(ctx: ExecutionContext, config: dict[str, Any], population: Population, plan: _Plan) -> Compiled:
    schema, target, link = plan.schema, plan.target, plan.link
    assert schema is not None and target is not None and link is not None
    needs_record = link.source_field != schema.primary_key

    def value(name: str) -> sql.Composable:
        nonlocal needs_record
        if population.shape.column(name) is not None:
            return sql.SQL("p.{}").format(sql.Identifier(name))
        found = schema.field_named(name)
        assert found is not None
        if found.column == "key":
            return sql.SQL("p.key")
        needs_record = True
        return field_expression(found, "r")

    def scope(alias: str, of: SchemaDef) -> Compiled:
        return compose("{}.tenant_id = {} AND {}.schema_id = {}", sql.Identifier(alias),
                       Compiled(sql.Placeholder(), [ctx.tenant.pk]), sql.Identifier(alias),
                       Compiled(sql.Placeholder(), [of.id]))

    outer, inner = link_join(schema, "r" if needs_record else "p", link.source_field, target, "d", link.target_field)
    keep = config.get("keep", "first")
    window = keep != "aggregate"
    aggregates: list[Compiled] = []
    for item in config.get("aggregates") or []:
        expression = aggregate_sql(item["aggregate"], value(item["field"]) if item.get("field") else sql.SQL("NULL"))
        if window:
            expression = sql.SQL("{} OVER (PARTITION BY d.key)").format(expression)
        if zero_of(item["aggregate"]):
            expression = sql.SQL("COALESCE({}, 0)").format(expression)
        aggregates.append(Compiled(expression, []))
    order: sql.Composable | None = None
    if window:
        direction = sql.SQL("DESC" if keep == "last" else "ASC")
        by = value(config["order_by"]) if "order_by" in config else None
        order = sql.SQL("d.key, ") + (sql.SQL("{} {} NULLS LAST, ").format(by, direction) if by is not None
                                      else sql.SQL("")) + sql.SQL("p.key COLLATE \"C\" {}").format(direction)
    froms = [Compiled(source(population), [])]
    if needs_record:
        froms.append(compose("LEFT JOIN schemas_record r ON {} AND r.key = p.key", scope("r", schema)))
    froms.append(compose("JOIN schemas_record d ON {} AND {} = {}", scope("d", target), Compiled(inner, []),
                         Compiled(outer, [])))
    select = [Compiled(sql.SQL("d.key"), []), *(Compiled(c, []) for c in (carried(population) if window else [])),
              *aggregates]
    columns = Compiled(sql.SQL(", ").join(part.sql for part in select), [v for part in select for v in part.params])
    body = Compiled(sql.SQL(" ").join(part.sql for part in froms), [v for part in froms for v in part.params])
    if window:
        assert order is not None
        return compose("SELECT DISTINCT ON (d.key) {} FROM {} ORDER BY {}", columns, body, order)
    return compose("SELECT {} FROM {} GROUP BY d.key", columns, body)
