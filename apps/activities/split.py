"""Split: ordered subsets of a population, each with a filter, an optional limit (a count or a
percentage) with an optional sort, "skip if empty"; exclusive by default (a record goes to the
first subset it matches) or overlapping; a complement; or every subset in one output carrying a
segment-code column.

Random sampling is sticky: a record's place is decided by a seeded hash of (campaign, activity,
record key) in [0, 1). A random percentage subset takes the records whose hash falls in its slice
of [0, 1) (slices follow each other in subset order), so the same profile lands in the same
subset on every run, whatever else the population holds; a random count takes the N smallest
hashes. A holdout group is a random percentage subset placed first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from apps.activities.base import (
    Activity,
    Column,
    Done,
    ExecutionContext,
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
    default_seed,
    field_problem,
    filter_problems,
    needs_records,
    records_of,
    single_input,
    source,
    sticky_hash,
    uses_record,
    value,
    with_records,
)
from apps.campaigns.populations import table_ident
from apps.schemas.query.compiler import Compiled, compose

CODE = "^[A-Za-z0-9_-]{1,40}$"
RESERVED_PORTS = {"complement", "out"}

SUBSET_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {
        "code": {"type": "string", "pattern": CODE, "description": "the output port and segment code"},
        "label": {"type": "string"},
        "filter": FILTER_SCHEMA,
        "limit": {
            "type": "object", "additionalProperties": False,
            "properties": {"count": {"type": "integer", "minimum": 0},
                           "percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}},
            "minProperties": 1, "maxProperties": 1,
        },
        "sort": {
            "type": "object", "additionalProperties": False, "required": ["by"],
            "properties": {"by": {"type": "string"}, "direction": {"enum": ["asc", "desc"], "default": "desc"}},
            "description": "with a limit: keep the top records by this field or column (default: random)",
        },
        "skip_if_empty": {"type": "boolean", "default": False},
    },
}


@dataclass
class _Subset:
    code: str
    filter: Any
    count: int | None
    percent: float | None
    sort: dict[str, Any] | None
    skip_if_empty: bool
    low: float = 0.0   # its slice of the sticky hash, for a random percentage
    high: float = 0.0

    @property
    def is_slice(self) -> bool:
        """A pure random percentage: membership is decided by the hash slice alone."""
        return self.percent is not None and self.sort is None and not self.filter


def _subsets(config: dict[str, Any]) -> list[_Subset]:
    raw = list(config.get("subsets", []))
    if config.get("holdout"):
        raw.insert(0, {"code": config["holdout"].get("code", "holdout"),
                       "limit": {"percent": config["holdout"]["percent"]}})
    subsets, cursor = [], 0.0
    for item in raw:
        limit = item.get("limit") or {}
        subset = _Subset(item["code"], item.get("filter") or None, limit.get("count"), limit.get("percent"),
                         item.get("sort"), bool(item.get("skip_if_empty")))
        if subset.percent is not None and subset.sort is None:
            subset.low, subset.high = cursor, cursor + subset.percent / 100
            cursor = subset.high
        subsets.append(subset)
    return subsets


@register
class Split(Activity):
    type = "split"
    label = "Split"
    group = "targeting"
    description = ("Divides the population into ordered subsets by filters, limits (count or %, random or top by a "
                   "field) and sticky random sampling; complement and holdout optional.")
    inputs = ("in",)
    max_inputs = 1
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["subsets"],
        "properties": {
            "subsets": {"type": "array", "items": SUBSET_SCHEMA},
            "holdout": {"type": "object", "additionalProperties": False, "required": ["percent"],
                        "properties": {"percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                                       "code": {"type": "string", "pattern": CODE, "default": "holdout"}},
                        "description": "a random percentage set aside first (sticky)"},
            "overlapping": {"type": "boolean", "default": False,
                            "description": "a record may go to several subsets (default: the first it matches)"},
            "complement": {"type": "boolean", "default": False, "description": "an output with the rest"},
            "single_output": {"type": "boolean", "default": False,
                              "description": "all subsets in one output `out` carrying a segment-code column"},
            "segment_column": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$", "default": "segment_code"},
            "seed": {"type": "string", "description": "random sampling seed (default: campaign and activity)"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        ports = ["out"] if config.get("single_output") else [s.code for s in _subsets(config)]
        return [*ports, "complement"] if config.get("complement") else ports

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = single_input(ctx)
        problems = needs_records(ctx, shape)
        subsets = _subsets(config)
        if not subsets:
            problems.append(ctx.problem("Add at least one subset.", "config.subsets"))
        offset = 1 if config.get("holdout") else 0
        seen: set[str] = set()
        for index, subset in enumerate(subsets):
            path = f"config.subsets[{index - offset}]" if index >= offset else "config.holdout"
            if subset.code in seen:
                problems.append(ctx.problem(f"Two subsets have the code {subset.code!r}.", f"{path}.code"))
            if subset.code in RESERVED_PORTS and not config.get("single_output"):
                problems.append(ctx.problem(f"{subset.code!r} is reserved; choose another code.", f"{path}.code"))
            seen.add(subset.code)
            if subset.filter:
                problems += filter_problems(ctx, subset.filter, path=f"{path}.filter", shape=shape)
            if subset.sort:
                problems += field_problem(ctx, shape, subset.sort["by"], f"{path}.sort.by")
                if subset.count is None and subset.percent is None:
                    problems.append(ctx.problem("A sort applies with a limit.", f"{path}.sort"))
        if subsets and subsets[-1].high > 1.0000001:
            problems.append(ctx.problem("The random percentages add up to more than 100.", "config.subsets"))
        if config.get("single_output") and shape is not None and shape.column(config.get("segment_column",
                                                                                           "segment_code")):
            problems.append(ctx.problem("The population already has a column of that name.",
                                        "config.segment_column"))
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        shape = next((s for s in inputs if not s.is_token), Shape(None))
        shapes = dict.fromkeys(self.output_ports(config), shape)
        if config.get("single_output"):
            shapes["out"] = Shape(shape.dimension, (*shape.columns, Column(_segment(config), "text")))
        return shapes

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        seed = config.get("seed") or default_seed(ctx)
        exclusive = not config.get("overlapping")
        single = bool(config.get("single_output"))
        subsets = _subsets(config)
        taken: list[tuple[_Subset, Population]] = []
        outputs: dict[str, Population] = {}
        summary: dict[str, Any] = {"in": population.count}
        hashes = _Hashes(ctx, population, seed, subsets, bool(config.get("complement")))
        for subset in subsets:
            port = f"subset {subset.code}" if single else subset.code
            earlier = taken if exclusive else []
            result = _select(ctx, port, hashes.population, subset, earlier, hashes)
            taken.append((subset, result))
            summary[subset.code] = result.count
            if result.count == 0 and subset.skip_if_empty:
                ctx.log(f"Subset {subset.code!r} is empty: its branch is skipped.")
                continue
            if not single:
                outputs[subset.code] = result
        if single:
            outputs["out"] = _segments(ctx, population, taken, _segment(config))
        if config.get("complement"):
            rest = _complement(ctx, hashes.population, taken, hashes)
            summary["complement"] = rest.count
            outputs["complement"] = rest
        hashes.drop()
        return Done(outputs, summary=summary)


HASH_COLUMN = "__sticky_hash"


class _Hashes:
    """The sticky hash of each row, read by the subsets' statements. When more than one statement
    reads it, the input is first copied with the hash computed once per row (an unlogged working
    table dropped at the end of the node), instead of computing md5 once or twice per row in each
    statement (4 subsets of 633k rows: 4.5 s of CPU, 1 s with the copy)."""

    def __init__(self, ctx: ExecutionContext, population: Population, seed: str, subsets: list[_Subset],
                 complement: bool) -> None:
        self.ctx = ctx
        self.seed = seed
        self.population = population
        self.staged = False
        # statements that read the hash: random slices, random counts, the complement after slices
        readers = sum(1 for s in subsets if s.low < s.high or (s.sort is None and s.count is not None))
        if complement and subsets and all(s.is_slice for s in subsets):
            readers += 1
        if readers < 2 or population.count == 0 or any(c.name == HASH_COLUMN for c in population.columns):
            return
        statement = compose("SELECT {}, {} FROM {}", sql.SQL(", ").join([sql.SQL("p.key"), *carried(population)]),
                            sticky_hash(seed, sql.SQL("p.key")), Compiled(source(population), []))
        staged = ctx.store.create("__sticky_hashes", statement.sql, statement.params,
                                  columns=[*population.columns, Column(HASH_COLUMN, "numeric")],
                                  dimension=population.dimension)
        # the subsets read the copy as the population, its hash column aside
        self.population = Population(table=staged.table, count=staged.count, dimension=population.dimension,
                                     columns=list(population.columns))
        self.staged = True

    def of(self, alias: str = "p") -> Compiled:
        """The sticky hash of the row aliased `alias`."""
        if self.staged:
            return Compiled(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(HASH_COLUMN)), [])
        return sticky_hash(self.seed, sql.SQL("{}.key").format(sql.Identifier(alias)))

    def drop(self) -> None:
        if self.staged:
            self.ctx.store.execute(sql.SQL("DROP TABLE {}").format(table_ident(self.population.table or "")))


def _segment(config: dict[str, Any]) -> str:
    return config.get("segment_column") or "segment_code"


def _not_in(tables: list[Population]) -> list[Compiled]:
    return [Compiled(sql.SQL("NOT EXISTS (SELECT 1 FROM {} t WHERE t.key = p.key)").format(table_ident(t.table or "")),
                     []) for t in tables]


def _select(ctx: ExecutionContext, port: str, population: Population, subset: _Subset,
            earlier: list[tuple[_Subset, Population]], hashes: _Hashes) -> Population:
    hashed = hashes.of()
    order, direction, reads = hashed, "ASC", False
    if subset.sort:
        expression, reads = value(ctx, population, subset.sort["by"])
        order = Compiled(expression, [])
        direction = "DESC" if subset.sort.get("direction", "desc") == "desc" else "ASC"
    reads = reads or uses_record(subset.filter, population.columns)
    from_clause = with_records(ctx, population) if reads else Compiled(source(population), [])
    tests = [condition(ctx, population, subset.filter, scoped=False)] if subset.filter else []
    # Earlier pure slices are disjoint from this subset's slice: no anti-join is needed for them.
    tests += _not_in([table for other, table in earlier if not (other.is_slice and subset.low < subset.high)])
    if subset.low < subset.high:
        tests.append(compose("{} >= {} AND {} < {}", hashed, Compiled(sql.Placeholder(), [subset.low]), hashed,
                             Compiled(sql.Placeholder(), [subset.high])))
    columns = sql.SQL(", ").join([sql.SQL("p.key"), *carried(population)])
    if subset.count is None and (subset.percent is None or subset.sort is None):
        statement = compose("SELECT {} FROM {} WHERE {}", columns, from_clause, _and(tests))
    else:
        limit = Compiled(sql.Placeholder(), [subset.count]) if subset.count is not None else compose(
            "(SELECT ceil(count(*) * {} / 100.0)::bigint FROM candidates)",
            Compiled(sql.Placeholder(), [subset.percent]))
        names = sql.SQL(", ").join([sql.Identifier("key"), *[sql.Identifier(c.name) for c in population.columns]])
        statement = compose("WITH candidates AS (SELECT {}, {} AS split_order FROM {} WHERE {}) "
                            "SELECT {} FROM candidates ORDER BY split_order " + direction + " NULLS LAST, key "
                            "LIMIT {}",
                            columns, order, from_clause, _and(tests), names, limit)
    return ctx.store.create(port, statement.sql, statement.params, columns=list(population.columns),
                            dimension=population.dimension)


def _and(tests: list[Compiled]) -> Compiled:
    if not tests:
        return Compiled(sql.SQL("TRUE"), [])
    return Compiled(sql.SQL(" AND ").join(t.sql for t in tests), [x for t in tests for x in t.params])


def _segments(ctx: ExecutionContext, population: Population, taken: list[tuple[_Subset, Population]],
              column: str) -> Population:
    """Every subset's rows in one table, each with its subset's code."""
    names = sql.SQL(", ").join([sql.Identifier("key"), *[sql.Identifier(c.name) for c in population.columns]])
    branches = [compose("SELECT {}, {}::text FROM {}", names, Compiled(sql.Placeholder(), [subset.code]),
                        Compiled(table_ident(table.table or ""), []))
                for subset, table in taken if not (table.count == 0 and subset.skip_if_empty)]
    if not branches:
        branches = [compose("SELECT {}, NULL::text FROM {} WHERE FALSE", names,
                            Compiled(table_ident(population.table or ""), []))]
    statement = Compiled(sql.SQL(" UNION ALL ").join(b.sql for b in branches), [x for b in branches for x in b.params])
    return ctx.store.create("out", statement.sql, statement.params,
                            columns=[*population.columns, Column(column, "text")], dimension=population.dimension)


def _complement(ctx: ExecutionContext, population: Population, taken: list[tuple[_Subset, Population]],
                hashes: _Hashes) -> Population:
    """The rows in no subset: past the last slice when every subset is a pure slice, else the
    rows no subset table holds."""
    if taken and all(subset.is_slice for subset, _ in taken):
        hashed = hashes.of()
        tests = [compose("{} >= {}", hashed, Compiled(sql.Placeholder(), [taken[-1][0].high]))]
    else:
        tests = _not_in([table for _, table in taken])
    statement = compose("SELECT {} FROM {} AS p WHERE {}", sql.SQL(", ").join([sql.SQL("p.key"), *carried(population)]),
                        Compiled(table_ident(population.table or ""), []), _and(tests))
    return ctx.store.create("complement", statement.sql, statement.params, columns=list(population.columns),
                            dimension=population.dimension)
