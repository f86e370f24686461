"""Engine benchmark: seconds of engine overhead per node, and schedule dispatch lag.

1. A 50-node flow graph of trivial nodes (a chain of Test activities) runs through the engine's
   real code paths (advance, row locks, outputs, logs) in this process, with Celery in eager mode
   so that the broker's latency is not counted: seconds per node. Flow activities are cheap, so
   `advance` executes them itself (`seconds_per_node`); the same chain with inline execution
   turned off (every node dispatched and run by the two-phase `execute_node`, as targeting and
   channel activities are) gives `seconds_per_dispatched_node`.
2. `--tenants` tenants x `--campaigns` live daily campaigns all due at the same fire time,
   created with set-based SQL; real Celery worker processes (`--concurrency`) consume the broker.
   Beat's tick is simulated in this process: the fan-out (`schedules.dangerously_fan_out`, what
   the one beat entry runs) is called at a random phase within `SCHEDULE_DISPATCH_SECONDS` after
   the fire time, then every interval; lag = run creation time - fire time, p50/p99.
   Before that, `--probe` empty per-tenant dispatch messages (what per-tenant beat entries would
   send for every tenant every interval) are timed on the same workers:
   `per_tenant_entries_busy_processes` is how many worker processes 10,000 such entries at a 15 s
   interval would keep busy doing nothing (beat's own work of emitting them not included).

3. `--beat-probe SECONDS` (alone): a real `celery beat` with one 15 s entry per tenant (the first
   design) and no worker; counts the messages it sends against the tenants / 15 per second needed.

Prints one JSON line. Run: python bench/engine.py [--tenants 10000 --campaigns 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django

django.setup()

import datetime as dt  # noqa: E402

from django.db import connection, transaction  # noqa: E402
from psycopg import sql  # noqa: E402

from apps.campaigns import engine, schedules, services  # noqa: E402
from apps.campaigns.models import Run, Schedule  # noqa: E402
from apps.tenants.models import Tenant  # noqa: E402
from apps.tenants.scoping import tenant_scope  # noqa: E402
from apps.tenants.services import tenant_create  # noqa: E402
from config.celery import app  # noqa: E402

PREFIX = "bench-engine"


def chain_graph(n: int) -> dict:
    nodes = [{"id": "start", "type": "scheduler", "config": {"mode": "api"}}]
    edges = []
    for i in range(n - 1):
        nodes.append({"id": f"t{i}", "type": "test", "config": {"conditions": [
            {"port": "never", "when": {"count": {"op": "lt", "value": 0}}}]}})
        edges.append({"from": nodes[-2]["id"], "port": "out" if i == 0 else "default", "to": f"t{i}"})
    return {"nodes": nodes, "edges": edges}


def drain(callbacks: list) -> None:
    while callbacks:
        callbacks.pop(0)()


def per_node(nodes: int, *, inline: bool = True) -> float:
    tenant = tenant_create(name="bench", slug=f"{PREFIX}-nodes-{time.time_ns()}", by=None)
    app.conf.task_always_eager = True
    inline_nodes = engine.INLINE_NODES
    engine.INLINE_NODES = inline_nodes if inline else 0
    pending: list = []
    real_on_commit = transaction.on_commit
    transaction.on_commit = lambda func, using=None, robust=False: pending.append(func)
    try:
        with tenant_scope(tenant):
            campaign = services.campaign_create(tenant=tenant, by=None, name="chain", graph=chain_graph(nodes))
            services.campaign_publish(tenant=tenant, campaign=campaign, by=None)
            services.campaign_start(tenant=tenant, campaign=campaign, by=None)
            pending.clear()
            started = time.perf_counter()
            run = services.campaign_trigger(tenant=tenant, campaign=campaign, by=None)
            drain(pending)
            elapsed = time.perf_counter() - started
            run.refresh_from_db()
            assert run.status == "completed", run.status
    finally:
        transaction.on_commit = real_on_commit
        app.conf.task_always_eager = False
        engine.INLINE_NODES = inline_nodes
    return elapsed / nodes


DAILY = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                   {"id": "end", "type": "end"}], "edges": [{"from": "start", "port": "out", "to": "end"}]}


def create_scheduled_world(tenants: int, campaigns: int, fire: dt.datetime, prefix: str) -> list[int]:
    """`tenants` tenants with `campaigns` live daily campaigns each, all due at `fire`, written with
    set-based SQL (creating them through the services would take longer than the bench)."""
    like = prefix + "%"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("""INSERT INTO tenants_tenant (name, slug, time_zone, data_retention_days, settings, is_active,
                                                      created_at)
                          SELECT 'bench ' || g, %s || g, 'UTC', 30, '{}', true, now()
                            FROM generate_series(1, %s) AS g""", [prefix, tenants])
        cursor.execute("""INSERT INTO campaigns_campaign (tenant_id, name, description, tags, dimension, variables,
                                                          settings, status, has_run, created_at, updated_at)
                          SELECT t.id, 'c' || j, '', '[]', 'profile', '[]', '{}', 'live', false, now(), now()
                            FROM tenants_tenant AS t, generate_series(1, %s) AS j
                           WHERE t.slug LIKE %s""", [campaigns, like])
        cursor.execute("""INSERT INTO campaigns_campaignversion (tenant_id, campaign_id, number, graph, status,
                                                                 revision, created_at, updated_at, published_at)
                          SELECT c.tenant_id, c.id, 1, %s, 'published', 1, now(), now(), now()
                            FROM campaigns_campaign AS c JOIN tenants_tenant AS t ON t.id = c.tenant_id
                           WHERE t.slug LIKE %s""", [json.dumps(DAILY), like])
        cursor.execute("""UPDATE campaigns_campaign AS c SET live_version_id = v.id
                            FROM campaigns_campaignversion AS v, tenants_tenant AS t
                           WHERE v.campaign_id = c.id AND t.id = c.tenant_id AND t.slug LIKE %s""", [like])
        cursor.execute("""INSERT INTO campaigns_schedule (tenant_id, campaign_id, node_id, spec, time_zone,
                                                          next_fire_at, is_active)
                          SELECT c.tenant_id, c.id, 'start', %s, 'UTC', %s, true
                            FROM campaigns_campaign AS c JOIN tenants_tenant AS t ON t.id = c.tenant_id
                           WHERE t.slug LIKE %s""", [json.dumps(DAILY["nodes"][0]["config"]), fire, like])
        cursor.execute("SELECT id FROM tenants_tenant WHERE slug LIKE %s ORDER BY id", [like])
        ids = [row[0] for row in cursor.fetchall()]
    with connection.cursor() as cursor:
        for table in ("tenants_tenant", "campaigns_campaign", "campaigns_campaignversion", "campaigns_schedule"):
            cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)).as_string(cursor.connection))
    return ids


class Workers:
    """Real Celery worker processes on the real broker and this database."""

    def __init__(self, concurrency: int) -> None:
        self.log = Path(tempfile.mkstemp(prefix="bench-engine-worker-", suffix=".log")[1])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-l", "info", "-c", str(concurrency),
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"bench-{os.getpid()}@%h"],
            cwd=Path(__file__).resolve().parent.parent, env=os.environ.copy(), stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while "ready." not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start: see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.unlink(missing_ok=True)


def queued() -> int:
    with app.connection_for_write() as conn:
        return conn.default_channel.client.llen(app.conf.task_default_queue)


def drain_seconds(send: list, workers_busy_timeout: float = 600) -> float:
    """Send the messages, then wait until the queue is empty: seconds the workers took."""
    started = time.monotonic()
    for message in send:
        message()
    while queued() and time.monotonic() - started < workers_busy_timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def dispatch_lag(tenants: int, campaigns: int, concurrency: int, probe: int) -> dict:
    """Lag from fire time to run creation with the fan-out, on real workers; and the cost of one
    empty per-tenant dispatch message, which per-tenant beat entries would send for every tenant
    every interval."""
    from apps.campaigns import tasks

    prefix = f"{PREFIX}-{int(time.time())}-"
    setup_started = time.monotonic()
    fire = engine.now() + dt.timedelta(days=1)  # moved to the real fire time below
    ids = create_scheduled_world(tenants, campaigns, fire, prefix)
    setup_s = time.monotonic() - setup_started
    app.conf.task_always_eager = False
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(app.conf.task_default_queue)
    workers = Workers(concurrency)
    try:
        # Per-tenant entries: every tenant's dispatcher runs every interval, mostly finding nothing.
        sample = ids[:probe]
        poll_s = drain_seconds([lambda t=t: tasks.dispatch_due_schedules.delay(tenant_id=t) for t in sample])
        per_poll_s = poll_s / len(sample)

        # The fan-out: beat's tick falls anywhere within the interval after the fire time.
        interval = schedules.dispatch_interval_seconds()
        fire = engine.now() + dt.timedelta(seconds=3)
        Schedule.dangerously_unscoped.filter(tenant_id__in=ids).update(next_fire_at=fire)
        tick = fire + dt.timedelta(seconds=random.uniform(0, interval))
        deadline = time.monotonic() + 900
        due = Schedule.dangerously_unscoped.filter(is_active=True, next_fire_at__lte=fire)  # its own index
        while time.monotonic() < deadline and (engine.now() < tick or due.exists()):
            if engine.now() >= tick:
                schedules.dangerously_fan_out()
                tick += dt.timedelta(seconds=interval)
            time.sleep(0.25)
    finally:
        workers.stop()
        with app.connection_for_write() as conn:  # the runs' kicks: nobody is meant to run them here
            conn.default_channel.client.delete(app.conf.task_default_queue)
    lags = sorted((r - fire).total_seconds() for r in Run.dangerously_unscoped.filter(
        tenant_id__in=ids, trigger="schedule").values_list("created_at", flat=True))
    return {"runs": len(lags), "p50": lags[len(lags) // 2], "p99": lags[max(0, int(len(lags) * 0.99) - 1)],
            "setup_s": setup_s, "per_poll_s": per_poll_s, "interval": interval}


def beat_probe(tenants: int, seconds: float) -> dict:
    """A real `celery beat` (DatabaseScheduler) with one 15 s entry per tenant, as the first design
    had, and no worker: how many messages it sends in `seconds`, against tenants / 15 per second."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=15, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.bulk_create([
        PeriodicTask(name=f"{PREFIX} probe {i}", task="campaigns.dispatch_due_schedules", interval=every,
                     kwargs=json.dumps({"tenant_id": 0})) for i in range(tenants)], batch_size=5000)
    from django_celery_beat.models import PeriodicTasks

    PeriodicTasks.update_changed()
    queue = app.conf.task_default_queue
    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(queue)
    schedule_file = Path(tempfile.mkdtemp(prefix="bench-engine-beat-")) / "schedule"
    log = schedule_file.with_name("beat.log")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info", "-s", str(schedule_file),
         "--pidfile="], cwd=Path(__file__).resolve().parent.parent, env=os.environ.copy(),
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds and process.poll() is None:
            time.sleep(1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # a busy beat takes long to honour SIGTERM
            process.wait(30)
        with app.connection_for_write() as conn:
            sent = conn.default_channel.client.llen(queue)
            conn.default_channel.client.delete(queue)
        PeriodicTask.objects.filter(name__startswith=f"{PREFIX} probe ").delete()
    return {"beat_seconds": seconds, "beat_messages": sent, "beat_expected": int(tenants * seconds / 15)}


def cleanup() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL campaigns.allow_audit_purge = 'on'")
        ids = list(Tenant.objects.filter(slug__startswith=PREFIX).values_list("id", flat=True))
        if ids:
            cursor.execute("DELETE FROM tenants_auditentry WHERE tenant_id = ANY(%s)", [ids])
            cursor.execute("UPDATE campaigns_campaign SET live_version_id = NULL WHERE tenant_id = ANY(%s)", [ids])
            for table in ("campaigns_runlog", "campaigns_nodestate", "campaigns_run", "campaigns_schedule",
                          "campaigns_campaignversion", "campaigns_campaign"):
                cursor.execute(sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s)").format(sql.Identifier(table))
                               .as_string(cursor.connection), [ids])
            Tenant.objects.filter(id__in=ids).delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=10000)
    parser.add_argument("--campaigns", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes for dispatch")
    parser.add_argument("--probe", type=int, default=2000, help="empty per-tenant dispatch messages to time")
    parser.add_argument("--beat-probe", type=float, default=0, metavar="SECONDS",
                        help="only run celery beat with one entry per tenant for SECONDS and count what it sends")
    args = parser.parse_args()
    if args.beat_probe:
        print(json.dumps({"bench": "engine-beat-probe", "entries": args.tenants,
                          **beat_probe(args.tenants, args.beat_probe)}))
        return
    cleanup()
    try:
        seconds_per_node = statistics.median(per_node(args.nodes) for _ in range(3))
        seconds_per_dispatched = statistics.median(per_node(args.nodes, inline=False) for _ in range(3))
        lag = dispatch_lag(args.tenants, args.campaigns, args.concurrency, min(args.probe, args.tenants))
        # Per-tenant beat entries (the old design): one message per tenant per 15 s, each costing
        # per_poll_s of a worker process even when nothing is due.
        per_tenant_processes = lag["per_poll_s"] * args.concurrency * args.tenants / 15
        print(json.dumps({
            "bench": "engine", "nodes": args.nodes, "seconds_per_node": round(seconds_per_node, 4),
            "seconds_per_dispatched_node": round(seconds_per_dispatched, 4),
            "tenants": args.tenants, "campaigns_per_tenant": args.campaigns, "runs": lag["runs"],
            "dispatch_lag_p50_s": round(lag["p50"], 2), "dispatch_lag_p99_s": round(lag["p99"], 2),
            "fan_out_interval_s": lag["interval"], "worker_processes": args.concurrency,
            "setup_s": round(lag["setup_s"], 1),
            "empty_tenant_dispatch_ms": round(lag["per_poll_s"] * args.concurrency * 1000, 2),
            "per_tenant_entries_busy_processes": round(per_tenant_processes, 1)}), flush=True)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
