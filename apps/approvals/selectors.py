"""Reads of tasks and approver groups: lists with filters, one task (the same "not found" for a
missing task and another tenant's), and what a person may do with a task."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q, QuerySet

from apps.approvals import permissions
from apps.approvals.models import (
    APPROVE_PERMISSION,
    ApproverGroup,
    CampaignGroupPermission,
    CampaignUserPermission,
    Decision,
    Task,
    TaskKind,
    TaskStatus,
)
from apps.core.errors import ApplicationError, NotFound
from apps.tenants.models import Tenant, User
from apps.tenants.roles import role_can

FILTERS = ("status", "assignee", "campaign", "kind", "run", "due_before")


def _int(value: Any, name: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ApplicationError("Invalid filter.", fields={name: ["Must be an integer id."]}) from None
    if number <= 0:
        raise ApplicationError("Invalid filter.", fields={name: ["Must be a positive id."]})
    return number


def assigned_to(user: User, tenant: Tenant) -> Q:
    """Tasks `user` is asked to act on: assigned to them, to a group of theirs, to them among
    several, or to no one in particular when their role may decide."""
    groups = ApproverGroup.objects.filter(tenant=tenant, group__user=user).values("pk")
    mine = Q(assignee_user=user) | Q(assignee_group__in=groups) | Q(requires_each=True, approvers__user=user)
    membership = permissions.membership_of(tenant, user)
    nobody = Q(requires_each=False, assignee_user__isnull=True, assignee_group__isnull=True)
    if membership is not None and role_can(membership.role, "tasks.decide"):
        mine |= nobody
    else:
        mine |= nobody & Q(kind=TaskKind.MANUAL)
    return mine


def task_list(*, tenant: Tenant, user: User | None = None, filters: dict[str, Any] | None = None) -> QuerySet[Task]:
    """Filters: `status` (one or several, comma-separated), `assignee` (`me`, or a user id),
    `campaign` (id), `run` (id), `kind` (approval, manual), `due_before` (ISO date and time).
    An unknown value is a 400 naming the filter."""
    filters = filters or {}
    qs = Task.objects.filter(tenant=tenant).select_related(
        "campaign", "assignee_user", "assignee_group", "decided_by", "escalate_to")
    if raw := filters.get("status"):
        statuses = [s.strip() for s in str(raw).split(",") if s.strip()]
        unknown = [s for s in statuses if s not in TaskStatus.values]
        if unknown or not statuses:
            raise ApplicationError("Invalid filter.", fields={"status": [
                f"Unknown status {', '.join(unknown)}; one of {', '.join(TaskStatus.values)}."]})
        qs = qs.filter(status__in=statuses)
    if raw := filters.get("kind"):
        if raw not in TaskKind.values:
            raise ApplicationError("Invalid filter.", fields={"kind": [f"One of {', '.join(TaskKind.values)}."]})
        qs = qs.filter(kind=raw)
    if raw := filters.get("campaign"):
        qs = qs.filter(campaign_id=_int(raw, "campaign"))
    if raw := filters.get("run"):
        qs = qs.filter(run_id=_int(raw, "run"))
    if raw := filters.get("assignee"):
        if raw == "me":
            if user is None:
                raise ApplicationError("Invalid filter.", fields={"assignee": ["`me` needs a signed-in user."]})
            qs = qs.filter(assigned_to(user, tenant))
        else:
            qs = qs.filter(Q(assignee_user_id=_int(raw, "assignee"))
                           | Q(requires_each=True, approvers__user_id=_int(raw, "assignee")))
    if raw := filters.get("due_before"):
        try:
            moment = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise ApplicationError("Invalid filter.", fields={"due_before": ["An ISO 8601 date and time."]}) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        qs = qs.filter(due_at__lt=moment)
    return qs.distinct().order_by("-created_at", "-id")


def task_get(*, tenant: Tenant, id: Any) -> Task:
    try:
        return Task.objects.select_related("campaign", "run", "run__version", "assignee_user", "assignee_group",
                                           "decided_by", "escalate_to").get(tenant=tenant, pk=int(id))
    except (Task.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such task.") from None


def task_decisions(*, task: Task) -> QuerySet[Decision]:
    return Decision.objects.filter(task=task).select_related("user").order_by("created_at", "id")


def task_abilities(*, task: Task, user: User) -> dict[str, Any]:
    """What `user` may do with `task` now, with the reason when they may not decide."""
    membership = permissions.membership_of(task.tenant, user)
    role = membership.role if membership else None
    open_ = task.is_open
    problem = permissions.decide_problem(task, user) if open_ else f"The task is {task.get_status_display().lower()}."
    return {
        "approve": open_ and task.kind == TaskKind.APPROVAL and problem is None,
        "reject": open_ and task.kind == TaskKind.APPROVAL and problem is None,
        "complete": open_ and task.kind == TaskKind.MANUAL and problem is None,
        "claim": open_ and permissions.claim_problem(task, user) is None,
        "assign": open_ and role_can(role, "tasks.assign"),
        "reason": problem or "",
    }


def task_count_open_for(*, tenant: Tenant, user: User) -> int:
    """The badge in the navigation: open tasks waiting on `user`."""
    return task_list(tenant=tenant, user=user, filters={"status": "open", "assignee": "me"}).count()


def approver_group_list(*, tenant: Tenant) -> QuerySet[ApproverGroup]:
    return ApproverGroup.objects.filter(tenant=tenant).select_related("group").order_by("name")


def approver_group_get(*, tenant: Tenant, id: Any) -> ApproverGroup:
    try:
        return ApproverGroup.objects.select_related("group").get(tenant=tenant, pk=int(id))
    except (ApproverGroup.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such group.") from None


def campaign_approvers(*, campaign: Any) -> dict[str, list[Any]]:
    users = CampaignUserPermission.objects.filter(content_object=campaign, permission__codename=APPROVE_PERMISSION)
    groups = CampaignGroupPermission.objects.filter(content_object=campaign, permission__codename=APPROVE_PERMISSION)
    group_names = dict(ApproverGroup.objects.filter(group__in=groups.values("group")).values_list("group_id", "name"))
    return {"users": sorted(p.user.email for p in users.select_related("user")),
            "groups": sorted(group_names.values())}
