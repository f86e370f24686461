"""Campaign lifecycle: every change of state is one function here, with its own permission
check (by capability), an audit entry, and kicks sent after commit."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Max

from apps.activities.base import ValidationContext
from apps.campaigns import engine, schedules
from apps.campaigns.graph import DEFAULT_MAX_ACTIVITIES, DEFAULT_MAX_CHANNELS, validate_graph
from apps.campaigns.models import (
    ACTIVE_RUN_STATUSES,
    Campaign,
    CampaignStatus,
    CampaignVersion,
    NodeState,
    NodeStatus,
    Run,
    RunStatus,
    RunTrigger,
    VersionStatus,
)
from apps.campaigns.populations import drop_run_tables
from apps.core.errors import ApplicationError, Conflict, PermissionDenied
from apps.schemas.models import DataSchema
from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import role_can
from apps.tenants.scoping import tenant_scope
from apps.tenants.services import audit_record

logger = logging.getLogger(__name__)

VARIABLE_TYPES = {"string", "integer", "decimal", "boolean", "date", "datetime", "json"}
EMPTY_GRAPH = {"nodes": [], "edges": []}


def _require(tenant: Tenant, by: User | None, capability: str) -> None:
    if by is None:  # the system (scheduler, engine) acts with full rights
        return
    membership = Membership.objects.filter(tenant=tenant, user=by, is_active=True).first()
    if membership is None or not role_can(membership.role, capability):
        raise PermissionDenied()


def _lock(tenant: Tenant, campaign: Campaign, by: User | None, capability: str) -> Campaign:
    """Check `by` may do this, then lock the campaign's row (within `tenant`) for the change."""
    _require(tenant, by, capability)
    return Campaign.objects.select_for_update().get(tenant=tenant, pk=campaign.pk)


def _illegal(campaign: Campaign, action: str) -> Conflict:
    return Conflict(f"Cannot {action} a campaign that is {campaign.get_status_display().lower()}.",
                    code="illegal_transition")


# Declarations ---------------------------------------------------------------------------------

def validate_declarations(variables: Any) -> list[dict[str, Any]]:
    if not isinstance(variables, list):
        raise ApplicationError("Variables must be a list.", fields={"variables": ["Must be a list."]})
    names = set()
    for index, decl in enumerate(variables):
        if not isinstance(decl, dict) or not isinstance(decl.get("name"), str) or not decl["name"].isidentifier():
            raise ApplicationError("Invalid variable declaration.",
                                   fields={f"variables[{index}]": ["Needs a `name` that is an identifier."]})
        if decl.get("type", "string") not in VARIABLE_TYPES:
            raise ApplicationError("Invalid variable type.", fields={
                f"variables[{index}].type": [f"Choose one of {', '.join(sorted(VARIABLE_TYPES))}."]})
        if decl["name"] in names:
            raise ApplicationError("Duplicate variable.", fields={f"variables[{index}].name": ["Declared twice."]})
        names.add(decl["name"])
    return variables


def coerce_variables(campaign: Campaign, given: Any) -> dict[str, Any]:
    """Event variables checked against the campaign's declarations, defaults filled in."""
    from apps.schemas.types import InvalidValue, coerce

    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ApplicationError("`variables` must be an object.", fields={"variables": ["Must be an object."]})
    declared = {d["name"]: d for d in campaign.variables or []}
    errors: dict[str, list[str]] = {}
    for name in given:
        if name not in declared:
            errors[f"variables.{name}"] = ["Not declared by this campaign."]
    values: dict[str, Any] = {}
    for name, decl in declared.items():
        if name in given:
            try:
                values[name] = coerce(decl.get("type", "string"), given[name])
            except InvalidValue as exc:
                errors[f"variables.{name}"] = [str(exc)]
        elif "default" in decl:
            values[name] = decl["default"]
        elif decl.get("required"):
            errors[f"variables.{name}"] = ["Required."]
    if errors:
        raise ApplicationError("Invalid variables.", fields=errors)
    return values


# Create and edit --------------------------------------------------------------------------------

