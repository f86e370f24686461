"""Manual task: the branch waits until the assignee marks the task done (e.g. "check the print
file with the printer"). On expiry: continue anyway, fail the activity, or escalate to another
group. See apps/approvals/gate.py for how the wait works."""

from __future__ import annotations

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
from apps.approvals.gate import SETTINGS_PROPERTIES, approval_gate, validate_settings
from apps.approvals.models import TaskKind

EXPIRY = {"continue": "approve", "fail": "reject", "escalate": "escalate"}


@register
class ManualTask(Activity):
    type = "manual_task"
    label = "Manual task"
    group = "approvals"
    description = "Waits until the assignee marks the task done."
    inputs = ("in",)
    outputs = ("out",)
    max_inputs = 1

    config_schema = {
        "type": "object", "additionalProperties": False, "required": ["title"],
        "properties": {**{k: v for k, v in SETTINGS_PROPERTIES.items() if k not in ("tolerance", "sample_size")},
                       "title": {"type": "string", "minLength": 1, "maxLength": 200},
                       "on_expiry": {"enum": list(EXPIRY), "default": "fail"}},
    }

    def _settings(self, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "on_expiry": EXPIRY[config.get("on_expiry", "fail")], "sample_size": 0}

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        return validate_settings(self._settings(config), ctx, kind=TaskKind.MANUAL)

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done | Wait:
        population = first_population(inputs)
        gate = approval_gate(ctx, population=population, settings=self._settings(config), title=config["title"],
                             kind=TaskKind.MANUAL)
        if gate.wait is not None:
            return gate.wait
        if not gate.is_approved:
            raise NodeError(f"The manual task #{gate.task.pk} “{gate.task.title}” expired without being done.")
        return Done({"out": population}, summary={"task": gate.task.pk, "outcome": gate.outcome})
