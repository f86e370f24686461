"""State changes of tasks, approver groups and campaign approvers: one function per business action,
transactional, audited (AuditEntry, and an append-only Decision for every answer), notifications
and engine kicks sent after commit. Who may answer is `apps/approvals/permissions.py`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from apps.approvals import notifications, permissions
from apps.approvals.models import (
    APPROVE_PERMISSION,
    ApproverGroup,
    CampaignGroupPermission,
    CampaignUserPermission,
    Decision,
    ExpiryAction,
    Task,
    TaskApprover,
    TaskKind,
    TaskStatus,
    Verdict,
)
from apps.campaigns import engine
from apps.campaigns.models import Campaign, NodeState, NodeStatus, Run
from apps.core.errors import ApplicationError, Conflict, PermissionDenied
from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import role_can
from apps.tenants.services import audit_record

MAX_COMMENT = 5000


def now() -> dt.datetime:
    """The engine's clock (one clock for waits, expiries and decisions; tests freeze it there)."""
    return engine.now()


def _require(tenant: Tenant, by: User | None, capability: str) -> Membership | None:
    if by is None:  # the system (engine, expiry) acts with full rights
        return None
    membership = permissions.membership_of(tenant, by)
    if membership is None or not role_can(membership.role, capability):
        raise PermissionDenied()
    return membership


def _lock(tenant: Tenant, task: Task) -> Task:
    return Task.objects.select_for_update(of=("self",)).select_related("run", "run__version", "campaign").get(
        tenant=tenant, pk=task.pk)


def _comment(comment: Any, *, required: bool = False) -> str:
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise ApplicationError("Invalid comment.", fields={"comment": ["Must be text."]})
    comment = comment.strip()
    if required and not comment:
        raise ApplicationError("A rejection needs a comment.", fields={"comment": ["Say why you reject."]})
    if len(comment) > MAX_COMMENT:
        raise ApplicationError("Invalid comment.", fields={"comment": [f"At most {MAX_COMMENT} characters."]})
    return comment


# Assignment -------------------------------------------------------------------------------------

@dataclass
class Assignment:
    """Who a task goes to: one user, one group (the first answer decides), several users who must
    each approve, or no one in particular (any approver of the tenant)."""

    user: User | None = None
    group: ApproverGroup | None = None
    users: list[User] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.users:
            return ", ".join(u.email for u in self.users)
        if self.user:
            return self.user.email
        if self.group:
            return f"group {self.group.name}"
        return "any approver"


def _member_user(tenant: Tenant, ref: Any, *, field_name: str, must_decide: bool) -> User:
    """A user of `tenant` given by id or e-mail; 400 naming the field otherwise."""
    membership = None
    if isinstance(ref, bool):
        ref = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        membership = Membership.objects.filter(tenant=tenant, user_id=int(ref), is_active=True).first()
    elif isinstance(ref, str) and ref.strip():
        membership = Membership.objects.filter(tenant=tenant, user__email__iexact=ref.strip(), is_active=True).first()
    if membership is None:
        raise ApplicationError("Unknown user.", fields={field_name: ["No active member of this tenant."]})
    if must_decide and not role_can(membership.role, "tasks.decide"):
        raise ApplicationError("This person cannot approve.",
                               fields={field_name: [f"{membership.user.email} has the role {membership.role}, "
                                                    "which cannot approve."]})
    return membership.user


def _group(tenant: Tenant, ref: Any, *, field_name: str) -> ApproverGroup:
    group = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        group = ApproverGroup.objects.filter(tenant=tenant, pk=ref).first()
    elif isinstance(ref, str) and ref.strip():
        ref = ref.strip()
        group = ApproverGroup.objects.filter(tenant=tenant, name=ref).first()
        if group is None and ref.isdigit():
            group = ApproverGroup.objects.filter(tenant=tenant, pk=int(ref)).first()
    if group is None:
        raise ApplicationError("Unknown group.", fields={field_name: ["No approver group of this tenant by that name."]})
    return group


