"""Benchmark of the targeting activities through the engine against the same statements written
by hand in plain SQL on the same tables.

The graph: build (every profile) → enrich (sum of purchase amounts over the last 365 days) →
combine (exclude the opted-out, built by a second Build audience) → dedup (email) → split (three
sticky random subsets of 10 % + complement) → save the first subset as a static audience. It is
run through the engine (every node's transaction, row locks, outputs and logs; Celery in eager
mode, so no broker latency is counted) and compared with the hand-written statements producing
the same tables (CREATE UNLOGGED TABLE … AS, ANALYZE, the same audience write, the same settings). Both are run --repeat
times, interleaved, and the medians compared; the counts of every step must agree.

Data (built once in `<DATABASE_URL's database>_bench_targeting`, kept with --keep): bench/query.py's
profiles and purchases, with one profile in 20 sharing its email with the one before. Prints:

    {"bench": "targeting", "profiles": N, "purchases": M, "project_s": …, "reference_s": …, "ratio": …}

Usage: DATABASE_URL=postgres://… python bench/targeting.py [--profiles 1000000] [--purchases 5000000]
       [--repeat 3] [--keep]"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from bench.query import bench_database_url, build, database_exists, server_command  # noqa: E402

SLUG = "bench-targeting"
SEED = "bench"

GRAPH = {
    "nodes": [
        {"id": "start", "type": "scheduler", "config": {"mode": "api"}},
        {"id": "fork", "type": "fork", "config": {"branches": [{"port": "all"}, {"port": "out"}]}},
        {"id": "build", "type": "build_audience", "config": {"filter": {}}},
        {"id": "opted_out", "type": "build_audience",
         "config": {"filter": {"field": "email_opt_in", "op": "eq", "value": False}}},
        {"id": "enrich", "type": "enrichment", "config": {"columns": [
            {"alias": "spent", "link": "purchases", "aggregate": "sum", "field": "amount",
             "where": {"field": "purchased_at", "op": "within_last", "value": "365d"}}]}},
        {"id": "exclude", "type": "combine", "config": {"operation": "exclusion", "primary": "enrich"}},
        {"id": "dedup", "type": "dedup", "config": {"fields": ["email"], "seed": SEED}},
        {"id": "split", "type": "split", "config": {"seed": SEED, "complement": True, "subsets": [
            {"code": "a", "limit": {"percent": 10}}, {"code": "b", "limit": {"percent": 10}},
            {"code": "c", "limit": {"percent": 10}}]}},
        {"id": "save", "type": "save_audience", "config": {"name": "Bench A"}},
    ],
    "edges": [
        {"from": "start", "port": "out", "to": "fork"},
        {"from": "fork", "port": "all", "to": "build"}, {"from": "fork", "port": "out", "to": "opted_out"},
        {"from": "build", "port": "out", "to": "enrich"},
        {"from": "enrich", "port": "out", "to": "exclude"}, {"from": "opted_out", "port": "out", "to": "exclude"},
        {"from": "exclude", "port": "out", "to": "dedup"}, {"from": "dedup", "port": "out", "to": "split"},
        {"from": "split", "port": "a", "to": "save"},
    ],
}

STEPS = ("build", "opted_out", "enrich", "exclude", "dedup", "split", "save")


def hashed(key: str) -> str:
    """The sticky hash of Split and Deduplication, written by hand over the column `key`."""
    return "(('x' || substr(md5(%(seed)s || ':' || " + key + "), 1, 8))::bit(32)::bigint / 4294967296.0)"



# The same work by hand: {t}, {p}, {o} are the tenant, profile and purchase schema ids. The tables
# are UNLOGGED and the transaction has the node transactions' work_mem, as the engine's; the
# enrichment runs with the planner settings the Enrichment activity gives its statement (no plain
# index scan, parallel workers that read the purchases' values for the leader to group: see
# docs/performance.md) and the split hashes each row once.
REFERENCE = [
    ("build", "CREATE UNLOGGED TABLE bench_ref.build AS SELECT r.key FROM schemas_record r "
              "WHERE r.tenant_id = {t} AND r.schema_id = {p}"),
    ("opted_out", "CREATE UNLOGGED TABLE bench_ref.opted_out AS SELECT r.key FROM schemas_record r "
                  "WHERE r.tenant_id = {t} AND r.schema_id = {p} AND (r.attributes->>'email_opt_in')::boolean = false"),
    ("enrich", "CREATE UNLOGGED TABLE bench_ref.enrich AS SELECT b.key, coalesce(s.spent, 0) AS spent "
               "FROM bench_ref.build b "
               "LEFT JOIN (SELECT profile_id, sum(amount) AS spent FROM (SELECT o.attributes->>'profile_id' AS "
               "profile_id, (o.attributes->>'amount')::numeric AS amount FROM schemas_record o "
               "WHERE o.tenant_id = {t} AND o.schema_id = {o} "
               "AND schemas_to_timestamptz(o.attributes->>'purchased_at') BETWEEN %(since)s AND %(now)s OFFSET 0) o "
               "GROUP BY 1) s ON s.profile_id = b.key"),
    ("exclude", "CREATE UNLOGGED TABLE bench_ref.exclude AS SELECT e.key, e.spent FROM bench_ref.enrich e "
                "WHERE NOT EXISTS (SELECT 1 FROM bench_ref.opted_out x WHERE x.key = e.key)"),
    ("dedup", "CREATE UNLOGGED TABLE bench_ref.dedup AS SELECT key, spent FROM (SELECT e.key, e.spent, "
              "row_number() OVER (PARTITION BY r.attributes->>'email' ORDER BY " + hashed("e.key") + ", e.key) AS n "
              "FROM bench_ref.exclude e JOIN schemas_record r ON r.tenant_id = {t} AND r.schema_id = {p} "
              "AND r.key = e.key) d WHERE n = 1"),
    ("hashed", "CREATE UNLOGGED TABLE bench_ref.hashed AS SELECT key, spent, " + hashed("key") + " AS h "
               "FROM bench_ref.dedup"),
    ("a", "CREATE UNLOGGED TABLE bench_ref.a AS SELECT key, spent FROM bench_ref.hashed WHERE h < 0.1"),
    ("b", "CREATE UNLOGGED TABLE bench_ref.b AS SELECT key, spent FROM bench_ref.hashed WHERE h >= 0.1 AND h < 0.2"),
    ("c", "CREATE UNLOGGED TABLE bench_ref.c AS SELECT key, spent FROM bench_ref.hashed WHERE h >= 0.2 AND h < 0.3"),
    ("complement", "CREATE UNLOGGED TABLE bench_ref.complement AS SELECT key, spent FROM bench_ref.hashed "
                   "WHERE h >= 0.3"),
    ("save", "INSERT INTO audiences_audiencemember (tenant_id, audience_id, record_key) "
             "SELECT {t}, {audience}, r.key FROM schemas_record r "
             "WHERE r.tenant_id = {t} AND r.schema_id = {p} AND r.key IN (SELECT key FROM bench_ref.a)"),
]
SPLIT = ("hashed", "a", "b", "c", "complement")
PLANNER = ("enrich",)  # statements run without plain index scans nor the leader in the scan, as the project's


def prepare(profiles: int, purchases: int, now: dt.datetime) -> Any:
    from django.db import connection

    tenant = build(profiles, now, purchases=purchases, slug=SLUG)
    with connection.cursor() as cursor:  # one profile in 20 shares its email with the one before
        cursor.execute("UPDATE schemas_record r SET attributes = r.attributes || jsonb_build_object('email', "
                       "'user' || (substr(r.key, 2)::bigint - 1) || '@mail.test') "
                       "WHERE r.tenant_id = %s AND r.key LIKE 'p%%' AND substr(r.key, 2)::bigint %% 20 = 0",
                       [tenant.pk])
        cursor.execute("VACUUM ANALYZE schemas_record")
    return tenant


STEP_TIMES: dict[str, list[list[float]]] = {}  # step -> [project times, reference times]


def step_time(step: str, which: int, seconds: float) -> None:
    STEP_TIMES.setdefault(step, [[], []])[which].append(seconds)


def run_project(tenant: Any, campaign: Any) -> dict[str, int]:
    from django.db import transaction

    from apps.campaigns import services
    from apps.campaigns.models import NodeState
    from apps.tenants.scoping import tenant_scope

    pending: list[Any] = []
    real_on_commit = transaction.on_commit
    transaction.on_commit = lambda func, using=None, robust=False: pending.append(func)
    try:
        with tenant_scope(tenant):
            run = services.campaign_trigger(tenant=tenant, campaign=campaign, by=None)
            while pending:
                pending.pop(0)()
            run.refresh_from_db()
            if run.status != "completed":
                sys.exit(f"the run ended {run.status}: {run.error_node}: {run.error}")
            counts = {}
            for node in NodeState.objects.filter(run=run):
                if node.started_at and node.finished_at and node.node_id in STEPS:
                    step_time(node.node_id, 0, (node.finished_at - node.started_at).total_seconds())
                for port, population in (node.outputs or {}).items():
                    if population.get("table"):
                        counts[node.node_id if port in ("out", "all") else port] = population["count"]
            return counts
    finally:
        transaction.on_commit = real_on_commit


def run_reference(tenant: Any, ids: dict[str, int], audience: int, now: dt.datetime) -> dict[str, int]:
    from django.conf import settings
    from django.db import connection, transaction

    from apps.campaigns.populations import STATISTICS_TARGET

    counts = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true), set_config('default_statistics_target', %s, true)",
                       [settings.POPULATION_WORK_MEM, STATISTICS_TARGET])
        cursor.execute("DROP SCHEMA IF EXISTS bench_ref CASCADE; CREATE SCHEMA bench_ref")
        cursor.execute("DELETE FROM audiences_audiencemember WHERE tenant_id = %s AND audience_id = %s",
                       [tenant.pk, audience])
        for name, statement in REFERENCE:
            started = time.perf_counter()
            composed = sql.SQL(statement).format(t=sql.Literal(tenant.pk), p=sql.Literal(ids["profile"]),
                                                 o=sql.Literal(ids["purchase"]), audience=sql.Literal(audience))
            if name in PLANNER:
                cursor.execute("SET LOCAL enable_indexscan = off; SET LOCAL parallel_leader_participation = off")
            cursor.execute(composed.as_string(cursor.connection),
                           {"seed": SEED, "since": now - dt.timedelta(days=365), "now": now})
            counts[name] = cursor.rowcount
            if name in PLANNER:
                cursor.execute("SET LOCAL enable_indexscan TO DEFAULT; "
                               "SET LOCAL parallel_leader_participation TO DEFAULT")
            if name != "save":
                cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier("bench_ref", name))
                               .as_string(cursor.connection))
            step_time("split" if name in SPLIT else name, 1, time.perf_counter() - started)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=None, help="default: 5 per profile")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database (and reuse it next time)")
    args = parser.parse_args()
    purchases = args.purchases if args.purchases is not None else args.profiles * 5

    base_url = os.environ.get("DATABASE_URL")
    if not base_url:
        sys.exit("Set DATABASE_URL to the PostgreSQL server to benchmark on.")
    name, url = bench_database_url(base_url, "_bench_targeting")
    reuse = args.keep and database_exists(base_url, name)
    if not reuse:
        server_command(base_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        server_command(base_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = url

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.audiences.models import Audience
    from apps.campaigns import engine, services
    from apps.schemas.models import DataSchema
    from apps.tenants.models import Tenant
    from apps.tenants.scoping import tenant_scope
    from config.celery import app

    try:
        key = f"{args.profiles}:{purchases}"
        tenant = Tenant.objects.filter(slug=SLUG, settings__bench_size=key).first() if reuse else None
        if tenant is None:
            if reuse:
                connection.close()
                server_command(base_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                server_command(base_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            call_command("migrate", verbosity=0)
            now = timezone.now().replace(microsecond=0)
            started = time.perf_counter()
            tenant = prepare(args.profiles, purchases, now)
            tenant.settings = {"bench_size": key, "bench_now": now.isoformat()}
            tenant.save(update_fields=["settings"])
            print(f"loaded {args.profiles} profiles and {purchases} purchases in "
                  f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
        app.conf.task_always_eager = True
        with tenant_scope(tenant):
            ids = {s.name: s.pk for s in DataSchema.objects.all()}
            campaign = services.campaign_create(tenant=tenant, by=None, name=f"bench {time.time()}", graph=GRAPH)
            services.campaign_publish(tenant=tenant, campaign=campaign, by=None)
            services.campaign_start(tenant=tenant, campaign=campaign, by=None)
        # the engine's `within_last` is relative to the run's clock: pin both sides to one instant
        now = engine.now()
        project_counts = run_project(tenant, campaign)
        with tenant_scope(tenant):
            audience = Audience.objects.get(name="Bench A").pk
        reference_counts = run_reference(tenant, ids, audience, now)
        for step, count in reference_counts.items():
            if project_counts.get(step) != count and step not in ("save", "hashed"):
                sys.exit(f"{step}: the engine counts {project_counts.get(step)}, the reference {count}")
        times: list[list[float]] = [[], []]
        for round_ in range(args.repeat):
            for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                started = time.perf_counter()
                if which == 0:
                    run_project(tenant, campaign)
                else:
                    run_reference(tenant, ids, audience, engine.now())
                times[which].append(time.perf_counter() - started)
        project_s, reference_s = statistics.median(times[0]), statistics.median(times[1])
        print(json.dumps({"bench": "targeting", "profiles": args.profiles, "purchases": purchases,
                          "project_s": round(project_s, 3), "reference_s": round(reference_s, 3),
                          "ratio": round(project_s / reference_s, 3), "counts": reference_counts,
                          # mean seconds per run of each step, [engine, reference]
                          "per_step_s": {step: [round(sum(p) / (args.repeat + 1), 3),
                                                round(sum(r) / (args.repeat + 1), 3)]
                                         for step, (p, r) in STEP_TIMES.items()}}))
    finally:
        app.conf.task_always_eager = False
        connection.close()
        if not args.keep:
            server_command(base_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