@transaction.atomic
def campaign_create(*, tenant: Tenant, by: User | None, name: str, description: str = "",
                    tags: list[str] | None = None, dimension: str = "profile",
                    variables: list[dict[str, Any]] | None = None, settings: dict[str, Any] | None = None,
                    graph: dict[str, Any] | None = None) -> Campaign:
    _require(tenant, by, "campaigns.build")
    if not DataSchema.objects.filter(name=dimension).exists():
        raise ApplicationError("Unknown targeting dimension.", fields={"dimension": [f"No schema {dimension!r}."]})
    campaign = Campaign.objects.create(
        name=name, description=description, tags=tags or [], owner=by, dimension=dimension,
        variables=validate_declarations(variables or []), settings=settings or {},
    )
    CampaignVersion.objects.create(campaign=campaign, number=1, graph=graph or EMPTY_GRAPH, created_by=by,
                                   edited_by=by)
    audit_record(tenant=tenant, actor=by, action="campaign.create", obj=campaign, data={"name": name})
    return campaign


CAMPAIGN_EDITABLE = ("name", "description", "tags", "variables", "settings", "dimension")


@transaction.atomic
def campaign_update(*, tenant: Tenant, campaign: Campaign, by: User | None, **changes: Any) -> Campaign:
    campaign = _lock(tenant, campaign, by, "campaigns.build")
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _illegal(campaign, "edit")
    if "variables" in changes:
        validate_declarations(changes["variables"])
    if "dimension" in changes and changes["dimension"] != campaign.dimension:
        if campaign.has_run or campaign.status != CampaignStatus.DRAFT:
            raise Conflict("The targeting dimension can only change before the campaign has run.")
        if not DataSchema.objects.filter(name=changes["dimension"]).exists():
            raise ApplicationError("Unknown targeting dimension.", fields={"dimension": ["No such schema."]})
    for field, value in changes.items():
        if field in CAMPAIGN_EDITABLE:
            setattr(campaign, field, value)
    campaign.save()
    audit_record(tenant=tenant, actor=by, action="campaign.update", obj=campaign, data={"fields": sorted(changes)})
    return campaign


def draft_version(campaign: Campaign) -> CampaignVersion:
    """The campaign's editable version (the newest one, when it is a draft)."""
    latest = campaign.versions.order_by("-number").first()
    return latest