def assignment_from_config(*, tenant: Tenant, config: dict[str, Any] | None, kind: str = TaskKind.APPROVAL,
                           field_prefix: str = "assign") -> Assignment:
    """Read `{"user": …}`, `{"group": …}` or `{"users": […]}` (users by e-mail or id, groups by
    name or id); an empty config assigns to no one in particular."""
    config = config or {}
    must_decide = kind == TaskKind.APPROVAL

    def name(key: str) -> str:
        return f"{field_prefix}.{key}" if field_prefix else key

    if not isinstance(config, dict):
        raise ApplicationError("Invalid assignment.", fields={field_prefix or "assign": ["Must be an object."]})
    given = [k for k in ("user", "group", "users") if config.get(k) not in (None, "", [])]
    if len(given) > 1:
        raise ApplicationError("Invalid assignment.", fields={name(given[1]): ["Give one of user, group or users."]})
    if "user" in given:
        return Assignment(user=_member_user(tenant, config["user"], field_name=name("user"),
                                            must_decide=must_decide))
    if "group" in given:
        return Assignment(group=_group(tenant, config["group"], field_name=name("group")))
    if "users" in given:
        refs = config["users"]
        if not isinstance(refs, list):
            raise ApplicationError("Invalid assignment.", fields={name("users"): ["Must be a list."]})
        users: list[User] = []
        for i, ref in enumerate(refs):
            user = _member_user(tenant, ref, field_name=name(f"users.{i}"), must_decide=must_decide)
            if user not in users:
                users.append(user)
        return Assignment(users=users) if len(users) > 1 else Assignment(user=users[0])
    return Assignment()


def _apply_assignment(task: Task, assignment: Assignment) -> None:
    task.assignee_user = assignment.user
    task.assignee_group = assignment.group
    task.requires_each = bool(assignment.users)
    task.save()
    task.approvers.all().delete()
    for user in assignment.users:
        TaskApprover.objects.create(tenant_id=task.tenant_id, task=task, user=user)


# Raising tasks (from the engine) ---------------------------------------------------------------

@transaction.atomic
def task_raise(*, tenant: Tenant, campaign: Campaign, run: Run | None, node_id: str, kind: str, title: str,
               instructions: str = "", assignment: Assignment | None = None, due_at: dt.datetime | None = None,
               expiry_action: str = ExpiryAction.REJECT, escalate_to: ApproverGroup | None = None,
               snapshot: dict[str, Any] | None = None, tolerance: dict[str, Any] | None = None,
               replaces: Task | None = None) -> Task:
    """Create a task a campaign waits on (called by the Approval and Manual task activities and the
    delivery approval gate, inside the node's transaction) and notify its assignees."""
    if kind not in TaskKind.values:
        raise ApplicationError("Unknown task kind.", fields={"kind": [f"One of {', '.join(TaskKind.values)}."]})
    if expiry_action not in ExpiryAction.values:
        raise ApplicationError("Unknown expiry action.", fields={"expiry_action": [
            f"One of {', '.join(ExpiryAction.values)}."]})
    if expiry_action == ExpiryAction.ESCALATE and escalate_to is None:
        raise ApplicationError("Escalation needs a group.", fields={"escalate_to": ["Name the group to escalate to."]})
    task = Task.objects.create(
        tenant=tenant, campaign=campaign, run=run, node_id=node_id, kind=kind, title=title[:200],
        instructions=instructions, due_at=due_at, expiry_action=expiry_action, escalate_to=escalate_to,
        snapshot=snapshot or {}, tolerance=tolerance or {}, replaces=replaces,
    )
    _apply_assignment(task, assignment or Assignment())
    audit_record(tenant=tenant, actor=None, action="task.create", obj=task,
                 data={"run": run.pk if run else None, "node": node_id, "kind": kind,
                       "assigned_to": (assignment or Assignment()).label,
                       "replaces": replaces.pk if replaces else None})
    notifications.task_notify(task, "created")
    return task


