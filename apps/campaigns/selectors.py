"""Reads of campaigns and runs: lists, details, monitoring."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Q, QuerySet

from apps.activities.base import Population
from apps.campaigns.graph import Graph
from apps.campaigns.models import Campaign, CampaignVersion, NodeState, Run, RunLog, Schedule
from apps.campaigns.populations import sample
from apps.core.errors import NotFound
from apps.tenants.models import Tenant


def campaign_list(*, tenant: Tenant, filters: dict[str, Any] | None = None) -> QuerySet[Campaign]:
    filters = filters or {}
    qs = Campaign.objects.filter(tenant=tenant)
    if status := filters.get("status"):
        qs = qs.filter(status=status)
    else:
        qs = qs.exclude(status="archived")
    if search := filters.get("search"):
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if tag := filters.get("tag"):
        qs = qs.filter(tags__contains=[tag])
    return qs.order_by("-updated_at", "-id")


def campaign_get(*, tenant: Tenant, id: Any) -> Campaign:
    """The same NotFound for a missing campaign and for another tenant's."""
    try:
        return Campaign.objects.get(tenant=tenant, pk=int(id))
    except (Campaign.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such campaign.") from None


def version_list(*, campaign: Campaign) -> QuerySet[CampaignVersion]:
    return campaign.versions.order_by("-number")


def run_list(*, tenant: Tenant, campaign: Campaign | None = None,
             filters: dict[str, Any] | None = None) -> QuerySet[Run]:
    qs = Run.objects.filter(tenant=tenant).select_related("campaign", "version")
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    filters = filters or {}
    if status := filters.get("status"):
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def run_get(*, tenant: Tenant, id: Any) -> Run:
    try:
        return Run.objects.select_related("campaign", "version").get(tenant=tenant, pk=int(id))
    except (Run.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such run.") from None


def run_nodes(*, run: Run) -> list[NodeState]:
    return list(NodeState.objects.filter(run=run).order_by("id"))


def run_transitions(*, run: Run) -> list[dict[str, Any]]:
    """Each edge of the run's graph with the count of the population that took it (None while
    not reached; 0 for a branch that was not taken)."""
    graph = Graph(run.graph)
    nodes = {n.node_id: n for n in NodeState.objects.filter(run=run)}
    result = []
    for index, edge in enumerate(graph.edges):
        source = nodes.get(edge.source)
        output = (source.outputs or {}).get(edge.port) if source else None
        finished = source is not None and source.status in ("done", "skipped")
        result.append({
            "index": index, "from": edge.source, "port": edge.port, "to": edge.target,
            "active": output is not None,
            "count": output.get("count") if output else (0 if finished else None),
            "columns": [c["name"] for c in output.get("columns", [])] if output else [],
        })
    return result


def transition_sample(*, run: Run, index: int, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    graph = Graph(run.graph)
    if not 0 <= index < len(graph.edges):
        raise NotFound("No such transition.")
    edge = graph.edges[index]
    source = NodeState.objects.filter(run=run, node_id=edge.source).first()
    output = (source.outputs or {}).get(edge.port) if source else None
    if output is None:
        return {"columns": [], "rows": [], "count": 0}
    if run.purged_at:
        return {"columns": [], "rows": [], "count": output.get("count", 0), "purged": True}
    with connection.cursor() as cursor:
        return sample(cursor, Population.from_dict(output), limit=limit, offset=offset)


def run_log(*, run: Run, level: str | None = None, node_id: str | None = None, search: str | None = None,
            limit: int = 500) -> list[RunLog]:
    qs = RunLog.objects.filter(run=run)
    if level:
        qs = qs.filter(level=level)
    if node_id:
        qs = qs.filter(node_id=node_id)
    if search:
        qs = qs.filter(message__icontains=search)
    return list(qs.order_by("created_at", "id")[:limit])


def campaign_schedule(*, campaign: Campaign) -> Schedule | None:
    return Schedule.objects.filter(campaign=campaign).first()


def schedule_next_fires(*, schedule: Schedule | None, count: int = 5) -> list[dt.datetime]:
    """The next `count` fire times of an armed schedule, in its own time zone (the campaign's);
    empty when it is not armed (a paused or stopped campaign has no schedule row)."""
    from apps.campaigns.schedules import preview

    if schedule is None or not schedule.is_active or schedule.next_fire_at is None:
        return []
    zone = ZoneInfo(schedule.time_zone)
    fires = [schedule.next_fire_at, *preview(schedule.spec, schedule.time_zone, schedule.next_fire_at, count - 1)]
    return [fire.astimezone(zone) for fire in fires[:count]]
