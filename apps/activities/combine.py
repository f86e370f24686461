"""Combine: union, intersection or exclusion of 2..N populations of one dimension, reconciled on
record keys or on chosen fields/columns; each output is one INSERT … SELECT built from hashed
semi- and anti-joins (`EXISTS` / `NOT EXISTS`), the plans plain SQL would use."""

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
from apps.activities.targeting import carried, field_problem, source, value, with_records
from apps.schemas.query.compiler import Compiled, compose

OPERATIONS = ("union", "intersection", "exclusion")


def common_columns(shapes: list[Shape] | list[Population]) -> list[Column]:
    """Columns every input carries with the same type, in the first input's order (a union keeps
    only those: the others would be empty for some rows)."""
    first, *others = [list(s.columns) for s in shapes]
    return [c for c in first if all(c in o for o in others)]


def _ordered(items: list[Any], sources: list[str], primary: str | None) -> list[Any]:
    """`items` with the primary input's first (exclusion subtracts the others from it)."""
    if primary is None or primary not in sources:
        return items
    index = sources.index(primary)
    return [items[index], *items[:index], *items[index + 1:]]


@register
class Combine(Activity):
    type = "combine"
    label = "Combine"
    group = "targeting"
    description = ("Union, intersection or exclusion (a primary input minus the others) of populations of the "
                   "same dimension, matched on record keys or on chosen fields; optional complement.")
    inputs = ("in",)
    min_inputs = 2
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["operation"],
        "properties": {
            "operation": {"enum": list(OPERATIONS)},
            "primary": {"type": "string", "description": "exclusion: id of the activity whose population is kept "
                                                         "minus the others; default: the first input"},
            "match_on": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"},
                         "description": "fields or columns that identify the same record across inputs; default: "
                                        "the record key"},
            "complement": {"type": "boolean", "default": False,
                           "description": "intersection: the rows not in every input; exclusion: the primary's rows "
                                          "that were removed"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        if config.get("complement") and config.get("operation") in ("intersection", "exclusion"):
            return ["out", "complement"]
        return ["out"]

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        problems: list[Problem] = []
        if config.get("complement") and config["operation"] == "union":
            problems.append(ctx.problem("A union has no complement.", "config.complement"))
        if "primary" in config and config["operation"] != "exclusion":
            problems.append(ctx.problem("`primary` applies to an exclusion only.", "config.primary"))
        if "primary" in config and config["primary"] not in ctx.input_sources:
            problems.append(ctx.problem(f"{config['primary']!r} is not an input of this activity.", "config.primary"))
        if ctx.inputs is None:
            return problems
        tokens = [source for source, s in zip(ctx.input_sources, ctx.inputs, strict=False) if s.is_token]
        if tokens:
            return [*problems, ctx.problem(f"Every input must carry a population; {', '.join(tokens)} does not.")]
        dimensions = {s.dimension for s in ctx.inputs}
        if len(dimensions) > 1:
            found = ", ".join(f"{s.dimension!r} from {src}" for src, s in zip(ctx.input_sources, ctx.inputs,
                                                                               strict=False))
            return [*problems, ctx.problem(f"Inputs must have the same dimension; found {found}. Use Change "
                                           "dimension first.")]
        for index, name in enumerate(config.get("match_on", [])):
            for shape in ctx.inputs:
                found_problems = field_problem(ctx, shape, name, f"config.match_on[{index}]")
                if found_problems:
                    problems += found_problems
                    break
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        ordered = _ordered(inputs, ctx.input_sources, config.get("primary"))
        if config["operation"] == "union":
            shape = Shape(ordered[0].dimension, tuple(common_columns(ordered)))
        else:
            shape = ordered[0]
        shapes = {"out": shape}
        if "complement" in self.output_ports(config):
            complement = shape if config["operation"] == "exclusion" else Shape(shape.dimension,
                                                                                 tuple(common_columns(ordered)))
            shapes["complement"] = complement
        return shapes

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        populations = [p for p in inputs if not p.is_token]
        sources = [s for s, p in zip(ctx.input_sources, inputs, strict=False) if not p.is_token]
        if len({p.dimension for p in populations}) > 1:
            raise NodeError("Inputs have different dimensions: "
                            + ", ".join(f"{p.dimension!r} from {s}" for s, p in zip(sources, populations, strict=False)))
        operation = config["operation"]
        primary = config.get("primary")
        if operation == "exclusion" and primary is not None and primary not in sources:
            ctx.log(f"The primary input {primary!r} was skipped: nothing to keep.")
            return self._done(config, {"out": None})
        populations = _ordered(populations, sources, primary)
        if not populations:
            return self._done(config, {"out": None})
        matcher = _Matcher(ctx, config.get("match_on"))
        outputs: dict[str, Population | None] = {}
        if operation == "union":
            outputs["out"] = _union(ctx, "out", populations, matcher)
        elif operation == "intersection":
            outputs["out"] = _create(ctx, "out", populations[0], populations[0].columns,
                                     [matcher.exists(populations[0], other) for other in populations[1:]], " AND ",
                                     matcher)
            if config.get("complement"):
                result = outputs["out"]
                assert result is not None
                outputs["complement"] = _union(ctx, "complement", populations, matcher, minus=result)
        else:
            head, others = populations[0], populations[1:]
            tests = [matcher.exists(head, other) for other in others]
            outputs["out"] = _create(ctx, "out", head, head.columns,
                                     [compose("NOT {}", t) for t in tests] or [Compiled(sql.SQL("TRUE"), [])],
                                     " AND ", matcher)
            if config.get("complement"):
                outputs["complement"] = _create(ctx, "complement", head, head.columns,
                                                tests or [Compiled(sql.SQL("FALSE"), [])], " OR ", matcher)
        return self._done(config, outputs)

    def _done(self, config: dict[str, Any], outputs: dict[str, Population | None]) -> Done:
        ready = {port: p for port, p in outputs.items() if p is not None}
        return Done(ready, summary={port: p.count for port, p in ready.items()})


class _Matcher:
    """How two populations' rows are the same record: equal keys, or equal values of the
    `match_on` fields (read from a column of the population, else from the record)."""

    def __init__(self, ctx: ExecutionContext, match_on: list[str] | None) -> None:
        self.ctx = ctx
        self.match_on = match_on or []
        self.depth = 0

    def _alias(self) -> str:
        self.depth += 1
        return f"c{self.depth}"

    def rows(self, population: Population, alias: str) -> tuple[Compiled, list[sql.Composable]]:
        """(FROM clause aliased `alias`, the match expressions over it)."""
        if not self.match_on:
            return Compiled(source(population, table=alias), []), [sql.SQL("{}.key").format(sql.Identifier(alias))]
        record = f"{alias}r"
        expressions, needs_record = [], False
        for name in self.match_on:
            expression, reads_record = value(self.ctx, population, name, table=alias, record=record)
            expressions.append(expression)
            needs_record = needs_record or reads_record
        if needs_record:
            return with_records(self.ctx, population, table=alias, record=record), expressions
        return Compiled(source(population, table=alias), []), expressions

    def exists(self, outer: Population, other: Population, *, outer_alias: str = "p") -> Compiled:
        """`EXISTS (a row of `other` matching the outer row `p`)`."""
        _, outer_values = self.rows(outer, outer_alias)
        alias = self._alias()
        from_other, other_values = self.rows(other, alias)
        equal = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(a, b) for a, b in zip(other_values, outer_values,
                                                                                       strict=True))
        return compose("EXISTS (SELECT 1 FROM {} WHERE {})", from_other, Compiled(equal, []))

    def outer(self, population: Population) -> Compiled:
        """The FROM clause of the outer row `p` (joined to its record when a match reads it)."""
        from_clause, _ = self.rows(population, "p")
        return from_clause