def _wake_node(task: Task) -> None:
    """Make the waiting node of the task's run due now and ask a worker to look at the run: the
    node runs again, reads the task and takes its path."""
    if task.run_id is None:
        return
    NodeState.objects.filter(run_id=task.run_id, node_id=task.node_id, status=NodeStatus.WAITING).update(
        wake_at=now())
    engine.kick_run(task.run)


def _close(task: Task, *, status: str, outcome: str, by: User | None, comment: str = "") -> Task:
    task.status = status
    task.outcome = outcome
    task.decided_at = now()
    task.decided_by = by
    task.comment = comment
    task.save(update_fields=["status", "outcome", "decided_at", "decided_by", "comment", "updated_at"])
    _wake_node(task)
    return task


def _expire_if_due(tenant: Tenant, task: Task) -> Task:
    if task.is_open and task.due_at is not None and task.due_at <= now():
        return _expire(tenant, task)
    return task


def _must_be_open(task: Task) -> None:
    if not task.is_open:
        raise Conflict(f"The task is {task.get_status_display().lower()}.", code="task_closed")


# Answers -----------------------------------------------------------------------------------------

@transaction.atomic
def task_approve(*, tenant: Tenant, task: Task, by: User, comment: str | None = "") -> Task:
    _require(tenant, by, "tasks.decide")
    comment = _comment(comment)
    task = _expire_if_due(tenant, _lock(tenant, task))
    _must_be_open(task)
    if task.kind != TaskKind.APPROVAL:
        raise Conflict("A manual task is completed, not approved.", code="wrong_kind")
    problem = permissions.decide_problem(task, by)
    if problem:
        raise PermissionDenied(problem)
    Decision.objects.create(tenant=tenant, task=task, user=by, verdict=Verdict.APPROVE, comment=comment,
                            data={"snapshot_count": task.snapshot.get("count")})
    audit_record(tenant=tenant, actor=by, action="task.approve", obj=task, data={"comment": comment})
    if task.requires_each:
        pending = task.approvers.exclude(user_id__in=task.decisions.filter(
            verdict=Verdict.APPROVE).values("user_id")).exists()
        if pending:
            return task
    return _close(task, status=TaskStatus.APPROVED, outcome="approved", by=by, comment=comment)


@transaction.atomic
def task_reject(*, tenant: Tenant, task: Task, by: User, comment: str | None) -> Task:
    """Reject with a reason. With several named approvers, one rejection decides."""
    _require(tenant, by, "tasks.decide")
    comment = _comment(comment, required=True)
    task = _expire_if_due(tenant, _lock(tenant, task))
    _must_be_open(task)
    if task.kind != TaskKind.APPROVAL:
        raise Conflict("A manual task is completed, not rejected.", code="wrong_kind")
    problem = permissions.decide_problem(task, by)
    if problem:
        raise PermissionDenied(problem)
    Decision.objects.create(tenant=tenant, task=task, user=by, verdict=Verdict.REJECT, comment=comment)
    audit_record(tenant=tenant, actor=by, action="task.reject", obj=task, data={"comment": comment})
    return _close(task, status=TaskStatus.REJECTED, outcome="rejected", by=by, comment=comment)


@transaction.atomic
def task_complete(*, tenant: Tenant, task: Task, by: User, comment: str | None = "") -> Task:
    """Mark a manual task done: its branch goes on."""
    _require(tenant, by, "tasks.read")
    comment = _comment(comment)
    task = _expire_if_due(tenant, _lock(tenant, task))
    _must_be_open(task)
    if task.kind != TaskKind.MANUAL:
        raise Conflict("An approval is approved or rejected, not completed.", code="wrong_kind")
    problem = permissions.decide_problem(task, by)
    if problem:
        raise PermissionDenied(problem)
    Decision.objects.create(tenant=tenant, task=task, user=by, verdict=Verdict.COMPLETE, comment=comment)
    audit_record(tenant=tenant, actor=by, action="task.complete", obj=task, data={"comment": comment})
    return _close(task, status=TaskStatus.COMPLETED, outcome="completed", by=by, comment=comment)


# Assignment changes ------------------------------------------------------------------------------

