"""A test-only start activity that emits a population of the keys its config lists, so that an
approval has real recipients to count and sample (the targeting activities are another app's)."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population
from apps.activities.registry import register


@register
class Rows(Activity):
    type = "test_rows"
    label = "Rows (tests only)"
    group = "flow"
    inputs = ("in",)
    config_schema = {"type": "object", "additionalProperties": False,
                     "properties": {"keys": {"type": "array", "items": {"type": "string"}}}}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        population = ctx.store.create("out", "SELECT unnest(%s::text[])", [config.get("keys", [])],
                                      dimension="profile")
        return Done({"out": population})