@transaction.atomic
def draft_update(*, tenant: Tenant, campaign: Campaign, by: User | None, graph: dict[str, Any],
                 revision: int | None = None) -> CampaignVersion:
    """Save the draft graph. Editing a published campaign starts a new draft version. With
    `revision`, a concurrent save by someone else is a conflict, never a silent overwrite."""
    campaign = _lock(tenant, campaign, by, "campaigns.build")
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _illegal(campaign, "edit")
    if not isinstance(graph, dict):
        raise ApplicationError("The graph must be an object.", fields={"graph": ["Must be an object."]})
    latest = campaign.versions.select_for_update().order_by("-number").first()
    if revision is not None and revision != latest.revision:
        raise Conflict(f"The draft was saved by someone else meanwhile (revision {latest.revision}); "
                       "reload it before saving.", code="edit_conflict",
                       fields={"revision": [f"Current revision is {latest.revision}."]})
    if latest.is_frozen:
        number = (campaign.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        latest = CampaignVersion.objects.create(campaign=campaign, number=number, graph=graph, created_by=by,
                                                edited_by=by, revision=latest.revision + 1)
    else:
        latest.graph = graph
        latest.revision += 1
        latest.edited_by = by
        latest.save(update_fields=["graph", "revision", "edited_by", "updated_at"])
    campaign.save(update_fields=["updated_at"])
    audit_record(tenant=tenant, actor=by, action="campaign.draft_update", obj=campaign,
                 data={"version": latest.number, "revision": latest.revision})
    return latest


def validation_context(campaign: Campaign, schemas: dict[str, DataSchema] | None = None) -> ValidationContext:
    """What graph validation knows of `campaign`; `schemas` (the tenant's, by name, with fields and
    links prefetched) is read here unless the caller already holds it."""
    if schemas is None:
        schemas = {s.name: s for s in DataSchema.objects.prefetch_related("fields", "links")}
    return ValidationContext(
        tenant=campaign.tenant, dimension=campaign.dimension, campaign=campaign,
        variables={d["name"]: d for d in campaign.variables or []}, schemas=schemas,
    )


def graph_problems(campaign: Campaign, graph: dict[str, Any]) -> list[dict[str, Any]]:
    settings = campaign.tenant.settings or {}
    problems = validate_graph(graph, validation_context(campaign),
                              max_activities=int(settings.get("max_activities", DEFAULT_MAX_ACTIVITIES)),
                              max_channels=int(settings.get("max_channel_activities", DEFAULT_MAX_CHANNELS)))
    return [p.as_dict() for p in problems]


def _ensure_valid(campaign: Campaign, graph: dict[str, Any]) -> None:
    problems = graph_problems(campaign, graph)
    if problems:
        raise ApplicationError(f"The graph has {len(problems)} problem(s).", code="invalid_graph",
                               fields={"graph": problems})


@transaction.atomic
def campaign_publish(*, tenant: Tenant, campaign: Campaign, by: User | None) -> CampaignVersion:
    """Validate the draft and freeze it. A live campaign keeps running its current version until
    it is started again."""
    campaign = _lock(tenant, campaign, by, "campaigns.build")
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _illegal(campaign, "publish")
    version = draft_version(campaign)
    if version.is_frozen:
        raise Conflict("There is no draft to publish: the latest version is already published.",
                       code="nothing_to_publish")
    _ensure_valid(campaign, version.graph)
    version.status = VersionStatus.PUBLISHED
    version.published_at = engine.now()
    version.published_by = by
    version.save(update_fields=["status", "published_at", "published_by"])
    if campaign.status == CampaignStatus.DRAFT:
        campaign.status = CampaignStatus.PUBLISHED
    if campaign.status in (CampaignStatus.PUBLISHED, CampaignStatus.COMPLETED, CampaignStatus.STOPPED,
                           CampaignStatus.FAILED):
        campaign.live_version = version
    campaign.save()
    audit_record(tenant=tenant, actor=by, action="campaign.publish", obj=campaign, data={"version": version.number})
    return version


# Runs --------------------------------------------------------------------------------------------

def run_create(*, tenant: Tenant, campaign: Campaign, version: CampaignVersion, trigger: str,
               by: User | None, variables: dict[str, Any] | None = None, is_test: bool = False,
               schedule_key: str | None = None, graph: dict[str, Any] | None = None) -> Run:
    """Create a run of `version` (its graph frozen into the run) and kick it."""
    graph = graph if graph is not None else version.graph
    run = Run.objects.create(
        campaign=campaign, version=version, graph=graph, trigger=trigger, is_test=is_test,
        variables=coerce_variables(campaign, variables), started_by=by, schedule_key=schedule_key,
        status=RunStatus.QUEUED, next_check_at=engine.now() + dt.timedelta(seconds=engine.STALL_SECONDS),
    )
    NodeState.objects.bulk_create([
        NodeState(tenant=tenant, run=run, node_id=node["id"], type=node["type"]) for node in graph["nodes"]
    ])
    if not is_test and not campaign.has_run:
        Campaign.objects.filter(pk=campaign.pk).update(has_run=True)
    engine.kick_run(run)
    return run


# One statement creates a batch's runs (their graph copied from the live version inside the
# database, a double fire skipped by the unique schedule key), their node states and the campaigns'
# `has_run` flag. Every row takes its tenant from its campaign, and only the batch's tenants match.
_CREATE_SCHEDULED_RUNS = """
WITH fired AS (
    SELECT * FROM unnest(%(campaigns)s::bigint[], %(keys)s::text[], %(variables)s::jsonb[])
                  AS f (campaign_id, schedule_key, variables)
), created AS (
    INSERT INTO campaigns_run (tenant_id, campaign_id, version_id, graph, trigger, is_test, variables, status,
                               schedule_key, error, error_node, consecutive_errors, next_check_at, created_at)
    SELECT c.tenant_id, c.id, v.id, v.graph, %(trigger)s, false, f.variables, %(status)s, f.schedule_key,
           '', '', 0, %(check_at)s, clock_timestamp()
      FROM fired AS f
      JOIN campaigns_campaign AS c ON c.id = f.campaign_id
      JOIN campaigns_campaignversion AS v ON v.id = c.live_version_id AND v.tenant_id = c.tenant_id
     WHERE c.tenant_id = ANY(%(tenants)s) AND c.status = %(live)s
    ON CONFLICT (tenant_id, campaign_id, schedule_key) WHERE schedule_key IS NOT NULL DO NOTHING
    RETURNING id, tenant_id, campaign_id, graph
), nodes AS (
    INSERT INTO campaigns_nodestate (tenant_id, run_id, node_id, type, status, attempts, executions, outputs,
                                     state, summary, error)
    SELECT r.tenant_id, r.id, n ->> 'id', n ->> 'type', %(pending)s, 0, 0, '{}', '{}', '{}', ''
      FROM created AS r, jsonb_array_elements(r.graph -> 'nodes') AS n
), flagged AS (
    UPDATE campaigns_campaign SET has_run = true
     WHERE id IN (SELECT campaign_id FROM created) AND tenant_id = ANY(%(tenants)s) AND NOT has_run
)
SELECT id, tenant_id FROM created
"""


def dangerously_runs_create_scheduled(*, tenant_ids: list[int], fires: list[tuple[int, list[Any], str]]) -> int:
    """Create the runs of due schedules of these tenants, one per (live campaign id, its variable
    declarations, schedule key), in one statement whatever their number; a key that already has a
    run (a double fire) is skipped. Kicks them after commit. Returns how many runs were created."""
    campaigns, keys, variables = [], [], []
    for campaign_id, declarations, key in fires:
        try:  # the declared defaults (most campaigns declare nothing)
            values = coerce_variables(Campaign(pk=campaign_id, variables=declarations), None) if declarations else {}
        except ApplicationError as exc:  # a required variable without default: nothing to run with
            logger.warning("scheduled run of campaign %s not started: %s", campaign_id, exc.message)
            continue
        campaigns.append(campaign_id)
        keys.append(key)
        variables.append(json.dumps(values, cls=DjangoJSONEncoder))
    if not campaigns:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_CREATE_SCHEDULED_RUNS, {
            "campaigns": campaigns, "keys": keys, "variables": variables, "tenants": list(tenant_ids),
            "trigger": RunTrigger.SCHEDULE.value, "status": RunStatus.QUEUED.value,
            "live": CampaignStatus.LIVE.value, "pending": NodeStatus.PENDING.value,
            "check_at": engine.now() + dt.timedelta(seconds=engine.STALL_SECONDS),
        })
        created = cursor.fetchall()
    engine.kick_runs(created)
    return len(created)