@transaction.atomic
def task_assign(*, tenant: Tenant, task: Task, by: User | None, user: Any = None, group: Any = None,
                users: Any = None) -> Task:
    """Reassign an open task to a user, a group or several users (API, portal, admin)."""
    _require(tenant, by, "tasks.assign")
    task = _lock(tenant, task)
    _must_be_open(task)
    config = {k: v for k, v in (("user", user), ("group", group), ("users", users)) if v not in (None, "", [])}
    if not config:
        raise ApplicationError("Say who gets the task.", fields={"user": ["Give a user or a group."]})
    assignment = assignment_from_config(tenant=tenant, config=config, kind=task.kind, field_prefix="")
    before = _describe(task)
    _apply_assignment(task, assignment)
    audit_record(tenant=tenant, actor=by, action="task.assign", obj=task,
                 data={"from": before, "to": assignment.label})
    notifications.task_notify(task, "reassigned")
    return task


def _describe(task: Task) -> str:
    if task.requires_each:
        return ", ".join(a.user.email for a in task.approvers.select_related("user"))
    if task.assignee_user_id:
        return task.assignee_user.email
    if task.assignee_group_id:
        return f"group {task.assignee_group.name}"
    return "any approver"


@transaction.atomic
def task_claim(*, tenant: Tenant, task: Task, by: User) -> Task:
    """Take a group task (or one assigned to no one) for oneself: only the claimer answers it now."""
    _require(tenant, by, "tasks.read")
    task = _expire_if_due(tenant, _lock(tenant, task))
    _must_be_open(task)
    problem = permissions.claim_problem(task, by)
    if problem:
        raise PermissionDenied(problem)
    before = _describe(task)
    _apply_assignment(task, Assignment(user=by))
    audit_record(tenant=tenant, actor=by, action="task.claim", obj=task, data={"from": before})
    return task


@transaction.atomic
def task_extend(*, tenant: Tenant, task: Task, by: User | None, due_at: dt.datetime) -> Task:
    _require(tenant, by, "tasks.assign")
    task = _lock(tenant, task)
    _must_be_open(task)
    if due_at is None or due_at.tzinfo is None:
        raise ApplicationError("Invalid due date.", fields={"due_at": ["A date and time with a time zone."]})
    if due_at <= now():
        raise ApplicationError("Invalid due date.", fields={"due_at": ["Must be in the future."]})
    before = task.due_at
    task.due_at = due_at
    task.reminded_at = None
    task.save(update_fields=["due_at", "reminded_at", "updated_at"])
    if task.run_id:  # the waiting node wakes at the new due date
        NodeState.objects.filter(run_id=task.run_id, node_id=task.node_id, status=NodeStatus.WAITING).update(
            wake_at=due_at)
        engine.kick_run(task.run)
    audit_record(tenant=tenant, actor=by, action="task.extend", obj=task,
                 data={"from": before.isoformat() if before else None, "to": due_at.isoformat()})
    return task


# Expiry, void, cancel (the system) --------------------------------------------------------------

def _expire(tenant: Tenant, task: Task) -> Task:
    """Apply the task's action on expiry: approve, reject, or escalate to another group once (a
    task that expires again after its escalation is rejected)."""
    action = task.expiry_action
    if action == ExpiryAction.ESCALATE and task.escalated_at is None and task.escalate_to_id:
        period = (task.due_at - task.created_at) if task.due_at else dt.timedelta(days=1)
        period = max(period, dt.timedelta(minutes=1))
        before = _describe(task)
        task.escalated_at = now()
        task.due_at = now() + period
        task.reminded_at = None
        task.save(update_fields=["escalated_at", "due_at", "reminded_at", "updated_at"])
        _apply_assignment(task, Assignment(group=task.escalate_to))
        Decision.objects.create(tenant=tenant, task=task, user=None, verdict=Verdict.ESCALATE,
                                data={"from": before, "to": f"group {task.escalate_to.name}",
                                      "due_at": task.due_at.isoformat()})
        audit_record(tenant=tenant, actor=None, action="task.escalate", obj=task,
                     data={"from": before, "to": task.escalate_to.name})
        notifications.task_notify(task, "reassigned")
        if task.run_id:
            NodeState.objects.filter(run_id=task.run_id, node_id=task.node_id, status=NodeStatus.WAITING).update(
                wake_at=task.due_at)
        return task
    if task.kind == TaskKind.MANUAL:
        outcome = "completed" if action == ExpiryAction.APPROVE else "rejected"
    else:
        outcome = "approved" if action == ExpiryAction.APPROVE else "rejected"
    Decision.objects.create(tenant=tenant, task=task, user=None, verdict=Verdict.EXPIRE,
                            data={"action": action, "outcome": outcome})
    audit_record(tenant=tenant, actor=None, action="task.expire", obj=task, data={"outcome": outcome})
    return _close(task, status=TaskStatus.EXPIRED, outcome=outcome, by=None)


