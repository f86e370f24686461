"""Deduplication: rows that share the values of an ordered list of fields are duplicates; keep
the first N of each group by a chosen rule (sticky random, smallest/largest value, non-empty
values first, a priority list of values), optionally sending the others to a complement. One
window-function pass (`row_number() OVER (PARTITION BY …)`) per output."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    Population,
    Problem,
    Shape,
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import (
    carried,
    default_seed,
    field_problem,
    needs_records,
    records_of,
    single_input,
    source,
    sticky_hash,
    value,
    value_type,
    with_records,
)
from apps.schemas.query.compiler import Compiled, compose

KEEP_RULES = ("random", "smallest", "largest", "non_empty", "priority")


@register
class Deduplication(Activity):
    type = "dedup"
    label = "Deduplication"
    group = "targeting"
    description = ("Removes duplicates: rows sharing the values of the chosen fields (e.g. email); keeps N per group "
                   "by a rule; the removed rows can go to a complement.")
    inputs = ("in",)
    max_inputs = 1
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["fields"],
        "properties": {
            "fields": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"},
                       "description": "fields or columns whose equal values make duplicates, in order"},
            "ignore_case": {"type": "boolean", "default": False,
                            "description": "compare text values trimmed and lower-cased (e.g. emails)"},
            "keep": {"type": "integer", "minimum": 1, "default": 1, "description": "rows kept per group"},
            "rule": {"enum": list(KEEP_RULES), "default": "random",
                     "description": "which rows to keep: random (reproducible), smallest or largest value of "
                                    "`by`, non-empty values of `by` first, or the order of `values` of `by`"},
            "by": {"type": "string", "description": "the field or column the rule reads"},
            "values": {"type": "array", "items": {"type": ["string", "number", "boolean"]},
                       "description": "priority rule: values of `by` in order of preference"},
            "seed": {"type": "string", "description": "random rule: seed (default: campaign and activity)"},
            "complement": {"type": "boolean", "default": False, "description": "an output with the removed rows"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        return ["out", "complement"] if config.get("complement") else ["out"]

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = single_input(ctx)
        problems = needs_records(ctx, shape)
        for index, name in enumerate(config["fields"]):
            problems += field_problem(ctx, shape, name, f"config.fields[{index}]")
        rule = config.get("rule", "random")
        if rule != "random" and "by" not in config:
            problems.append(ctx.problem(f"The rule {rule!r} needs `by`: the field it reads.", "config.by"))
        if "by" in config:
            problems += field_problem(ctx, shape, config["by"], "config.by")
        if rule == "priority" and not config.get("values"):
            problems.append(ctx.problem("The priority rule needs `values`, in order of preference.", "config.values"))
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        shape = next((s for s in inputs if not s.is_token), Shape(None))
        return dict.fromkeys(self.output_ports(config), shape)

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        reads_record = False
        groups: list[sql.Composable] = []
        for name in config["fields"]:
            expression, reads = value(ctx, population, name)
            reads_record = reads_record or reads
            if config.get("ignore_case") and value_type(ctx, population, name) == "text":
                expression = sql.SQL("lower(btrim({}))").format(expression)
            groups.append(expression)
        order, reads = _order(ctx, population, config)
        reads_record = reads_record or reads
        from_clause = with_records(ctx, population) if reads_record else Compiled(source(population), [])
        # Rows whose fields are all empty are not duplicates of each other: each is its own group.
        all_empty = sql.SQL(" AND ").join(sql.SQL("{} IS NULL").format(g) for g in groups)
        partition = sql.SQL(", ").join([*groups, sql.SQL("CASE WHEN {} THEN p.key END").format(all_empty)])
        ranked = compose("SELECT {}, row_number() OVER (PARTITION BY {} ORDER BY {}) AS dedup_rank FROM {}",
                         sql.SQL(", ").join([sql.SQL("p.key"), *carried(population)]), partition, order, from_clause)
        names = sql.SQL(", ").join([sql.Identifier("key"), *[sql.Identifier(c.name) for c in population.columns]])
        keep = int(config.get("keep", 1))
        outputs = {}
        for port, test in (("out", "<="), ("complement", ">")):
            if port not in self.output_ports(config):
                continue
            statement = compose("SELECT {} FROM ({}) ranked WHERE dedup_rank " + test + " {}", names, ranked,
                                Compiled(sql.Placeholder(), [keep]))
            outputs[port] = ctx.store.create(port, statement.sql, statement.params, columns=list(population.columns),
                                             dimension=population.dimension)
        removed = population.count - outputs["out"].count
        ctx.log(f"{removed} duplicate(s) removed, {outputs['out'].count} kept.", removed=removed)
        return Done(outputs, summary={"in": population.count, "kept": outputs["out"].count, "removed": removed})


def _order(ctx: ExecutionContext, population: Population, config: dict[str, Any]) -> tuple[Compiled, bool]:
    """The ORDER BY of a group (rows kept first) and whether it reads the record; ties are broken
    by the sticky hash, then the key, so the result is reproducible."""
    seed = config.get("seed") or default_seed(ctx)
    tie = compose("{}, p.key", sticky_hash(seed, sql.SQL("p.key")))
    rule = config.get("rule", "random")
    if rule == "random":
        return tie, False
    expression, reads = value(ctx, population, config["by"])
    if rule == "smallest":
        return compose("{} ASC NULLS LAST, {}", expression, tie), reads
    if rule == "largest":
        return compose("{} DESC NULLS LAST, {}", expression, tie), reads
    if rule == "non_empty":
        empty = sql.SQL("({} IS NULL OR {}::text = '')").format(expression, expression)
        return compose("{}, {}", empty, tie), reads
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in config["values"]]
    position = compose("COALESCE(array_position({}::text[], {}::text), 2147483647)",
                       Compiled(sql.Placeholder(), [values]), expression)
    return compose("{}, {}", position, tie), reads
