"""Scheduling: fire times in the campaign's time zone across DST changes (a frozen clock: times
are passed in), monthly "second Tuesday", validity periods, and the dispatcher (one beat entry fanning out per tenant) that starts exactly
one run per fire time however often it is called."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.campaigns import engine, schedules, services
from apps.campaigns.models import DispatchClaim, Run, Schedule
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


DAILY = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                   {"id": "end", "type": "end"}],
         "edges": [{"from": "start", "port": "out", "to": "end"}]}


def live_daily_campaign(tenant, person):
    campaign = make_campaign(tenant, person, DAILY)
    with tenant_scope(tenant):
        services.campaign_publish(tenant=tenant, campaign=campaign, by=person)
        services.campaign_start(tenant=tenant, campaign=campaign, by=person)
        return Schedule.objects.get(campaign=campaign)


def test_one_beat_entry_replaces_the_per_tenant_entries(acme, globex):
    PeriodicTask.objects.create(name="dispatch schedules of tenant acme", task="campaigns.dispatch_due_schedules",
                                interval=IntervalSchedule.objects.create(every=15, period="seconds"))
    schedules.global_beat_entries_ensure()
    entries = {p.name: p for p in PeriodicTask.objects.all()}
    assert entries["dispatch due schedules"].task == "campaigns.fan_out_due_schedules"
    assert entries["dispatch due schedules"].interval.every == schedules.dispatch_interval_seconds()
    assert not [name for name in entries if name.startswith("dispatch schedules of tenant")]
    assert entries["close abandoned deliveries"].task == "channels.close_abandoned_deliveries"


def test_fan_out_dispatches_each_tenant_once_and_skips_a_paused_tenant(acme, globex, people, eager, monkeypatch):
    due = [live_daily_campaign(acme, people["acme"]["marketer"].user),
           live_daily_campaign(acme, people["acme"]["admin"].user),
           live_daily_campaign(globex, people["globex"]["marketer"].user)]
    fire = min(s.next_fire_at for s in due)  # acme's next 09:00 in Paris
    Schedule.dangerously_unscoped.filter(pk__in=[s.pk for s in due]).update(next_fire_at=fire)
    globex.settings = {"schedules_paused": True}
    globex.save()

    def clock(moment):
        monkeypatch.setattr(engine, "now", lambda: moment)

    clock(fire + dt.timedelta(seconds=2))
    with eager(execute=True):
        assert schedules.dangerously_fan_out() == 1  # acme only
    # A second tick finds acme's schedules moved on to tomorrow and globex's still paused.
    clock(fire + dt.timedelta(seconds=4))
    assert schedules.dangerously_fan_out() == 0
    with tenant_scope(acme):
        runs = list(Run.objects.filter(trigger="schedule"))
        assert len(runs) == 2 and {r.status for r in runs} == {"completed"}
        assert {s.next_fire_at for s in Schedule.objects.all()} == {fire + dt.timedelta(days=1)}
    with tenant_scope(globex):
        assert not Run.objects.exists()

    # Resumed, globex is dispatched at the next tick; a claim whose message was lost is sent
    # again once FAN_OUT_RETRY_SECONDS have passed, and still starts one run per fire time.
    globex.settings = {}
    globex.save()
    clock(fire + dt.timedelta(seconds=10))
    assert schedules.dangerously_fan_out() == 1  # outside `eager`, the message is never sent: lost
    clock(fire + dt.timedelta(seconds=15))
    assert schedules.dangerously_fan_out() == 0  # still claimed
    clock(fire + dt.timedelta(seconds=11 + schedules.FAN_OUT_RETRY_SECONDS))
    with eager(execute=True):
        assert schedules.dangerously_fan_out() == 1
    with tenant_scope(globex):
        assert Run.objects.filter(trigger="schedule").count() == 1
        assert not DispatchClaim.objects.exists()  # the dispatch clears its tenants' claims


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


def test_a_scheduled_run_gets_the_declared_defaults_and_its_node_states(acme, people, eager):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, DAILY, variables=[{"name": "promo", "type": "string",
                                                                "default": "WINTER"}])
    with tenant_scope(acme):
        services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
        fire = Schedule.objects.get(campaign=campaign).next_fire_at
        assert schedules.dispatch_due(tenant=acme, now=fire) == 1
        run = Run.objects.get(campaign=campaign)
        assert (run.trigger, run.status, run.variables) == ("schedule", "queued", {"promo": "WINTER"})
        assert run.graph == DAILY and run.schedule_key == f"start@{fire.isoformat()}"
        assert sorted(run.nodes.values_list("node_id", "status")) == [("end", "pending"), ("start", "pending")]
        campaign.refresh_from_db()
        assert campaign.has_run
