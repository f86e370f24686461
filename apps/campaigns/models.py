"""Campaigns, their versions (the graph), runs and the durable state of every node of a run.

All run state lives here: a Celery message only ever says "look at run X now"; what to do is
read from these rows, under row locks."""

from __future__ import annotations

from django.db import models

from apps.tenants.scoping import TenantOwnedModel


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"   # frozen version ready, not started
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    ARCHIVED = "archived", "Archived"


class Campaign(TenantOwnedModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    dimension = models.CharField(max_length=63, default="profile",
                                 help_text="Name of the schema the campaign targets.")
    variables = models.JSONField(default=list, blank=True,
                                 help_text="Declared event variables: [{name, type, default, required}].")
    settings = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    live_version = models.ForeignKey("CampaignVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    has_run = models.BooleanField(default=False)
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="campaigns_campaign_status_idx")]

    def __str__(self) -> str:
        return self.name


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"


class CampaignVersion(TenantOwnedModel):
    """A campaign's graph. A draft is edited in place (with optimistic concurrency on
    `revision`); publishing freezes it for good."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    revision = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    edited_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    published_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "campaign", "number"], name="campaigns_version_number_key"),
        ]
        ordering = ["-number"]

    @property
    def is_frozen(self) -> bool:
        return self.status == VersionStatus.PUBLISHED

    def __str__(self) -> str:
        return f"{self.campaign_id} v{self.number}"


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    API = "api", "API trigger"
    SCHEDULE = "schedule", "Schedule"
    TEST = "test", "Test"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"          # waiting for the tenant's concurrency cap
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUSPENDED = "suspended", "Suspended for a fix"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.SUSPENDED)


class Run(TenantOwnedModel):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(CampaignVersion, on_delete=models.PROTECT, related_name="runs")
    graph = models.JSONField(help_text="The graph this run executes, frozen when it was created.")
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices)
    is_test = models.BooleanField(default=False)
    variables = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    schedule_key = models.CharField(max_length=120, null=True, blank=True,
                                    help_text="(schedule node, fire time) of a scheduled run; unique per campaign.")
    started_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    error = models.TextField(blank=True)
    error_node = models.CharField(max_length=64, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the sweeper should look at this run again.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "campaign", "schedule_key"], name="campaigns_run_schedule_key",
                                    condition=models.Q(schedule_key__isnull=False)),
        ]
        indexes = [
            models.Index(fields=["tenant", "campaign", "-created_at"], name="campaigns_run_campaign_idx"),
            models.Index(fields=["tenant", "status"], name="campaigns_run_status_idx"),
            models.Index(fields=["next_check_at"], name="campaigns_run_check_idx",
                         condition=models.Q(status__in=["queued", "running"])),
        ]
        ordering = ["-created_at", "-id"]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    def __str__(self) -> str:
        return f"run {self.pk} of {self.campaign_id}"


class NodeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_NODE_STATUSES = (NodeStatus.DONE, NodeStatus.SKIPPED)


class NodeState(TenantOwnedModel):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=64)
    type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    executions = models.PositiveIntegerField(default=0, help_text="Times the node's work was committed.")
    count_in = models.BigIntegerField(null=True, blank=True)
    count_out = models.BigIntegerField(null=True, blank=True)
    outputs = models.JSONField(default=dict, blank=True, help_text="port -> population")
    state = models.JSONField(default=dict, blank=True, help_text="What a waiting node keeps between wake-ups.")
    summary = models.JSONField(default=dict, blank=True)
    wake_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "run", "node_id"], name="campaigns_nodestate_run_node_key"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.node_id} {self.status}"


class RunLog(TenantOwnedModel):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    node_id = models.CharField(max_length=64, blank=True)
    level = models.CharField(max_length=8, default="info")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["tenant", "run", "created_at"], name="campaigns_runlog_run_idx")]


class Schedule(TenantOwnedModel):
    """A scheduler node of a live campaign with its next fire time. One beat entry fans out the
    due rows per tenant (`schedules.dangerously_fan_out`); each tenant's due rows are then
    dispatched in its own scope (docs/engine.md, "Scheduling")."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="schedules")
    node_id = models.CharField(max_length=64)
    spec = models.JSONField()
    time_zone = models.CharField(max_length=64)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "campaign", "node_id"], name="campaigns_schedule_node_key"),
        ]
        indexes = [models.Index(fields=["tenant", "next_fire_at"], name="campaigns_schedule_due_idx",
                                condition=models.Q(is_active=True)),
                   # the fan-out's scan across tenants
                   models.Index(fields=["next_fire_at"], name="campaigns_schedule_fire_idx",
                                condition=models.Q(is_active=True))]


class DispatchClaim(TenantOwnedModel):
    """A tenant whose due schedules the fan-out has handed to a dispatcher, and when; the dispatch
    deletes it. A claim older than a minute means the message was lost: the fan-out sends again."""

    claimed_at = models.DateTimeField()

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant"], name="campaigns_dispatchclaim_tenant_key"),
        ]
