"""Scheduler: the start of every campaign. As soon as possible, once at a time, several times a
day, daily, weekly, monthly (days of the month or "second Tuesday"), cron, or triggered by API;
in the campaign's time zone (default the tenant's), within an optional validity period."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population, Problem, ValidationContext
from apps.activities.registry import register

TIME = {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$"}


@register
class Scheduler(Activity):
    type = "scheduler"
    label = "Scheduler"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "Starts the campaign: now, at a time, on a recurring schedule, or on an API trigger."
    inputs = ()
    min_inputs = 0
    is_start = True
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["asap", "once", "daily", "weekly", "monthly", "cron", "api"], "default": "asap"},
            "at": {"type": "string", "description": "once: local date and time, ISO 8601"},
            "times": {"type": "array", "items": TIME, "minItems": 1, "maxItems": 48,
                      "description": "times of day (several times a day: several entries)"},
            "weekdays": {"type": "array", "minItems": 1,
                         "items": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}},
            "days": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": -1, "maximum": 31,
                                                               "not": {"const": 0}}},
            "ordinal": {"type": "integer", "enum": [1, 2, 3, 4, -1], "description": "monthly: 2 = second, -1 = last"},
            "weekday": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "cron": {"type": "string", "maxLength": 120},
            "time_zone": {"type": "string"},
            "valid_from": {"type": "string"},
            "valid_until": {"type": "string"},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        import datetime as dt
        import zoneinfo

        problems = []
        mode = config.get("mode", "asap")
        if mode == "once":
            try:
                dt.datetime.fromisoformat(config.get("at", ""))
            except ValueError:
                problems.append(ctx.problem("`at` must be a date and time (ISO 8601).", "config.at"))
        if mode == "weekly" and not config.get("weekdays"):
            problems.append(ctx.problem("Choose at least one weekday.", "config.weekdays"))
        if mode == "monthly" and not config.get("days") and not ("ordinal" in config and "weekday" in config):
            problems.append(ctx.problem("Give days of the month, or an ordinal and a weekday.", "config.days"))
        if mode == "cron":
            from croniter import croniter

            if not croniter.is_valid(config.get("cron", "")):
                problems.append(ctx.problem("Not a valid cron expression.", "config.cron"))
        if config.get("time_zone") and config["time_zone"] not in zoneinfo.available_timezones():
            problems.append(ctx.problem("Unknown time zone.", "config.time_zone"))
        for key in ("valid_from", "valid_until"):
            if config.get(key):
                try:
                    dt.datetime.fromisoformat(config[key])
                except ValueError:
                    problems.append(ctx.problem("Must be a date and time (ISO 8601).", f"config.{key}"))
        return problems

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        return Done({"out": Population.token()})
