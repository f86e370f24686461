"""Build audience: the records of a dimension selected by a filter, or the members of a saved
audience (static or dynamic), optionally narrowed by a filter; one INSERT … SELECT."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    Shape,
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import FILTER_SCHEMA, condition, filter_problems
from apps.core.errors import NotFound
from apps.schemas.query.compiler import Compiled, compose


def _dimension(config: dict[str, Any], campaign_dimension: str) -> str:
    return config.get("dimension") or campaign_dimension


def _audience(tenant: Any, audience_id: int) -> Any:
    from apps.audiences.selectors import audience_get

    return audience_get(tenant=tenant, id=audience_id)


@register
class BuildAudience(Activity):
    type = "build_audience"
    label = "Build audience"
    group = "targeting"
    description = ("Selects records of the targeting dimension with a filter, or the members of a saved audience "
                   "(optionally narrowed by a filter). Event variables can be used in the filter.")
    inputs = ("in",)
    outputs = ("out",)
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "dimension": {"type": "string", "description": "schema to target; default: the campaign's dimension"},
            "audience": {"type": "integer", "description": "id of a saved audience to start from"},
            "filter": FILTER_SCHEMA,
            "skip_if_empty": {"type": "boolean", "default": False,
                              "description": "emit nothing (skip the branch) when no record is selected"},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        dimension = _dimension(config, ctx.dimension)
        if dimension not in ctx.schemas:
            return [ctx.problem(f"Unknown schema {dimension!r}.", "config.dimension")]
        if "audience" not in config and "filter" not in config:
            return [ctx.problem("Choose a saved audience or give a filter (an empty filter {} selects every "
                                "record).", "config")]
        problems: list[Problem] = []
        if "audience" in config:
            try:
                audience = _audience(ctx.tenant, config["audience"])
            except NotFound:
                return [ctx.problem(f"No audience with id {config['audience']}.", "config.audience")]
            if audience.schema_id != ctx.schemas[dimension].pk:
                problems.append(ctx.problem(
                    f"The audience {audience.name!r} holds records of another schema than {dimension!r}.",
                    "config.audience"))
        if "filter" in config:
            problems += filter_problems(ctx, config["filter"], path="config.filter", shape=Shape(dimension))
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        return {"out": Shape(_dimension(config, ctx.dimension))}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        dimension = _dimension(config, ctx.dimension)
        where = condition(ctx, Population(table=None, dimension=dimension), config.get("filter") or {})
        if "audience" in config:
            try:
                audience = _audience(ctx.tenant, config["audience"])
            except NotFound:
                raise NodeError(f"The audience {config['audience']} no longer exists.") from None
            from apps.audiences.selectors import audience_keys_sql

            members, params = audience_keys_sql(tenant=ctx.tenant, audience=audience)
            where = compose("{} AND r.key IN ({})", where, Compiled(sql.SQL(members), list(params)))
            ctx.log(f"Members of the audience {audience.name!r}.", audience=audience.pk)
        statement = compose("SELECT r.key FROM schemas_record r WHERE {}", where)
        population = ctx.store.create("out", statement.sql, statement.params, dimension=dimension)
        if population.count == 0 and config.get("skip_if_empty"):
            ctx.log("No record selected: the branch is skipped.")
            return Done({}, summary={"count": 0, "skipped": True})
        return Done({"out": population}, summary={"count": population.count})