def _create(ctx: ExecutionContext, port: str, population: Population, columns: list[Column],
            tests: list[Compiled], joiner: str, matcher: _Matcher) -> Population:
    """Rows of `population` (as `p`) satisfying the `tests` joined by `joiner`."""
    select = sql.SQL(", ").join([sql.SQL("p.key"), *_columns(population, columns)])
    where = Compiled(sql.SQL(joiner).join(t.sql for t in tests), [x for t in tests for x in t.params])
    statement = compose("SELECT {} FROM {} WHERE {}", select, matcher.outer(population), where)
    return ctx.store.create(port, statement.sql, statement.params, columns=list(columns),
                            dimension=population.dimension)


def _columns(population: Population, columns: list[Column]) -> list[sql.Composable]:
    wanted = {c.name for c in columns}
    return [expression for c, expression in zip(population.columns, carried(population), strict=True)
            if c.name in wanted]


def _union(ctx: ExecutionContext, port: str, populations: list[Population], matcher: _Matcher,
           minus: Population | None = None) -> Population:
    """Each input's rows that match no row of an earlier input (nor of `minus`), appended in input
    order: one statement of UNION ALL branches with anti-joins, the first input's row wins."""
    columns = common_columns(populations)
    branches: list[Compiled] = []
    for index, population in enumerate(populations):
        earlier = populations[:index] + ([minus] if minus is not None else [])
        tests = [compose("NOT {}", matcher.exists(population, other)) for other in earlier]
        where = Compiled(sql.SQL(" AND ").join(t.sql for t in tests), [x for t in tests for x in t.params]) \
            if tests else Compiled(sql.SQL("TRUE"), [])
        select = sql.SQL(", ").join([sql.SQL("p.key"), *_columns(population, columns)])
        branches.append(compose("SELECT {} FROM {} WHERE {}", select, matcher.outer(population), where))
    statement = Compiled(sql.SQL(" UNION ALL ").join(b.sql for b in branches), [x for b in branches for x in b.params])
    return ctx.store.create(port, statement.sql, statement.params, columns=columns,
                            dimension=populations[0].dimension)
