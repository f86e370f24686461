"""Shapes of tasks, decisions and approver groups in the API, and of the action bodies."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.approvals.models import ApproverGroup, Decision, Task
from apps.approvals.services import MAX_COMMENT


def _user(user: Any) -> dict[str, Any] | None:
    return {"id": user.pk, "email": user.email, "name": user.get_full_name()} if user else None


def _group(group: Any) -> dict[str, Any] | None:
    return {"id": group.pk, "name": group.name} if group else None


class TaskSerializer(serializers.ModelSerializer):
    campaign = serializers.SerializerMethodField()
    assignment = serializers.SerializerMethodField()
    decided_by = serializers.SerializerMethodField()
    escalate_to = serializers.SerializerMethodField()
    count = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["id", "kind", "title", "status", "outcome", "campaign", "run", "node_id", "assignment", "due_at",
                  "expiry_action", "escalate_to", "escalated_at", "count", "decided_at", "decided_by", "comment",
                  "replaces", "created_at", "updated_at"]

    def get_campaign(self, task: Task) -> dict[str, Any]:
        return {"id": task.campaign_id, "name": task.campaign.name}

    def get_assignment(self, task: Task) -> dict[str, Any]:
        return {
            "kind": task.assignment,
            "user": _user(task.assignee_user),
            "group": _group(task.assignee_group),
            "users": [_user(a.user) for a in task.approvers.select_related("user")] if task.requires_each else [],
        }

    def get_decided_by(self, task: Task) -> dict[str, Any] | None:
        return _user(task.decided_by)

    def get_escalate_to(self, task: Task) -> dict[str, Any] | None:
        return _group(task.escalate_to)

    def get_count(self, task: Task) -> int | None:
        return (task.snapshot or {}).get("count")


class DecisionSerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField()

    class Meta:
        model = Decision
        fields = ["id", "user", "verdict", "comment", "data", "created_at"]

    def get_user(self, decision: Decision) -> dict[str, Any] | None:
        return _user(decision.user)


class TaskDetailSerializer(TaskSerializer):
    """One task with what was approved (the snapshot), its decisions, and what the caller may do."""

    decisions = serializers.SerializerMethodField()
    can = serializers.SerializerMethodField()

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "instructions", "snapshot", "tolerance", "decisions", "can"]

    def get_decisions(self, task: Task) -> list[dict[str, Any]]:
        from apps.approvals.selectors import task_decisions

        return DecisionSerializer(task_decisions(task=task), many=True).data

    def get_can(self, task: Task) -> dict[str, Any]:
        from apps.approvals.selectors import task_abilities

        return task_abilities(task=task, user=self.context["user"])


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_COMMENT, default="")


class RejectSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=MAX_COMMENT, allow_blank=False)


class AssignSerializer(serializers.Serializer):
    """Exactly one of `user` (id or e-mail), `group` (id or name), `users` (several who must each
    approve)."""

    user = serializers.CharField(required=False, max_length=254)
    group = serializers.CharField(required=False, max_length=100)
    users = serializers.ListField(child=serializers.CharField(max_length=254), required=False, min_length=2,
                                  max_length=20)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [k for k in ("user", "group", "users") if attrs.get(k) not in (None, "", [])]
        if not given:
            raise serializers.ValidationError({"user": ["Give a user, a group, or users."]})
        if len(given) > 1:
            raise serializers.ValidationError({given[1]: ["Give only one of user, group or users."]})
        return attrs


class ApproverGroupSerializer(serializers.ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = ApproverGroup
        fields = ["id", "name", "members", "created_at"]

    def get_members(self, group: ApproverGroup) -> list[dict[str, Any]]:
        return [_user(u) for u in group.group.user_set.order_by("email")]


class ApproverGroupWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    members = serializers.ListField(child=serializers.CharField(max_length=254), required=False, default=list,
                                    max_length=500)


class MembersSerializer(serializers.Serializer):
    members = serializers.ListField(child=serializers.CharField(max_length=254), max_length=500)


class CampaignApproversSerializer(serializers.Serializer):
    users = serializers.ListField(child=serializers.CharField(max_length=254), required=False, default=list,
                                  max_length=100)
    groups = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list,
                                   max_length=100)
