"""A test-only channel-like activity that raises a delivery approval through
`apps.approvals.gate.approval_gate`, as the channel activities with "requires approval" do: the
snapshot carries the rendered content (here rendered from the tenant's `promo` setting, so that a
test can change what would be sent between the approval and the send)."""

from __future__ import annotations

from typing import Any

from apps.activities.base import Activity, Done, ExecutionContext, Population, Wait, first_population
from apps.activities.registry import register
from apps.approvals.gate import approval_gate


@register
class TestDelivery(Activity):
    type = "test_delivery"
    label = "Delivery (tests only)"
    group = "channels"
    outputs = ("sent",)
    config_schema = {"type": "object", "additionalProperties": True}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        population = first_population(inputs)
        ctx.tenant.refresh_from_db(fields=["settings"])
        promo = (ctx.tenant.settings or {}).get("promo", "none")
        content = [{"subject": f"Spring sale: {promo}", "text": f"Hello, use {promo}."}]
        gate = approval_gate(ctx, population=population, settings=config.get("approval") or {},
                             title="Send the spring sale", content=content)
        if gate.wait is not None:
            return gate.wait
        if not gate.is_approved:
            return Done({})
        return Done({"sent": population}, summary={"sent_subject": content[0]["subject"]})
