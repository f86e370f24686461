"""And-join: waits until every incoming branch has finished, then passes on the population of a
chosen main input (by source activity id; default the first)."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population, Shape, ValidationContext, first_shape
from apps.activities.registry import register


@register
class AndJoin(Activity):
    type = "and_join"
    label = "And-join"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "Waits for all incoming branches; continues with the main input's population."
    min_inputs = 2
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "main_input": {"type": "string", "description": "id of the activity whose population continues"}
        },
    }

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        main = config.get("main_input")
        for source, shape in zip(ctx.input_sources, inputs, strict=False):
            if source == main:
                return {"out": shape}
        return {"out": first_shape(inputs)}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        main = config.get("main_input")
        chosen = None
        if main:
            for source, population in zip(ctx.input_sources, inputs, strict=False):
                if source == main:
                    chosen = population
        if chosen is None:
            chosen = next((p for p in inputs if not p.is_token), inputs[0] if inputs else Population.token())
        return Done({"out": chosen}, summary={"inputs": len(inputs)})
