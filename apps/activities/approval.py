"""Approval: the branch waits until a person approves or rejects what reaches this point. The
task freezes a snapshot (incoming count, sample of the population); approved continues on
`approved`, rejected on `rejected`, expiry follows the node's action (approve, reject, or
escalate to another group). If the population moved beyond the node's tolerance when the branch
resumes, the approval is void and a new task is raised. See apps/approvals/gate.py."""

from __future__ import annotations

from typing import Any

from apps.activities.base import (
    Activity,
    Done,
    ExecutionContext,
    Population,
    Problem,
    ValidationContext,
    Wait,
    first_population,
)
from apps.activities.registry import register
from apps.approvals.gate import SETTINGS_PROPERTIES, approval_gate, validate_settings


@register
class Approval(Activity):
    type = "approval"
    label = "Approval"
    group = "approvals"
    description = "Waits for an approver to approve or reject; the population goes on by the answer's port."
    inputs = ("in",)
    outputs = ("approved", "rejected")
    max_inputs = 1

    config_schema = {"type": "object", "additionalProperties": False, "properties": SETTINGS_PROPERTIES}

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        return validate_settings(config, ctx)

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        population = first_population(inputs)
        gate = approval_gate(ctx, population=population, settings=config,
                             title=f"Approve “{ctx.campaign.name}” ({ctx.node_id})")
        if gate.wait is not None:
            return gate.wait
        port = "approved" if gate.is_approved else "rejected"
        return Done({port: population}, summary={"task": gate.task.pk, "outcome": gate.outcome})