@transaction.atomic
def task_expire(*, tenant: Tenant, task: Task) -> Task:
    """The task's due date passed (called when its waiting node wakes at the due date, and by the
    periodic `approvals.expire_due_tasks`). A task not yet due or already closed is left alone."""
    return _expire_if_due(tenant, _lock(tenant, task))


@transaction.atomic
def task_void_and_reraise(*, tenant: Tenant, task: Task, snapshot: dict[str, Any], reason: str) -> Task:
    """What was approved changed beyond the node's tolerance: the approval is void and a new task,
    with the new snapshot, goes to the same assignees."""
    task = _lock(tenant, task)
    task.status = TaskStatus.VOID
    task.save(update_fields=["status", "updated_at"])
    Decision.objects.create(tenant=tenant, task=task, user=None, verdict=Verdict.VOID,
                            data={"reason": reason, "approved_count": task.snapshot.get("count"),
                                  "current_count": snapshot.get("count")})
    audit_record(tenant=tenant, actor=None, action="task.void", obj=task, data={"reason": reason})
    assignment = Assignment(user=task.assignee_user, group=task.assignee_group,
                            users=[a.user for a in task.approvers.select_related("user")])
    due_at = None
    if task.due_at is not None:
        due_at = now() + max(task.due_at - task.created_at, dt.timedelta(minutes=1))
    return task_raise(tenant=tenant, campaign=task.campaign, run=task.run, node_id=task.node_id, kind=task.kind,
                      title=task.title, instructions=task.instructions, assignment=assignment, due_at=due_at,
                      expiry_action=task.expiry_action, escalate_to=task.escalate_to, snapshot=snapshot,
                      tolerance=task.tolerance, replaces=task)


def tasks_cancel_for_run(*, run: Run) -> int:
    """The run ended: its open tasks are cancelled (nobody is left waiting on them)."""
    from apps.tenants.scoping import tenant_scope

    with tenant_scope(run.tenant), transaction.atomic():
        open_tasks = list(Task.objects.select_for_update().filter(run_id=run.pk, status=TaskStatus.OPEN))
        for task in open_tasks:
            task.status = TaskStatus.CANCELLED
            task.decided_at = now()
            task.save(update_fields=["status", "decided_at", "updated_at"])
            audit_record(tenant=run.tenant, actor=None, action="task.cancel", obj=task,
                         data={"run_status": run.status})
    return len(open_tasks)


# Approver groups and campaign approvers -----------------------------------------------------------

def _users(tenant: Tenant, refs: Iterable[Any], field_name: str, *, must_decide: bool) -> list[User]:
    if not isinstance(refs, list | tuple):
        raise ApplicationError("Invalid list.", fields={field_name: ["Must be a list."]})
    return [_member_user(tenant, ref, field_name=f"{field_name}.{i}", must_decide=must_decide)
            for i, ref in enumerate(refs)]


