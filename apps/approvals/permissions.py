"""Who may answer a task (DESIGN §8). One place for the rule, asked by the services (which refuse)
and by the API and the portal (which show what a person may do).

To approve or reject, a person needs all of:
1. a role with the `tasks.decide` capability (admin, approver) in the task's tenant;
2. to be among the task's assignees: the assigned user, a member of the assigned group, one of
   several named users who has not answered yet, or (a task assigned to no one) anyone of (1);
3. when the campaign names its approvers (guardian object permission `approve_campaign` given to
   users or approver groups), to be one of them;
4. four eyes: not to have started the run or last edited its version, unless the tenant's setting
   `allow_self_approval` is on.
A manual task is completed by its assignee (any role), or by anyone of the tenant when it is
assigned to no one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from guardian.core import ObjectPermissionChecker

from apps.approvals.models import (
    APPROVE_PERMISSION,
    CampaignGroupPermission,
    CampaignUserPermission,
    Task,
    TaskKind,
)
from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import role_can

if TYPE_CHECKING:
    from apps.campaigns.models import Campaign


def approve_permission() -> Permission:
    """The guardian permission naming a campaign's approvers (created on first use: it belongs to
    the campaigns' content type, which this app does not own)."""
    from apps.campaigns.models import Campaign

    content_type = ContentType.objects.get_for_model(Campaign)
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=APPROVE_PERMISSION,
        defaults={"name": "Can approve the campaign's tasks"})
    return permission


def membership_of(tenant: Tenant, user: User) -> Membership | None:
    return Membership.objects.filter(tenant=tenant, user=user, is_active=True).first()


def campaign_names_approvers(campaign: Campaign) -> bool:
    """Whether the campaign restricts approval to named people or groups."""
    return (CampaignUserPermission.objects.filter(content_object=campaign, permission__codename=APPROVE_PERMISSION)
            .exists() or CampaignGroupPermission.objects.filter(
                content_object=campaign, permission__codename=APPROVE_PERMISSION).exists())


def is_named_approver(campaign: Campaign, user: User) -> bool:
    """guardian's checker, reading the direct foreign-key permission models (tenant-scoped)."""
    return ObjectPermissionChecker(user).has_perm(APPROVE_PERMISSION, campaign)


def in_group(user: User, group_id: int | None) -> bool:
    from apps.approvals.models import ApproverGroup

    if group_id is None:
        return False
    group = ApproverGroup.objects.filter(pk=group_id).first()
    return group is not None and group.group.user_set.filter(pk=user.pk).exists()


def is_assignee(task: Task, user: User) -> bool:
    assignment = task.assignment
    if assignment == "user":
        return task.assignee_user_id == user.pk
    if assignment == "group":
        return in_group(user, task.assignee_group_id)
    if assignment == "users":
        return task.approvers.filter(user=user).exists()
    return True  # assigned to no one: the role decides


def four_eyes_problem(task: Task, user: User) -> str | None:
    if task.run_id is None or (task.tenant.settings or {}).get("allow_self_approval"):
        return None
    run = task.run
    if run.started_by_id == user.pk:
        return "Four eyes: you started this run, someone else must approve it."
    version = run.version
    if (version.edited_by_id or version.created_by_id) == user.pk:
        return "Four eyes: you last edited this campaign version, someone else must approve it."
    return None


def decide_problem(task: Task, user: User) -> str | None:
    """Why `user` may not approve or reject (or complete) `task` now, or None when they may."""
    membership = membership_of(task.tenant, user)
    if membership is None:
        return "You are not a member of this tenant."
    if task.kind == TaskKind.MANUAL:
        if task.assignment == "role" or is_assignee(task, user):
            return None
        return "This task is assigned to someone else."
    if not role_can(membership.role, "tasks.decide"):
        return "Your role does not allow approving."
    if not is_assignee(task, user):
        return "This task is assigned to someone else."
    if task.assignment == "users" and task.decisions.filter(user=user).exists():
        return "You have already answered this task."
    if campaign_names_approvers(task.campaign) and not is_named_approver(task.campaign, user):
        return "This campaign names its approvers and you are not one of them."
    return four_eyes_problem(task, user)


def claim_problem(task: Task, user: User) -> str | None:
    """A group task (or one assigned to no one) can be claimed by someone who could answer it."""
    if task.assignment not in ("group", "role"):
        return "Only a task assigned to a group or to no one can be claimed."
    return decide_problem(task, user)
