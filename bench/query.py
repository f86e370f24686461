"""Benchmark of the filter language against the same filters written by hand.

Builds, in a database of its own (`<DATABASE_URL's database>_bench_query`, dropped at the end
unless --keep), a tenant made by `tenant_create` with N profiles and about 2·N purchases (a
`purchase` schema linked both ways to `profile`), loaded with `INSERT … SELECT generate_series`,
the expression indexes a tenant would ask for (and the link index on purchases' profile_id),
then ANALYZE. Each filter is counted through `count_records` (validation, compilation and the
query) and through the plain SQL a DBA would write on the same table; each is run --repeat
times, interleaved, after a warm-up, and the medians are compared. Prints one JSON line:

    {"bench": "query", "profiles": N, "project_s": …, "reference_s": …, "ratio": …, "per_filter": […]}

Usage: DJANGO_SETTINGS_MODULE=config.settings.local DATABASE_URL=postgres://… \\
       python bench/query.py [--profiles 1000000] [--repeat 5] [--keep]"""

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
from urllib.parse import urlsplit, urlunsplit

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

SLUG = "bench-query"


def bench_database_url(base_url: str, suffix: str = "_bench_query") -> tuple[str, str]:
    parts = urlsplit(base_url)
    name = (parts.path.lstrip("/") or "campaigns") + suffix
    return name, urlunsplit(parts._replace(path="/" + name))


