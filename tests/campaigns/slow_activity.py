"""A test-only activity that takes a while inside its transaction (pg_sleep), so that a test can
kill the worker in the middle of it. Loaded by the registry only under the test settings
(`EXTRA_ACTIVITY_MODULES`)."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population
from apps.activities.registry import register


@register
class Slow(Activity):
    type = "test_slow"
    label = "Slow (tests only)"
    group = "flow"
    config_schema = {"type": "object", "properties": {"seconds": {"type": "number", "maximum": 10}},
                     "additionalProperties": False}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        seconds = float(config.get("seconds", 1))
        population = ctx.store.create(
            "out", "SELECT %s::text FROM (SELECT pg_sleep(%s)) AS slept", [ctx.node_id, seconds])
        return Done({"out": population})