def _start_mode(version: CampaignVersion) -> str:
    found = schedules.start_spec(version.graph)
    return (found[1].get("mode") if found else None) or "asap"


@transaction.atomic
def campaign_start(*, tenant: Tenant, campaign: Campaign, by: User | None,
                   variables: dict[str, Any] | None = None) -> Run | None:
    """Make the published version live: run it now (as soon as possible), or arm its schedule,
    or wait for API triggers, as its Scheduler says."""
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status in (CampaignStatus.ARCHIVED, CampaignStatus.LIVE, CampaignStatus.PAUSED):
        raise _illegal(campaign, "start")
    version = campaign.versions.filter(status=VersionStatus.PUBLISHED).order_by("-number").first()
    if version is None:
        raise Conflict("Publish the campaign before starting it.", code="not_published")
    if Run.objects.filter(campaign=campaign, is_test=False, status__in=ACTIVE_RUN_STATUSES).exists():
        raise Conflict("A run of this campaign is still in progress.", code="run_in_progress")
    campaign.live_version = version
    campaign.status = CampaignStatus.LIVE
    campaign.save()
    run = None
    mode = _start_mode(version)
    if mode == "asap":
        run = run_create(tenant=tenant, campaign=campaign, version=version, trigger=RunTrigger.MANUAL, by=by,
                         variables=variables)
    schedules.schedule_sync(campaign=campaign, now=engine.now())
    audit_record(tenant=tenant, actor=by, action="campaign.start", obj=campaign,
                 data={"version": version.number, "mode": mode, "run": run.pk if run else None})
    return run


@transaction.atomic
def campaign_run_now(*, tenant: Tenant, campaign: Campaign, by: User | None,
                     variables: dict[str, Any] | None = None) -> Run:
    """"Run now": one extra run of a live scheduled campaign, outside its schedule."""
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status != CampaignStatus.LIVE:
        raise _illegal(campaign, "run")
    run = run_create(tenant=tenant, campaign=campaign, version=campaign.live_version, trigger=RunTrigger.MANUAL,
                     by=by, variables=variables)
    audit_record(tenant=tenant, actor=by, action="campaign.run_now", obj=campaign, data={"run": run.pk})
    return run


@transaction.atomic
def campaign_test(*, tenant: Tenant, campaign: Campaign, by: User | None,
                  variables: dict[str, Any] | None = None) -> Run:
    """Run the current draft (or latest version) in test mode: every activity computes its real
    counts; channels render samples and send nothing; nothing is written to the tenant's data."""
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _illegal(campaign, "test")
    version = draft_version(campaign)
    _ensure_valid(campaign, version.graph)
    run = run_create(tenant=tenant, campaign=campaign, version=version, trigger=RunTrigger.TEST, by=by,
                     variables=variables, is_test=True)
    audit_record(tenant=tenant, actor=by, action="campaign.test", obj=campaign, data={"run": run.pk})
    return run