def server_command(base_url: str, statement: Any) -> None:
    import psycopg

    parts = urlsplit(base_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(statement)


def database_exists(base_url: str, name: str) -> bool:
    import psycopg

    parts = urlsplit(base_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


# Data ---------------------------------------------------------------------------------------

PROFILES_SQL = """
INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at)
SELECT %(tenant)s, %(schema)s, 'p' || n,
       jsonb_build_object(
           'id', 'p' || n,
           'email', 'user' || n || CASE WHEN n %% 10 = 0 THEN '@example.org' ELSE '@mail.test' END,
           'first_name', (ARRAY['Anna','Bruno','Chloé','David','Emma','Farid','Gina','Hugo'])[1 + n %% 8],
           'last_name', 'Name' || (n %% 997),
           'language', (ARRAY['fr','de','en','es','it'])[1 + (n / 7) %% 5],
           'country', (ARRAY['FR','DE','ES','IT','GB','US','BE','NL','PT','PL'])[1 + (n * 7) %% 10],
           'birth_date', to_char(date '1940-01-01' + ((n::bigint * 7919) %% 25000)::int, 'YYYY-MM-DD'),
           'email_opt_in', n %% 3 <> 0,
           'sms_opt_in', n %% 5 = 0,
           'push_tokens', '[]'::jsonb),
       %(now)s - make_interval(days => n %% 1000), %(now)s
FROM generate_series(1, %(count)s) AS n
"""

# Purchases: skewed over profiles (a few profiles buy a lot), over the last 365 days.
PURCHASES_SQL = """
INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at)
SELECT %(tenant)s, %(schema)s, 'o' || n,
       jsonb_build_object(
           'id', 'o' || n,
           'profile_id', 'p' || (1 + floor(%(profiles)s * power(random(), 2)))::bigint,
           'amount', round((random() * 500)::numeric, 2),
           'purchased_at', to_char((%(now)s - random() * interval '365 days') AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
       %(now)s, %(now)s
FROM generate_series(1, %(count)s) AS n
"""

INDEXED = {"profile": [("email", "email"), ("country", "string"), ("language", "string"), ("birth_date", "date")],
           "purchase": [("profile_id", "string"), ("purchased_at", "datetime")]}  # profile_id: the link index


def build(profiles: int, now: dt.datetime, *, purchases: int | None = None, slug: str = SLUG) -> Any:
    """A tenant with `profiles` profiles and `purchases` purchases (default 2 per profile)."""
    from django.db import connection, transaction
    from psycopg import sql

    from apps.schemas.models import DataSchema, Field, FieldType, Link, LinkKind
    from apps.schemas.types import value_sql
    from apps.tenants.scoping import tenant_scope
    from apps.tenants.services import tenant_create

    with transaction.atomic():
        tenant = tenant_create(name="Benchmark", slug=slug, time_zone="UTC", by=None)
        with tenant_scope(tenant):
            profile = DataSchema.objects.get(name="profile")
            purchase = DataSchema.objects.create(name="purchase", label="Purchases", primary_key="id")
            Field.objects.bulk_create([
                Field(tenant=tenant, schema=purchase, name=name, type=field_type, position=position,
                      indexed=name in ("profile_id", "purchased_at"))
                for position, (name, field_type) in enumerate([
                    ("id", FieldType.STRING), ("profile_id", FieldType.STRING), ("amount", FieldType.DECIMAL),
                    ("purchased_at", FieldType.DATETIME)])
            ])
            Link.objects.create(schema=profile, name="purchases", target=purchase, kind=LinkKind.ONE_TO_MANY,
                                source_field="id", target_field="profile_id")
            Link.objects.create(schema=purchase, name="profile", target=profile, kind=LinkKind.MANY_TO_ONE,
                                source_field="profile_id", target_field="id")
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(PROFILES_SQL, {"tenant": tenant.pk, "schema": profile.pk, "now": now, "count": profiles})
        cursor.execute(PURCHASES_SQL, {"tenant": tenant.pk, "schema": purchase.pk, "now": now,
                                       "count": profiles * 2 if purchases is None else purchases,
                                       "profiles": profiles})
    Field.dangerously_unscoped.filter(tenant=tenant, schema=profile, name__in=[n for n, _ in INDEXED["profile"]]) \
        .update(indexed=True)
    try:  # the project's own index maintenance: what marking the fields `indexed` (and the links) builds
        from apps.schemas.indexes import indexes_sync
    except ImportError:
        indexes_sync = None
    with connection.cursor() as cursor:
        for schema in (profile, purchase):
            if indexes_sync is not None:
                indexes_sync(tenant_id=tenant.pk, schema_id=schema.pk)
                continue
            for name, field_type in INDEXED[schema.name]:
                cursor.execute(sql.SQL("CREATE INDEX {} ON schemas_record (tenant_id, ({})) WHERE schema_id = {}")
                               .format(sql.Identifier(f"bench_{schema.name}_{name}"),
                                       value_sql(field_type, sql.Identifier("attributes"), name),
                                       sql.Literal(schema.pk)).as_string(connection.connection))
        cursor.execute("VACUUM ANALYZE schemas_record")
    return tenant


# Filters --------------------------------------------------------------------------------------

def filters(now: dt.datetime) -> list[dict[str, Any]]:
    """(name, filter tree, the same selection as hand-written SQL). In the SQL, {t}, {p}, {o} are
    the tenant, the profile schema and the purchase schema."""
    day30 = (now - dt.timedelta(days=30)).isoformat()
    day90 = (now - dt.timedelta(days=90)).isoformat()
    return [
        {"name": "country_optin_birth",
         "tree": {"all": [
             {"field": "country", "op": "in", "value": ["FR", "DE"]},
             {"field": "email_opt_in", "op": "eq", "value": True},
             {"field": "birth_date", "op": "before", "value": "1990-01-01"}]},
         "sql": """SELECT count(*) FROM schemas_record p
                   WHERE p.tenant_id = {t} AND p.schema_id = {p}
                     AND p.attributes->>'country' IN ('FR', 'DE')
                     AND (p.attributes->>'email_opt_in')::boolean
                     AND schemas_to_date(p.attributes->>'birth_date') < DATE '1990-01-01'"""},
        {"name": "recent_buyers_count_30d",
         "tree": {"all": [
             {"link": "purchases", "where": {"field": "purchased_at", "op": "within_last", "value": "30d"},
              "having": {"count": {"op": "gte", "value": 2}}},
             {"field": "country", "op": "eq", "value": "FR"},
             {"field": "email_opt_in", "op": "eq", "value": True}]},
         "sql": f"""SELECT count(*) FROM schemas_record p
                    WHERE p.tenant_id = {{t}} AND p.schema_id = {{p}}
                      AND p.attributes->>'country' = 'FR'
                      AND (p.attributes->>'email_opt_in')::boolean
                      AND p.key IN (SELECT o.attributes->>'profile_id' FROM schemas_record o
                                    WHERE o.tenant_id = {{t}} AND o.schema_id = {{o}}
                                      AND schemas_to_timestamptz(o.attributes->>'purchased_at')
                                          BETWEEN '{day30}' AND '{now.isoformat()}'
                                    GROUP BY 1 HAVING count(*) >= 2)"""},
        {"name": "big_spenders",
         "tree": {"all": [
             {"link": "purchases", "having": {"sum": {"field": "amount", "op": "gt", "value": 1500}}},
             {"not": {"field": "email", "op": "ends_with", "value": "@example.org"}},
             {"field": "language", "op": "in", "value": ["fr", "en"]},
             {"field": "birth_date", "op": "after", "value": "1970-01-01"}]},
         "sql": """SELECT count(*) FROM schemas_record p
                   WHERE p.tenant_id = {t} AND p.schema_id = {p}
                     AND p.attributes->>'email' NOT LIKE '%@example.org'
                     AND p.attributes->>'language' IN ('fr', 'en')
                     AND schemas_to_date(p.attributes->>'birth_date') > DATE '1970-01-01'
                     AND p.key IN (SELECT o.attributes->>'profile_id' FROM schemas_record o
                                   WHERE o.tenant_id = {t} AND o.schema_id = {o}
                                   GROUP BY 1 HAVING sum((o.attributes->>'amount')::numeric) > 1500)"""},
        {"name": "segments_or_big_basket",
         "tree": {"all": [
             {"any": [
                 {"field": "country", "op": "eq", "value": "ES"},
                 {"field": "language", "op": "eq", "value": "es"},
                 {"link": "purchases", "where": {"field": "amount", "op": "gt", "value": 495}}]},
             {"field": "email_opt_in", "op": "eq", "value": True},
             {"field": "birth_date", "op": "between", "value": ["1980-01-01", "1999-12-31"]}]},
         "sql": """SELECT count(*) FROM schemas_record p
                   WHERE p.tenant_id = {t} AND p.schema_id = {p}
                     AND (p.attributes->>'country' = 'ES' OR p.attributes->>'language' = 'es'
                          OR EXISTS (SELECT 1 FROM schemas_record o
                                     WHERE o.tenant_id = {t} AND o.schema_id = {o}
                                       AND o.attributes->>'profile_id' = p.key
                                       AND (o.attributes->>'amount')::numeric > 495))
                     AND (p.attributes->>'email_opt_in')::boolean
                     AND schemas_to_date(p.attributes->>'birth_date') BETWEEN DATE '1980-01-01' AND DATE '1999-12-31'"""},
        {"name": "lapsed_customers",
         "tree": {"all": [
             {"link": "purchases"},
             {"link": "purchases", "where": {"field": "purchased_at", "op": "within_last", "value": "90d"},
              "having": {"exists": False}},
             {"field": "country", "op": "not_in", "value": ["US", "GB"]},
             {"field": "sms_opt_in", "op": "eq", "value": False}]},
         "sql": f"""SELECT count(*) FROM schemas_record p
                    WHERE p.tenant_id = {{t}} AND p.schema_id = {{p}}
                      AND p.attributes->>'country' NOT IN ('US', 'GB')
                      AND NOT (p.attributes->>'sms_opt_in')::boolean
                      AND EXISTS (SELECT 1 FROM schemas_record o
                                  WHERE o.tenant_id = {{t}} AND o.schema_id = {{o}}
                                    AND o.attributes->>'profile_id' = p.key)
                      AND NOT EXISTS (SELECT 1 FROM schemas_record o
                                      WHERE o.tenant_id = {{t}} AND o.schema_id = {{o}}
                                        AND o.attributes->>'profile_id' = p.key
                                        AND schemas_to_timestamptz(o.attributes->>'purchased_at')
                                            BETWEEN '{day90}' AND '{now.isoformat()}')"""},
    ]


def measure(project: Any, reference: Any, repeat: int) -> tuple[float, float, Any, Any]:
    """Median times of the two, run interleaved (alternating which goes first) after a warm-up
    of each, so that a change in the machine's load weighs on both alike."""
    results = [project(), reference()]
    times: list[list[float]] = [[], []]
    for round_ in range(repeat):
        order = (0, 1) if round_ % 2 == 0 else (1, 0)
        for which in order:
            started = time.perf_counter()
            result = (project, reference)[which]()
            times[which].append(time.perf_counter() - started)
            assert result == results[which]
    return statistics.median(times[0]), statistics.median(times[1]), results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database (and reuse it next time)")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL")
    if not base_url:
        sys.exit("Set DATABASE_URL to the PostgreSQL server to benchmark on.")
    name, url = bench_database_url(base_url)
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

    from apps.schemas.models import DataSchema
    from apps.schemas.query import count_records
    from apps.tenants.models import Tenant
    from apps.tenants.scoping import tenant_scope

    try:
        tenant = None
        if reuse:
            tenant = Tenant.objects.filter(slug=SLUG, settings__bench_profiles=args.profiles).first()
        if tenant is None:
            if reuse:
                connection.close()
                server_command(base_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                server_command(base_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            call_command("migrate", verbosity=0)
            now = timezone.now().replace(microsecond=0)
            started = time.perf_counter()
            tenant = build(args.profiles, now)
            tenant.settings = {"bench_profiles": args.profiles, "bench_now": now.isoformat()}
            tenant.save(update_fields=["settings"])
            print(f"loaded {args.profiles} profiles in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        now = dt.datetime.fromisoformat(tenant.settings["bench_now"])
        with tenant_scope(tenant):
            ids = {s.name: s.pk for s in DataSchema.objects.all()}

        results = []
        for spec in filters(now):
            statement = spec["sql"].format(t=tenant.pk, p=ids["profile"], o=ids["purchase"])

            def project(tree: Any = spec["tree"]) -> int:
                return count_records(tenant=tenant, schema="profile", tree=tree, now=now)

            def reference(statement: str = statement) -> int:
                with connection.cursor() as cursor:
                    cursor.execute(statement)
                    return cursor.fetchone()[0]

            project_s, reference_s, project_count, reference_count = measure(project, reference, args.repeat)
            if project_count != reference_count:
                sys.exit(f"{spec['name']}: the filter counts {project_count}, the reference {reference_count}")
            results.append({"name": spec["name"], "count": project_count, "project_s": round(project_s, 4),
                            "reference_s": round(reference_s, 4), "ratio": round(project_s / reference_s, 3)})
        project_total = sum(r["project_s"] for r in results)
        reference_total = sum(r["reference_s"] for r in results)
        print(json.dumps({"bench": "query", "profiles": args.profiles, "project_s": round(project_total, 4),
                          "reference_s": round(reference_total, 4),
                          "ratio": round(project_total / reference_total, 3), "per_filter": results}))
    finally:
        connection.close()
        if not args.keep:
            server_command(base_url, sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