@transaction.atomic
def approver_group_create(*, tenant: Tenant, name: str, members: list[Any] | None = None,
                          by: User | None) -> ApproverGroup:
    _require(tenant, by, "users.manage")
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise ApplicationError("Invalid group.", fields={"name": ["1 to 100 characters."]})
    if ApproverGroup.objects.filter(tenant=tenant, name=name).exists():
        raise ApplicationError("Invalid group.", fields={"name": ["A group with this name exists."]})
    users = _users(tenant, members or [], "members", must_decide=False)
    auth_group = Group.objects.create(name=f"t{tenant.pk}:{name}")
    group = ApproverGroup.objects.create(tenant=tenant, name=name, group=auth_group)
    auth_group.user_set.set(users)
    audit_record(tenant=tenant, actor=by, action="approver_group.create", obj=group,
                 data={"members": [u.email for u in users]})
    return group


@transaction.atomic
def approver_group_set_members(*, tenant: Tenant, group: ApproverGroup, members: list[Any],
                               by: User | None) -> ApproverGroup:
    _require(tenant, by, "users.manage")
    users = _users(tenant, members, "members", must_decide=False)
    group.group.user_set.set(users)
    audit_record(tenant=tenant, actor=by, action="approver_group.members", obj=group,
                 data={"members": [u.email for u in users]})
    return group


@transaction.atomic
def campaign_approvers_set(*, tenant: Tenant, campaign: Campaign, by: User | None, users: list[Any] | None = None,
                           groups: list[Any] | None = None) -> dict[str, list[str]]:
    """Name who may approve the campaign's tasks (guardian object permissions); empty lists lift
    the restriction (any approver of the tenant, as assigned)."""
    _require(tenant, by, "users.manage")
    if campaign.tenant_id != tenant.pk:
        raise PermissionDenied()
    people = _users(tenant, users or [], "users", must_decide=True)
    teams = [_group(tenant, ref, field_name=f"groups.{i}") for i, ref in enumerate(groups or [])]
    permission = permissions.approve_permission()
    CampaignUserPermission.objects.filter(content_object=campaign, permission=permission).delete()
    CampaignGroupPermission.objects.filter(content_object=campaign, permission=permission).delete()
    for user in people:
        CampaignUserPermission.objects.assign_perm(permission, user, campaign)
    for team in teams:
        CampaignGroupPermission.objects.assign_perm(permission, team.group, campaign)
    named = {"users": [u.email for u in people], "groups": [g.name for g in teams]}
    audit_record(tenant=tenant, actor=by, action="campaign.approvers", obj=campaign, data=named)
    return named


__all__ = ["APPROVE_PERMISSION", "Assignment"]


# Reminders ----------------------------------------------------------------------------------------

DEFAULT_REMINDER_HOURS = 24


def dangerously_tasks_remind_due(limit: int = 1000) -> int:
    """Across tenants (a periodic job): mark and notify the open tasks entering their reminder
    window: the tenant's `task_reminder_hours` (default 24) before the due date, or half the
    task's lifetime when that is shorter (a 4-hour task is reminded 2 hours before)."""
    from apps.tenants.scoping import tenant_scope

    current = now()
    horizon = current + dt.timedelta(hours=24 * 30)
    candidates = list(Task.dangerously_unscoped.filter(
        status=TaskStatus.OPEN, reminded_at__isnull=True, due_at__isnull=False, due_at__gt=current,
        due_at__lte=horizon).select_related("tenant").order_by("due_at")[:limit])
    reminded = 0
    for task in candidates:
        try:
            hours = float((task.tenant.settings or {}).get("task_reminder_hours", DEFAULT_REMINDER_HOURS))
        except (TypeError, ValueError):
            hours = DEFAULT_REMINDER_HOURS
        window = min(dt.timedelta(hours=hours), (task.due_at - task.created_at) / 2)
        if task.due_at - current > window:
            continue
        with tenant_scope(task.tenant), transaction.atomic():
            # Claimed by the UPDATE: two overlapping jobs remind once.
            if not Task.objects.filter(pk=task.pk, reminded_at__isnull=True, status=TaskStatus.OPEN).update(
                    reminded_at=current):
                continue
            task.reminded_at = current
            notifications.task_notify(task, "reminder")
            reminded += 1
    return reminded
