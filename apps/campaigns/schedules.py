"""When scheduled campaigns fire: next fire times of a Scheduler node's spec in the campaign's
time zone (DST-safe), and the per-tenant dispatcher that turns due schedules into runs.

Local wall-clock times are converted with zoneinfo: a time that does not exist on a
spring-forward day fires at the same instant one hour later on the wall clock; a time that
happens twice on a fall-back day fires once, at its first occurrence."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.campaigns.models import Campaign, CampaignStatus, Schedule
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
RECURRING_MODES = {"daily", "weekly", "monthly", "cron"}
SCHEDULED_MODES = RECURRING_MODES | {"once"}
HORIZON_DAYS = 800


def _parse_time(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def _local(date: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(date, at).replace(tzinfo=tz, fold=0)


def _nth_weekday(year: int, month: int, weekday: int, ordinal: int) -> dt.date | None:
    if ordinal > 0:
        first = dt.date(year, month, 1)
        day = first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (ordinal - 1))
        return day if day.month == month else None
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    day = last - dt.timedelta(days=(last.weekday() - weekday) % 7 + 7 * (-ordinal - 1))
    return day if day.month == month else None


def _date_matches(spec: dict[str, Any], date: dt.date) -> bool:
    mode = spec["mode"]
    if mode == "daily":
        return True
    if mode == "weekly":
        return WEEKDAYS[date.weekday()] in spec.get("weekdays", [])
    if mode == "monthly":
        if spec.get("days"):
            last_day = (dt.date(date.year + (date.month == 12), date.month % 12 + 1, 1) - dt.timedelta(days=1)).day
            return any(d == date.day or (d == -1 and date.day == last_day) for d in spec["days"])
        weekday = WEEKDAYS.index(spec["weekday"])
        return _nth_weekday(date.year, date.month, weekday, int(spec["ordinal"])) == date
    return False


def _bounds(spec: dict[str, Any], tz: ZoneInfo) -> tuple[dt.datetime | None, dt.datetime | None]:
    def parse(value: str | None) -> dt.datetime | None:
        if not value:
            return None
        moment = dt.datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)

    return parse(spec.get("valid_from")), parse(spec.get("valid_until"))


def next_fire(spec: dict[str, Any], tz_name: str, after: dt.datetime) -> dt.datetime | None:
    """The first fire time strictly after `after` (aware), in UTC; None when there is none."""
    tz = ZoneInfo(tz_name)
    mode = spec.get("mode")
    valid_from, valid_until = _bounds(spec, tz)
    if valid_from and after < valid_from:
        after = valid_from - dt.timedelta(microseconds=1)
    result: dt.datetime | None = None
    if mode == "once":
        at = dt.datetime.fromisoformat(spec["at"])
        at = at if at.tzinfo else at.replace(tzinfo=tz)
        result = at if at > after else None
    elif mode == "cron":
        from croniter import croniter

        result = croniter(spec["cron"], after.astimezone(tz)).get_next(dt.datetime)
    elif mode in RECURRING_MODES:
        times = sorted(_parse_time(t) for t in spec.get("times") or ["09:00"])
        day = after.astimezone(tz).date()
        for _ in range(HORIZON_DAYS):
            if _date_matches(spec, day):
                for at in times:
                    candidate = _local(day, at, tz)
                    if candidate > after:
                        result = candidate
                        break
                if result:
                    break
            day += dt.timedelta(days=1)
    if result is None or (valid_until and result > valid_until):
        return None
    return result.astimezone(dt.UTC)


def preview(spec: dict[str, Any], tz_name: str, after: dt.datetime, count: int = 10) -> list[dt.datetime]:
    times: list[dt.datetime] = []
    cursor = after
    while len(times) < count:
        fire = next_fire(spec, tz_name, cursor)
        if fire is None:
            break
        times.append(fire)
        cursor = fire
    return times


def campaign_time_zone(campaign: Campaign, spec: dict[str, Any] | None = None) -> str:
    return ((spec or {}).get("time_zone") or (campaign.settings or {}).get("time_zone")
            or campaign.tenant.time_zone or "UTC")


def start_spec(graph: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The (node id, config) of the graph's Scheduler node, if any."""
    for node in graph.get("nodes", []):
        if node.get("type") == "scheduler":
            return node["id"], node.get("config") or {}
    return None


