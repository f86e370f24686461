"""When scheduled campaigns fire: next fire times of a Scheduler node's spec in the campaign's
time zone (DST-safe), and the dispatcher that turns due schedules into runs: one beat entry fans
out, per batch of tenants with due rows, to a dispatch that runs in each tenant's scope.

Local wall-clock times are converted with zoneinfo: a time that does not exist on a
spring-forward day fires at the same instant one hour later on the wall clock; a time that
happens twice on a fall-back day fires once, at its first occurrence."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction

from apps.campaigns.models import Campaign, CampaignStatus, DispatchClaim, Schedule
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
RECURRING_MODES = {"daily", "weekly", "monthly", "cron"}
SCHEDULED_MODES = RECURRING_MODES | {"once"}
HORIZON_DAYS = 800
FAN_OUT_ENTRY = "dispatch due schedules"
FAN_OUT_BATCH = 100           # tenants per dispatch message
FAN_OUT_RETRY_SECONDS = 60    # a claimed tenant whose message got lost is sent again after this


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
    """Start a run for each of the tenant's due schedules (see `dangerously_dispatch_due`)."""
    return dangerously_dispatch_due([tenant.pk], now=now)


def dangerously_dispatch_due(tenant_ids: list[int], *, now: dt.datetime | None = None) -> int:
    """Start a run for each due schedule of these tenants, in a handful of statements whatever
    their number (the fan-out hands over FAN_OUT_BATCH tenants at a time). A run's schedule key
    (node, fire time) is unique per campaign, so a double fire (two beats, a retried message)
    starts one run. Crosses the given tenants on purpose: every row written takes its tenant from
    the schedule row it comes from. Returns how many runs were started."""
    from apps.campaigns import engine, services

    now = now or engine.now()
    with transaction.atomic():
        # Losing this commit in a database crash loses nothing: the runs and the moved schedule rows
        # go together, so the rows are due again and dispatched again after the restart (the kicks
        # of vanished runs find nothing). So it need not wait for its WAL flush.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        # FOR UPDATE waits rather than skips: a second dispatcher of the same rows (a claim sent
        # again) waits, then finds them moved on, instead of leaving them for another minute.
        # Rows are locked in id order, so two dispatchers cannot deadlock.
        due = list(Schedule.dangerously_unscoped.select_for_update(of=("self",))
                   .filter(tenant_id__in=tenant_ids, tenant__is_active=True, is_active=True, next_fire_at__lte=now)
                   .order_by("pk").values_list("pk", "tenant_id", "campaign_id", "node_id", "spec", "time_zone",
                                               "next_fire_at", "campaign__variables"))
        paused = {tenant.pk for tenant in Tenant.objects.filter(pk__in={row[1] for row in due})
                  if schedules_paused(tenant)}
        due = [row for row in due if row[1] not in paused]
        if not due:
            DispatchClaim.dangerously_unscoped.filter(tenant_id__in=tenant_ids).delete()
            return 0
        fires = [(campaign_id, declarations, f"{node_id}@{fire_at.isoformat()}")
                 for _, _, campaign_id, node_id, _, _, fire_at, declarations in due]
        started = services.dangerously_runs_create_scheduled(tenant_ids=sorted({row[1] for row in due}),
                                                             fires=fires)
        # Rows that move to the same next fire time are updated together.
        following: dict[tuple[str, str, dt.datetime], dt.datetime | None] = {}
        moves: dict[tuple[dt.datetime, dt.datetime | None], list[int]] = {}
        for pk, _, _, _, spec, time_zone, fire_at, _ in due:
            after = max(now, fire_at)
            key = (json.dumps(spec, sort_keys=True), time_zone, after)
            if key not in following:
                following[key] = next_fire(spec, time_zone, after)
            moves.setdefault((fire_at, following[key]), []).append(pk)
        for (fired, nxt), ids in moves.items():
            Schedule.dangerously_unscoped.filter(pk__in=ids).update(last_fired_at=fired, next_fire_at=nxt)
        DispatchClaim.dangerously_unscoped.filter(tenant_id__in=tenant_ids).delete()
    return started


def dispatch_interval_seconds() -> int:
    return int(getattr(settings, "SCHEDULE_DISPATCH_SECONDS", 5))


def schedules_paused(tenant: Tenant) -> bool:
    """A tenant admin (or an operator) pauses every schedule of the tenant with the tenant
    setting `schedules_paused`; each campaign's own schedule stops when it is paused."""
    return bool((tenant.settings or {}).get("schedules_paused"))


def dangerously_fan_out(now: dt.datetime | None = None) -> int:
    """What the one beat entry runs (docs/engine.md, "Scheduling"): claim every tenant with a due
    schedule in one statement (a `DispatchClaim` row per tenant, not a write per schedule), and
    send one message per FAN_OUT_BATCH claimed tenants. A claim expires after
    FAN_OUT_RETRY_SECONDS, so a lost message is sent again then; a tick while the previous
    messages are still queued sends nothing twice. Crosses tenants on purpose: it only claims and
    sends tenant ids; `dangerously_dispatch_due` writes every run with the tenant of the schedule
    row it comes from, and deletes the claims of its batch."""
    from apps.campaigns import engine, tasks

    now = now or engine.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_dispatchclaim (tenant_id, claimed_at)
            SELECT DISTINCT s.tenant_id, %(now)s::timestamptz
              FROM campaigns_schedule AS s JOIN tenants_tenant AS t ON t.id = s.tenant_id
             WHERE s.is_active AND s.next_fire_at <= %(now)s
               AND t.is_active AND NOT coalesce((t.settings ->> 'schedules_paused')::boolean, false)
            ON CONFLICT (tenant_id) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
             WHERE campaigns_dispatchclaim.claimed_at < %(retry)s
            RETURNING tenant_id
            """,
            {"now": now, "retry": now - dt.timedelta(seconds=FAN_OUT_RETRY_SECONDS)},
        )
        tenant_ids = sorted(row[0] for row in cursor.fetchall())
    for index in range(0, len(tenant_ids), FAN_OUT_BATCH):
        batch = tenant_ids[index:index + FAN_OUT_BATCH]
        transaction.on_commit(lambda batch=batch: tasks.dispatch_due_schedules_of.delay(tenant_ids=batch))
    return len(tenant_ids)


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
    PeriodicTask.objects.update_or_create(name="close abandoned deliveries", defaults={
        "task": "channels.close_abandoned_deliveries", "crontab": nightly, "enabled": True})
    dispatch_every, _ = IntervalSchedule.objects.get_or_create(every=dispatch_interval_seconds(),
                                                               period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name=FAN_OUT_ENTRY, defaults={
        "task": "campaigns.fan_out_due_schedules", "interval": dispatch_every, "enabled": True})
    # Before the fan-out, each tenant had its own entry: beat cannot hold 10,000 of them.
    PeriodicTask.objects.filter(name__startswith="dispatch schedules of tenant ").delete()
