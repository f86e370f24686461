"""Scheduling: fire times in the campaign's time zone across DST changes (a frozen clock: times
are passed in), monthly "second Tuesday", validity periods, and the per-tenant dispatcher that
starts exactly one run per fire time however often it is called."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django_celery_beat.models import PeriodicTask

from apps.campaigns import schedules, services
from apps.campaigns.models import Run, Schedule
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


def at(y, m, d, h=0, mi=0, tz=PARIS):
    return dt.datetime(y, m, d, h, mi, tzinfo=tz)


def test_daily_across_spring_forward_keeps_the_wall_clock():
    spec = {"mode": "daily", "times": ["09:00"]}
    fires = schedules.preview(spec, "Europe/Paris", at(2026, 3, 27, 12), count=4)
    assert [f.astimezone(PARIS).hour for f in fires] == [9, 9, 9, 9]
    # 09:00 Paris is 08:00 UTC before the change (29 March 2026) and 07:00 UTC from then on.
    assert [f.astimezone(UTC).hour for f in fires] == [8, 7, 7, 7]


def test_a_time_that_does_not_exist_fires_once_an_hour_later_on_the_wall_clock():
    spec = {"mode": "daily", "times": ["02:30"]}
    fires = schedules.preview(spec, "Europe/Paris", at(2026, 3, 28, 12), count=2)
    assert fires[0] == dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert fires[1].astimezone(PARIS).hour == 2


def test_a_time_that_happens_twice_fires_once_on_fall_back():
    spec = {"mode": "daily", "times": ["02:30"]}
    fires = schedules.preview(spec, "Europe/Paris", at(2026, 10, 24, 12), count=2)
    assert fires[0] == dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST), only
    assert fires[1] == dt.datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_monthly_second_tuesday_and_last_day():
    spec = {"mode": "monthly", "ordinal": 2, "weekday": "tue", "times": ["10:00"]}
    fires = schedules.preview(spec, "Europe/Paris", at(2026, 1, 1), count=3)
    assert [f.astimezone(PARIS).date() for f in fires] == [dt.date(2026, 1, 13), dt.date(2026, 2, 10),
                                                            dt.date(2026, 3, 10)]
    last = schedules.preview({"mode": "monthly", "days": [-1], "times": ["08:00"]}, "UTC",
                             dt.datetime(2026, 1, 1, tzinfo=UTC), count=2)
    assert [f.date() for f in last] == [dt.date(2026, 1, 31), dt.date(2026, 2, 28)]


def test_weekly_several_times_a_day_within_validity():
    spec = {"mode": "weekly", "weekdays": ["mon", "thu"], "times": ["18:00", "08:00"],
            "valid_until": "2026-06-05T00:00"}
    fires = schedules.preview(spec, "Europe/Paris", at(2026, 6, 1), count=10)
    assert [f.astimezone(PARIS).strftime("%a %H") for f in fires] == ["Mon 08", "Mon 18", "Thu 08", "Thu 18"]


def test_cron_in_the_campaign_time_zone():
    fires = schedules.preview({"mode": "cron", "cron": "30 7 * * 1-5"}, "America/New_York",
                              dt.datetime(2026, 11, 20, 0, 0, tzinfo=UTC), count=2)
    assert [f.astimezone(ZoneInfo("America/New_York")).strftime("%a %H:%M") for f in fires] == ["Fri 07:30",
                                                                                                "Mon 07:30"]


def test_each_tenant_has_its_own_beat_entry(acme, globex):
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {"dispatch schedules of tenant acme", "dispatch schedules of tenant globex"} <= names


def test_double_fire_starts_one_run_and_pause_stops_the_schedule(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    graph = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                       {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "end"}]}
    campaign = make_campaign(acme, marketer, graph)
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        assert services.campaign_start(tenant=acme, campaign=campaign, by=marketer) is None
        schedule = Schedule.objects.get(campaign=campaign)
        assert schedule.next_fire_at.astimezone(PARIS).hour == 9
        fire = schedule.next_fire_at
        # Two dispatchers at the same fire time (two beat processes, a redelivered message)...
        Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=fire)
        with eager(execute=True):
            assert schedules.dispatch_due(tenant=acme, now=fire + dt.timedelta(seconds=3)) == 1
        Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=fire)
        assert schedules.dispatch_due(tenant=acme, now=fire + dt.timedelta(seconds=4)) == 0
        runs = list(Run.objects.filter(campaign=campaign))
        assert len(runs) == 1 and runs[0].trigger == "schedule" and runs[0].status == "completed"
        schedule.refresh_from_db()
        assert schedule.next_fire_at == fire + dt.timedelta(days=1)
        campaign.refresh_from_db()
        assert campaign.status == "live"  # recurring campaigns stay live

        services.campaign_pause(tenant=acme, campaign=campaign, by=marketer)
        assert not Schedule.objects.filter(campaign=campaign).exists()
        assert schedules.dispatch_due(tenant=acme, now=fire + dt.timedelta(days=2)) == 0
        services.campaign_resume(tenant=acme, campaign=campaign, by=marketer)
        assert Schedule.objects.filter(campaign=campaign).exists()
