"""Tasks people answer for a campaign (approvals and manual tasks), their decisions, the tenant's
approver groups, and the per-campaign approvers (django-guardian object permissions with direct
foreign keys, scoped by tenant like every other tenant-owned row).

Decisions are append-only: a database trigger refuses UPDATE and DELETE (see the migration)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.db import models
from guardian.managers import GroupObjectPermissionManager, UserObjectPermissionManager
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.tenants.scoping import TenantOwnedModel, TenantQuerySet, current_tenant

APPROVE_PERMISSION = "approve_campaign"


class ApproverGroup(TenantOwnedModel):
    """A named group of a tenant's people that tasks can be assigned to. Backed by a Django auth
    group (named `t<tenant id>:<name>`, auth group names being global) so that guardian's group
    object permissions can name it as a campaign's approvers."""

    name = models.CharField(max_length=100)
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "name"], name="approvals_group_name_key"),
            models.UniqueConstraint(fields=["tenant", "group"], name="approvals_group_auth_group_key"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaskKind(models.TextChoices):
    APPROVAL = "approval", "Approval"
    MANUAL = "manual", "Manual task"


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    COMPLETED = "completed", "Completed"     # a manual task marked done
    EXPIRED = "expired", "Expired"           # `outcome` says which path the expiry took
    CANCELLED = "cancelled", "Cancelled"     # its run stopped or failed
    VOID = "void", "Void"                    # what was approved changed; a new task replaces it


CLOSED_STATUSES = tuple(s for s in TaskStatus if s != TaskStatus.OPEN)


class ExpiryAction(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    ESCALATE = "escalate", "Escalate to another group"


class Task(TenantOwnedModel):
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey("campaigns.Run", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=16, choices=TaskKind.choices, default=TaskKind.APPROVAL)
    title = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    outcome = models.CharField(max_length=16, blank=True,
                               help_text="The path the waiting branch takes: approved, rejected or completed.")
    assignee_user = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    assignee_group = models.ForeignKey(ApproverGroup, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+")
    requires_each = models.BooleanField(default=False,
                                        help_text="Several named users must each approve (see TaskApprover).")
    due_at = models.DateTimeField(null=True, blank=True)
    expiry_action = models.CharField(max_length=16, choices=ExpiryAction.choices, default=ExpiryAction.REJECT)
    escalate_to = models.ForeignKey(ApproverGroup, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    escalated_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.JSONField(default=dict, blank=True,
                                help_text="What is approved: counts, sample recipients, rendered content.")
    tolerance = models.JSONField(default=dict, blank=True,
                                 help_text="How far the population may move before the approval is void.")
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    comment = models.TextField(blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True, help_text="When the before-expiry notice went out.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            # A waiting node has at most one open task: a redelivered execution finds it.
            models.UniqueConstraint(fields=["tenant", "run", "node_id"], name="approvals_task_open_node_key",
                                    condition=models.Q(status="open")),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "due_at"], name="approvals_task_status_idx"),
            models.Index(fields=["tenant", "campaign", "-created_at"], name="approvals_task_campaign_idx"),
            models.Index(fields=["tenant", "run", "node_id"], name="approvals_task_node_idx"),
        ]
        ordering = ["-created_at", "-id"]

    @property
    def is_open(self) -> bool:
        return self.status == TaskStatus.OPEN

    @property
    def assignment(self) -> str:
        """user | group | users (each must answer) | role (any approver of the tenant)."""
        if self.requires_each:
            return "users"
        if self.assignee_user_id:
            return "user"
        if self.assignee_group_id:
            return "group"
        return "role"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}: {self.title}"


class TaskApprover(TenantOwnedModel):
    """One of several named users who must each approve a task."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="approvers")
    user = models.ForeignKey("tenants.User", on_delete=models.CASCADE, related_name="+")

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "task", "user"], name="approvals_approver_key"),
        ]


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approved"
    REJECT = "reject", "Rejected"
    COMPLETE = "complete", "Completed"
    EXPIRE = "expire", "Expired"
    ESCALATE = "escalate", "Escalated"
    VOID = "void", "Voided"


class Decision(TenantOwnedModel):
    """Who answered what and when. Append-only in the database: no UPDATE, no DELETE."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                             help_text="Empty when the system decided (expiry, a changed snapshot).")
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        indexes = [models.Index(fields=["tenant", "task", "created_at"], name="approvals_decision_task_idx")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.verdict} of task {self.task_id}"


# Per-campaign approvers: guardian object permissions with direct foreign keys ---------------------

class _ScopedUserPermissionManager(UserObjectPermissionManager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> Any:
        return super().get_queryset().filter(tenant_id=current_tenant().pk)


class _ScopedGroupPermissionManager(GroupObjectPermissionManager.from_queryset(TenantQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> Any:
        return super().get_queryset().filter(tenant_id=current_tenant().pk)


class CampaignUserPermission(TenantOwnedModel, UserObjectPermissionBase):
    """guardian: a user holds a permission (e.g. `approve_campaign`) on one campaign. guardian finds
    this model through the campaign's reverse relation, so it must not be hidden (no "+")."""

    content_object = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE,
                                       related_name="approvals_user_permissions")

    objects = _ScopedUserPermissionManager()
    dangerously_unscoped = models.Manager()

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "content_object", "user", "permission"],
                                    name="approvals_campaign_user_perm_key"),
        ]


class CampaignGroupPermission(TenantOwnedModel, GroupObjectPermissionBase):
    """guardian: a group (an ApproverGroup's auth group) holds a permission on one campaign."""

    content_object = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE,
                                       related_name="approvals_group_permissions")

    objects = _ScopedGroupPermissionManager()
    dangerously_unscoped = models.Manager()

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "content_object", "group", "permission"],
                                    name="approvals_campaign_group_perm_key"),
        ]