@transaction.atomic
def campaign_trigger(*, tenant: Tenant, campaign: Campaign, by: User | None,
                     variables: dict[str, Any] | None = None) -> Run:
    """An API trigger with event variables starts one run of the live version."""
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status != CampaignStatus.LIVE:
        raise _illegal(campaign, "trigger")
    interval = int((campaign.settings or {}).get("min_trigger_interval_seconds", 0) or 0)
    current = engine.now()
    if interval and campaign.last_triggered_at:
        wait = (campaign.last_triggered_at + dt.timedelta(seconds=interval) - current).total_seconds()
        if wait > 0:
            raise ApplicationError(f"Triggered too soon: wait {int(wait) + 1} s.", code="too_soon", status=429,
                                   headers={"Retry-After": str(int(wait) + 1)})
    run = run_create(tenant=tenant, campaign=campaign, version=campaign.live_version, trigger=RunTrigger.API,
                     by=by, variables=variables)
    campaign.last_triggered_at = current
    campaign.save(update_fields=["last_triggered_at"])
    audit_record(tenant=tenant, actor=by, action="campaign.trigger", obj=campaign,
                 data={"run": run.pk, "variables": run.variables})
    return run


def _active_runs(campaign: Campaign):
    return Run.objects.select_for_update().filter(campaign=campaign, is_test=False, status__in=ACTIVE_RUN_STATUSES)


@transaction.atomic
def campaign_pause(*, tenant: Tenant, campaign: Campaign, by: User | None) -> Campaign:
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status != CampaignStatus.LIVE:
        raise _illegal(campaign, "pause")
    campaign.status = CampaignStatus.PAUSED
    campaign.save()
    for run in _active_runs(campaign).filter(status__in=[RunStatus.RUNNING, RunStatus.QUEUED]):
        run.status = RunStatus.PAUSED
        run.next_check_at = None
        run.save(update_fields=["status", "next_check_at"])
        engine.log(run, "Run paused: running activities finish, no new one starts.")
    schedules.schedule_sync(campaign=campaign, now=engine.now())
    audit_record(tenant=tenant, actor=by, action="campaign.pause", obj=campaign)
    return campaign


@transaction.atomic
def campaign_resume(*, tenant: Tenant, campaign: Campaign, by: User | None) -> Campaign:
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status != CampaignStatus.PAUSED:
        raise _illegal(campaign, "resume")
    campaign.status = CampaignStatus.LIVE
    campaign.save()
    for run in _active_runs(campaign).filter(status=RunStatus.PAUSED):
        run.status = RunStatus.RUNNING
        run.save(update_fields=["status"])
        NodeState.objects.filter(run=run, status=NodeStatus.READY).update(queued_at=None)
        engine.log(run, "Run resumed.")
        engine.kick_run(run)
    schedules.schedule_sync(campaign=campaign, now=engine.now())
    audit_record(tenant=tenant, actor=by, action="campaign.resume", obj=campaign)
    return campaign


@transaction.atomic
def campaign_stop(*, tenant: Tenant, campaign: Campaign, by: User | None) -> Campaign:
    campaign = _lock(tenant, campaign, by, "campaigns.run")
    if campaign.status not in (CampaignStatus.LIVE, CampaignStatus.PAUSED, CampaignStatus.FAILED):
        raise _illegal(campaign, "stop")
    campaign.status = CampaignStatus.STOPPED
    campaign.save()
    for run in _active_runs(campaign):
        _stop_run(run)
    schedules.schedule_sync(campaign=campaign, now=engine.now())
    audit_record(tenant=tenant, actor=by, action="campaign.stop", obj=campaign)
    return campaign


def _stop_run(run: Run) -> None:
    NodeState.objects.filter(run=run, status__in=[NodeStatus.PENDING, NodeStatus.READY, NodeStatus.WAITING]
                             ).update(status=NodeStatus.CANCELLED)
    run.status = RunStatus.STOPPED
    run.finished_at = engine.now()
    run.next_check_at = None
    run.save(update_fields=["status", "finished_at", "next_check_at"])
    engine.log(run, "Run stopped.")


@transaction.atomic
def run_stop(*, tenant: Tenant, run: Run, by: User | None) -> Run:
    _require(tenant, by, "campaigns.run")
    run = Run.objects.select_for_update().get(pk=run.pk)
    if not run.is_active:
        raise Conflict(f"The run is already {run.status}.", code="illegal_transition")
    _stop_run(run)
    audit_record(tenant=tenant, actor=by, action="run.stop", obj=run)
    return run


