"""Save audience: write the population as the members of a static audience (replace or append),
usable by other campaigns; the population continues unchanged. In a test run nothing is written:
the node reports how many members the audience would have."""

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
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import needs_records, records_of, single_input
from apps.campaigns.populations import table_ident
from apps.core.errors import ApplicationError, NotFound


@register
class SaveAudience(Activity):
    type = "save_audience"
    label = "Save audience"
    group = "targeting"
    description = "Writes the population as a static audience (replacing or appending its members)."
    inputs = ("in",)
    max_inputs = 1
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "audience": {"type": "integer", "description": "id of an existing static audience"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200,
                     "description": "or the name of a static audience, created on the first run"},
            "mode": {"enum": ["replace", "append"], "default": "replace"},
        },
        "oneOf": [{"required": ["audience"]}, {"required": ["name"]}],
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        shape = single_input(ctx)
        problems = needs_records(ctx, shape)
        audience = _find(ctx.tenant, config)
        if "audience" in config and audience is None:
            return [*problems, ctx.problem(f"No audience with id {config['audience']}.", "config.audience")]
        if audience is not None:
            path = "config.audience" if "audience" in config else "config.name"
            if not audience.is_static:
                problems.append(ctx.problem(f"{audience.name!r} is a saved query; choose a static audience.", path))
            schema = ctx.schemas.get(shape.dimension) if shape is not None and shape.dimension else None
            if schema is not None and audience.schema_id != schema.pk:
                problems.append(ctx.problem(f"{audience.name!r} holds records of another schema than "
                                            f"{shape.dimension!r}.", path))
        elif shape is not None and shape.dimension not in (None, *ctx.schemas):
            problems.append(ctx.problem(f"A population of {shape.dimension!r} cannot be saved as an audience: "
                                        "reconcile it with a schema first."))
        return problems

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = records_of(inputs)
        mode = config.get("mode", "replace")
        keys = sql.SQL("SELECT key FROM {}").format(table_ident(population.table or "")).as_string(
            ctx.store.cursor.connection)
        if ctx.is_test:
            ctx.log(f"Test run: the audience is not written ({mode} with {population.count} record(s)).")
            return Done({"out": population}, summary={"would_write": population.count, "mode": mode})
        from apps.audiences.services import audience_write_keys

        found = _find(ctx.tenant, config)
        if "audience" in config and found is None:
            raise NodeError(f"The audience {config['audience']} no longer exists.")
        try:
            audience, members = audience_write_keys(
                tenant=ctx.tenant, keys_sql=keys, params=[], mode=mode, by=None, audience=found,
                name=config.get("name"), schema=population.dimension or ctx.dimension)
        except ApplicationError as error:
            raise NodeError(error.message) from None
        ctx.log(f"Audience {audience.name!r} now has {members} member(s).", audience=audience.pk, mode=mode)
        return Done({"out": population}, summary={"audience": audience.pk, "members": members, "mode": mode})


def _find(tenant: Any, config: dict[str, Any]) -> Any:
    from apps.audiences.models import Audience
    from apps.audiences.selectors import audience_get
    from apps.tenants.scoping import tenant_scope

    if "audience" in config:
        try:
            return audience_get(tenant=tenant, id=config["audience"])
        except NotFound:
            return None
    with tenant_scope(tenant):
        return Audience.objects.filter(tenant=tenant, name=str(config.get("name", "")).strip()).first()
