"""Wait: a duration, until a date and time, or until a date held by an event variable. The wait
is a wake-up time stored on the node; no worker is held and no Celery countdown is used."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    ValidationContext,
    Wait,
    first_population,
)
from apps.activities.registry import register

DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError("use a number and a unit: 30s, 15m, 2h, 3d, 1w")
    return dt.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


@register
class WaitActivity(Activity):
    type = "wait"
    label = "Wait"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "Holds the population for a duration, until a date, or until a date from a variable."
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["mode"],
        "properties": {
            "mode": {"enum": ["duration", "until", "until_variable"]},
            "duration": {"type": "string", "description": "30s, 15m, 2h, 3d, 1w"},
            "until": {"type": "string", "description": "ISO 8601 date and time"},
            "variable": {"type": "string"},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        mode = config["mode"]
        if mode == "duration":
            try:
                parse_duration(config.get("duration", ""))
            except ValueError as exc:
                return [ctx.problem(f"Invalid duration: {exc}.", "config.duration")]
        if mode == "until":
            try:
                dt.datetime.fromisoformat(config.get("until", ""))
            except ValueError:
                return [ctx.problem("`until` must be a date and time (ISO 8601).", "config.until")]
        if mode == "until_variable":
            decl = ctx.variables.get(config.get("variable", ""))
            if decl is None:
                return [ctx.problem("Unknown variable.", "config.variable")]
            if decl.get("type") not in ("date", "datetime"):
                return [ctx.problem("The variable must be a date or a date and time.", "config.variable")]
        return []

    def _until(self, config: dict[str, Any], ctx: ExecutionContext) -> dt.datetime:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(ctx.tenant.time_zone or "UTC")
        mode = config["mode"]
        if mode == "duration":
            return ctx.now + parse_duration(config["duration"])
        raw = config.get("until") if mode == "until" else ctx.variables.get(config["variable"])
        if raw in (None, ""):
            raise NodeError(f"Variable {config.get('variable')!r} has no value to wait for.")
        moment = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        if "until" not in ctx.state:
            until = self._until(config, ctx)
            if until > ctx.now:
                return Wait(
                    until=until, state={"until": until.isoformat()}, reason=f"Waiting until {until:%Y-%m-%d %H:%M %Z}."
                )
        return Done({"out": first_population(inputs)})
