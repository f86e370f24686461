"""Engine benchmark: seconds of engine overhead per node, and schedule dispatch lag.

1. A 50-node flow graph of trivial nodes (a chain of Test activities) runs through the engine's
   real code paths (advance, row locks, outputs, logs) in this process, with Celery in eager mode
   so that the broker's latency is not counted: seconds per node. Flow activities are cheap, so
   `advance` executes them itself (`seconds_per_node`); the same chain with inline execution
   turned off (every node dispatched and run by the two-phase `execute_node`, as targeting and
   channel activities are) gives `seconds_per_dispatched_node`.
2. `--tenants` tenants x `--campaigns` live daily campaigns all due at the same fire time; the
   per-tenant dispatcher (`schedules.dispatch_due`, what each tenant's beat entry runs) is called
   for every tenant in turn, as the fan-out does; lag = run creation time - fire time, p50/p99.
   This measures the database side of dispatch; beat's own tick is `SCHEDULE_DISPATCH_SECONDS`.

Prints one JSON line. Run: python bench/engine.py [--tenants 10000 --campaigns 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django

django.setup()

import datetime as dt  # noqa: E402

from django.db import connection, transaction  # noqa: E402

from apps.campaigns import engine, schedules, services  # noqa: E402
from apps.campaigns.models import Campaign, CampaignVersion, NodeState, Run, Schedule  # noqa: E402
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
    tenant = tenant_create(name="bench", slug=f"{PREFIX}-nodes-{int(time.time())}", by=None)
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


def dispatch_lag(tenants: int, campaigns: int) -> dict:
    graph = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}},
                       {"id": "end", "type": "end"}], "edges": [{"from": "start", "port": "out", "to": "end"}]}
    stamp = int(time.time())
    created = []
    for i in range(tenants):
        tenant = Tenant.objects.create(name=f"bench {i}", slug=f"{PREFIX}-{stamp}-{i}", time_zone="UTC")
        created.append(tenant)
    versions = []
    for tenant in created:
        with tenant_scope(tenant):
            objs = Campaign.objects.bulk_create([Campaign(tenant=tenant, name=f"c{j}", status="live")
                                                 for j in range(campaigns)])
            for c in objs:
                versions.append(CampaignVersion(tenant=tenant, campaign=c, number=1, graph=graph,
                                                status="published"))
    CampaignVersion.dangerously_unscoped.bulk_create(versions, batch_size=5000)
    for v in versions:
        Campaign.dangerously_unscoped.filter(pk=v.campaign_id).update(live_version=v.pk)
    fire = engine.now() + dt.timedelta(seconds=5)
    Schedule.dangerously_unscoped.bulk_create([
        Schedule(tenant_id=v.tenant_id, campaign_id=v.campaign_id, node_id="start",
                 spec={"mode": "daily", "times": ["09:00"]}, time_zone="UTC", next_fire_at=fire)
        for v in versions], batch_size=5000)
    time.sleep(max(0.0, (fire - engine.now()).total_seconds()))
    app.conf.task_always_eager = False  # kicks go to the broker; nothing consumes them here
    real_on_commit = transaction.on_commit
    transaction.on_commit = lambda func, using=None, robust=False: None
    try:
        for tenant in created:
            with tenant_scope(tenant):
                schedules.dispatch_due(tenant=tenant)
    finally:
        transaction.on_commit = real_on_commit
    lags = sorted((r - fire).total_seconds() for r in Run.dangerously_unscoped.filter(
        tenant__slug__startswith=f"{PREFIX}-{stamp}-").values_list("created_at", flat=True))
    return {"runs": len(lags), "p50": lags[len(lags) // 2], "p99": lags[int(len(lags) * 0.99) - 1]}


def cleanup() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET campaigns.allow_audit_purge = 'on'")
        ids = list(Tenant.objects.filter(slug__startswith=PREFIX).values_list("id", flat=True))
        if ids:
            cursor.execute("DELETE FROM tenants_auditentry WHERE tenant_id = ANY(%s)", [ids])
            for model in (NodeState, Run, Schedule):
                model.dangerously_unscoped.filter(tenant_id__in=ids).delete()
            Campaign.dangerously_unscoped.filter(tenant_id__in=ids).update(live_version=None)
            Tenant.objects.filter(id__in=ids).delete()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--tenants", type=int, default=10000)
    parser.add_argument("--campaigns", type=int, default=5)
    args = parser.parse_args()
    try:
        seconds_per_node = statistics.median(per_node(args.nodes) for _ in range(3))
        seconds_per_dispatched = statistics.median(per_node(args.nodes, inline=False) for _ in range(3))
        lag = dispatch_lag(args.tenants, args.campaigns)
    finally:
        cleanup()
    print(json.dumps({"bench": "engine", "nodes": args.nodes, "seconds_per_node": round(seconds_per_node, 4),
                      "seconds_per_dispatched_node": round(seconds_per_dispatched, 4),
                      "tenants": args.tenants, "campaigns_per_tenant": args.campaigns, "runs": lag["runs"],
                      "dispatch_lag_p50_s": round(lag["p50"], 2), "dispatch_lag_p99_s": round(lag["p99"], 2)}))


if __name__ == "__main__":
    main()