def campaign_is_recurring(campaign: Campaign) -> bool:
    version = campaign.live_version
    found = start_spec(version.graph) if version else None
    return bool(found) and (found[1].get("mode") in RECURRING_MODES or found[1].get("mode") == "api")


def schedule_sync(*, campaign: Campaign, now: dt.datetime) -> Schedule | None:
    """Make the campaign's Schedule row match its live version (called when it goes live or is
    paused/resumed/stopped)."""
    Schedule.objects.filter(campaign=campaign).delete()
    version = campaign.live_version
    found = start_spec(version.graph) if version else None
    if campaign.status != CampaignStatus.LIVE or not found or found[1].get("mode") not in SCHEDULED_MODES:
        return None
    node_id, spec = found
    tz = campaign_time_zone(campaign, spec)
    return Schedule.objects.create(campaign=campaign, node_id=node_id, spec=spec, time_zone=tz,
                                   next_fire_at=next_fire(spec, tz, now))


def dispatch_due(*, tenant: Tenant, now: dt.datetime | None = None) -> int:
    """Start a run for each of the tenant's due schedules. A run's schedule key (node, fire time)
    is unique per campaign, so a double fire (two beats, a retried message) starts one run."""
    from apps.campaigns import engine, services

    now = now or engine.now()
    started = 0
    with transaction.atomic():
        due = list(Schedule.objects.select_for_update(skip_locked=True).select_related("campaign")
                   .filter(is_active=True, next_fire_at__lte=now))
        for schedule in due:
            fire_at = schedule.next_fire_at
            campaign = schedule.campaign
            if campaign.status == CampaignStatus.LIVE and campaign.live_version_id:
                try:
                    with transaction.atomic():
                        services.run_create(tenant=tenant, campaign=campaign, version=campaign.live_version,
                                            trigger="schedule", by=None,
                                            schedule_key=f"{schedule.node_id}@{fire_at.isoformat()}")
                        started += 1
                except IntegrityError:
                    logger.info("schedule %s already fired at %s", schedule.pk, fire_at)
            schedule.last_fired_at = fire_at
            schedule.next_fire_at = next_fire(schedule.spec, schedule.time_zone, max(now, fire_at))
            schedule.save(update_fields=["last_fired_at", "next_fire_at"])
    return started


def dispatch_interval_seconds() -> int:
    return int(getattr(settings, "SCHEDULE_DISPATCH_SECONDS", 15))


def tenant_beat_entry_ensure(tenant: Tenant) -> None:
    """The tenant's own django-celery-beat entry (visible and pausable in the admin)."""
    import json

    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=dispatch_interval_seconds(),
                                                      period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(
        name=f"dispatch schedules of tenant {tenant.slug}",
        defaults={"task": "campaigns.dispatch_due_schedules", "interval": every,
                  "kwargs": json.dumps({"tenant_id": tenant.pk}), "enabled": tenant.is_active},
    )


def global_beat_entries_ensure() -> None:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    sweep_every, _ = IntervalSchedule.objects.get_or_create(every=int(getattr(settings, "SWEEP_SECONDS", 10)),
                                                            period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="sweep stalled runs", defaults={
        "task": "campaigns.sweep_stalled_runs", "interval": sweep_every, "enabled": True})
    nightly, _ = CrontabSchedule.objects.get_or_create(minute="17", hour="3", day_of_week="*",
                                                       day_of_month="*", month_of_year="*")
    PeriodicTask.objects.update_or_create(name="purge expired runs", defaults={
        "task": "campaigns.purge_expired_runs", "crontab": nightly, "enabled": True})