@transaction.atomic
def run_retry(*, tenant: Tenant, run: Run, by: User | None) -> Run:
    """After the cause is fixed: run the failed activity again and go on from there."""
    _require(tenant, by, "campaigns.run")
    run = Run.objects.select_for_update().select_related("campaign").get(pk=run.pk)
    if run.status not in (RunStatus.FAILED, RunStatus.SUSPENDED):
        raise Conflict("Only a failed or suspended run can be retried.", code="illegal_transition")
    NodeState.objects.filter(run=run, status=NodeStatus.FAILED).update(
        status=NodeStatus.READY, error="", queued_at=None, finished_at=None)
    NodeState.objects.filter(run=run, status=NodeStatus.CANCELLED).update(status=NodeStatus.PENDING)
    run.status = RunStatus.RUNNING
    run.error = run.error_node = ""
    run.finished_at = None
    run.consecutive_errors = 0
    run.save(update_fields=["status", "error", "error_node", "finished_at", "consecutive_errors"])
    campaign = run.campaign
    if campaign.status == CampaignStatus.FAILED:
        campaign.status = CampaignStatus.LIVE
        campaign.save(update_fields=["status", "updated_at"])
    engine.log(run, "Run retried from the failed activity.")
    engine.kick_run(run)
    audit_record(tenant=tenant, actor=by, action="run.retry", obj=run)
    return run


@transaction.atomic
def campaign_duplicate(*, tenant: Tenant, campaign: Campaign, by: User | None, name: str | None = None) -> Campaign:
    _require(tenant, by, "campaigns.build")
    source = draft_version(campaign)
    copy = campaign_create(tenant=tenant, by=by, name=name or f"{campaign.name} (copy)",
                           description=campaign.description, tags=list(campaign.tags or []),
                           dimension=campaign.dimension, variables=list(campaign.variables or []),
                           settings=dict(campaign.settings or {}), graph=source.graph)
    audit_record(tenant=tenant, actor=by, action="campaign.duplicate", obj=copy, data={"from": campaign.pk})
    return copy


@transaction.atomic
def campaign_archive(*, tenant: Tenant, campaign: Campaign, by: User | None) -> Campaign:
    campaign = _lock(tenant, campaign, by, "campaigns.build")
    if campaign.status in (CampaignStatus.LIVE, CampaignStatus.PAUSED):
        raise Conflict("Stop the campaign before archiving it.", code="illegal_transition")
    if campaign.status == CampaignStatus.ARCHIVED:
        raise _illegal(campaign, "archive")
    campaign.status = CampaignStatus.ARCHIVED
    campaign.save()
    audit_record(tenant=tenant, actor=by, action="campaign.archive", obj=campaign)
    return campaign


@transaction.atomic
def campaign_back_to_draft(*, tenant: Tenant, campaign: Campaign, by: User | None) -> Campaign:
    """Allowed only while a scheduled campaign has not run yet."""
    campaign = _lock(tenant, campaign, by, "campaigns.build")
    if campaign.status not in (CampaignStatus.LIVE, CampaignStatus.PUBLISHED, CampaignStatus.PAUSED):
        raise _illegal(campaign, "return to draft")
    if campaign.has_run or Run.objects.filter(campaign=campaign, is_test=False).exists():
        raise Conflict("This campaign has already run: duplicate it instead.", code="already_ran")
    campaign.status = CampaignStatus.DRAFT
    campaign.live_version = None
    campaign.save()
    schedules.schedule_sync(campaign=campaign, now=engine.now())
    audit_record(tenant=tenant, actor=by, action="campaign.back_to_draft", obj=campaign)
    return campaign


def dangerously_purge_expired_runs() -> int:
    """Drop working populations of finished runs older than their retention (campaign setting,
    else the tenant's). Crosses tenants on purpose: it is the nightly job."""
    purged = 0
    current = engine.now()
    runs = (Run.dangerously_unscoped.filter(purged_at__isnull=True, finished_at__isnull=False)
            .select_related("campaign", "tenant"))
    for run in runs.iterator():
        days = int((run.campaign.settings or {}).get("retention_days") or run.tenant.data_retention_days or 30)
        if run.finished_at + dt.timedelta(days=days) > current:
            continue
        with tenant_scope(run.tenant), transaction.atomic(), connection.cursor() as cursor:
            drop_run_tables(cursor, run.pk)
            Run.objects.filter(pk=run.pk).update(purged_at=current)
            engine.log(run, f"Working populations purged after {days} days.")
            purged += 1
    return purged
