"""Fork: the same population goes down N labelled branches in parallel."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population, first_population
from apps.activities.registry import register


@register
class Fork(Activity):
    type = "fork"
    label = "Fork"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "Sends the population down several branches at once."
    max_inputs = 1
    outputs = ()
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["branches"],
        "properties": {
            "branches": {"type": "array", "minItems": 2, "maxItems": 20, "items": {
                "type": "object", "additionalProperties": False, "required": ["port"],
                "properties": {"port": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,32}$"},
                               "label": {"type": "string", "maxLength": 100}}}},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        return [b["port"] for b in config.get("branches", [])]

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = first_population(inputs)
        return Done({port: population for port in self.output_ports(config)})
