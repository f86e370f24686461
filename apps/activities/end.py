"""End: closes a branch; optionally triggers another live campaign with variables."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, NodeError, Population, Problem, ValidationContext
from apps.activities.registry import register


@register
class End(Activity):
    type = "end"
    label = "End"
    group = "flow"
    runs_inline = True  # cheap: the engine executes it within advance (docs/engine.md)
    description = "Ends a branch, optionally triggering another live campaign."
    outputs = ()
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "trigger_campaign": {"type": "integer", "description": "id of a live campaign to trigger"},
            "variables": {"type": "object", "description": "values, or {\"var\": name} to pass one on"},
        },
    }

    def output_ports(self, config: dict[str, Any]) -> list[str]:
        return []

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        from apps.campaigns.models import Campaign

        target = config.get("trigger_campaign")
        if target is not None:
            if not Campaign.objects.filter(pk=target).exists():
                return [ctx.problem("No such campaign.", "config.trigger_campaign")]
            if ctx.campaign is not None and target == ctx.campaign.pk:
                return [ctx.problem("A campaign cannot trigger itself.", "config.trigger_campaign")]
        return []

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        target = config.get("trigger_campaign")
        if target is not None and not ctx.is_test:
            from apps.campaigns import services
            from apps.campaigns.models import Campaign

            campaign = Campaign.objects.filter(pk=target).first()
            if campaign is None:
                raise NodeError("The campaign to trigger no longer exists.")
            variables = {name: ctx.variables.get(value["var"]) if isinstance(value, dict) and "var" in value else value
                         for name, value in (config.get("variables") or {}).items()}
            run = services.campaign_trigger(tenant=ctx.tenant, campaign=campaign, by=None, variables=variables)
            ctx.log(f"Triggered campaign {campaign.name!r} (run {run.pk}).")
        return Done({})
