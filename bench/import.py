"""Bulk import against plain COPY.

    python bench/import.py --rows 1000000 [--repeat 3] [--ragged] [--keep]

Writes a CSV of N profiles (the built-in profile schema's columns id, email, first_name,
last_name, country, birth_date, email_opt_in; about one line in 100,000 has a value that does not
fit its field), then times
- the project: `import_create` + `import_run` (what the API and the worker do, run synchronously,
  start to finish: store the upload, COPY, check in SQL, upsert) into the `profile` schema of a
  fresh tenant made with `tenant_create`, with the profile indexes a tenant has;
- the reference: `COPY` of the same file into a plain table of text columns.
and prints one JSON line: {"bench", "rows", "project_s", "reference_s", "ratio", "rows_per_s", ...}.
With --repeat, each side runs that many times (a fresh tenant each time) and the best times count.
--ragged adds a line with a wrong number of columns to the project's file, which sends it down
the line-by-line path (the reference loads the file without it: COPY would refuse it). Everything it creates is removed at the end (unless --keep).

Uses the database of DATABASE_URL (migrated)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.files import File  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from apps.schemas import imports  # noqa: E402
from apps.schemas.indexes import indexes_sync  # noqa: E402
from apps.schemas.models import DataSchema  # noqa: E402
from apps.tenants.models import Tenant  # noqa: E402
from apps.tenants.scoping import tenant_scope  # noqa: E402
from apps.tenants.services import tenant_create  # noqa: E402
from config.celery import app as celery_app  # noqa: E402

COLUMNS = ["id", "email", "first_name", "last_name", "country", "birth_date", "email_opt_in"]
FIRST = ["Ann", "Bob", "Cléa", "Dan", "Eve", "Fay", "Guy", "Hélène", "Ivan", "Jo"]
LAST = ["Smith", "Martin", "Müller", "O'Brien", "Smith, Jr", "García", "Rossi", "Nowak"]
COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "PL", "NL"]
OPT_IN = ["true", "false", "yes", "no", "1", "0", ""]
BROKEN = [
    lambda i: f"p{i:09d},not-an-email,Bad,Email,FR,1980-01-01,yes",
    lambda i: f"p{i:09d},bad{i}@example.com,Bad,Date,FR,1980-02-30,yes",
    lambda i: f"p{i:09d},bad{i}@example.com,Bad,Bool,FR,1980-01-01,maybe",
    lambda i: f",nokey{i}@example.com,No,Key,FR,1980-01-01,yes",
]


def write_csv(path: Path, rows: int) -> int:
    """N data lines; returns how many are broken."""
    rng = random.Random(42)
    broken = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for i in range(rows):
            if i % 100_000 == 50_000 or (rows < 100_000 and i == rows // 2):
                out.write(BROKEN[broken % len(BROKEN)](i) + "\n")
                broken += 1
                continue
            last = rng.choice(LAST)
            last = f'"{last}"' if "," in last else last
            out.write(
                f"p{i:09d},User.{i}@Example.com,{rng.choice(FIRST)},{last},"
                f"{rng.choice(COUNTRIES)},{rng.randint(1940, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"{rng.choice(OPT_IN)}\n")
    return broken


def reference(path: Path) -> float:
    """Plain COPY of the file into a table of text columns."""
    table = f"bench_import_ref_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        raw = cursor.cursor
        ident = sql.Identifier(table)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        raw.execute(sql.SQL("CREATE TABLE {} ({}, extra text)").format(
            ident, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in COLUMNS)))
        try:
            started = time.perf_counter()
            with open(path, "rb") as handle, raw.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER true)").format(ident, columns)) as copy:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    copy.write(chunk)
            return time.perf_counter() - started
        finally:
            raw.execute(sql.SQL("DROP TABLE {}").format(ident))


def fresh_tenant() -> Tenant:
    slug = f"bench-import-{uuid.uuid4().hex[:8]}"
    tenant = tenant_create(name=f"Bench {slug}", slug=slug, by=None)
    with tenant_scope(tenant):
        schema = DataSchema.objects.get(name="profile")
    indexes_sync(tenant_id=tenant.pk, schema_id=schema.pk)  # the e-mail index every tenant gets
    return tenant


def project(path: Path) -> tuple[float, dict[str, int], Tenant]:
    tenant = fresh_tenant()
    schema = imports.import_schema_get(tenant=tenant, name="profile")
    started = time.perf_counter()
    with open(path, "rb") as handle:
        job = imports.import_create(tenant=tenant, schema=schema, file=File(handle, name=path.name), by=None)
    job = imports.import_run(tenant=tenant, job_id=job.pk)
    elapsed = time.perf_counter() - started
    if job.status != "succeeded":
        raise SystemExit(f"the import failed: {job.error}")
    counts = {k: getattr(job, k) for k in ("rows_read", "rows_valid", "rows_rejected", "rows_inserted",
                                           "rows_updated")}
    return elapsed, counts, tenant


def remove(tenant: Tenant) -> None:
    from django_celery_beat.models import PeriodicTask

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM schemas_record WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'schemas_record' AND indexname LIKE %s",
                       [f"schemas_rec_t{tenant.pk}\\_%"])
        for (name,) in cursor.fetchall():
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
    PeriodicTask.objects.filter(name=f"dispatch schedules of tenant {tenant.slug}").delete()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL campaigns.allow_audit_purge = 'on'")
        tenant.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ragged", action="store_true", help="add a line with a wrong number of columns")
    parser.add_argument("--keep", action="store_true", help="keep the tenants and their records")
    args = parser.parse_args()

    celery_app.conf.task_always_eager = True  # a new tenant's index build runs here, not in a worker
    imports._enqueue = lambda **kwargs: None  # the bench runs the import itself, not a worker
    tenants: list[Tenant] = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        settings.MEDIA_ROOT = Path(tmp) / "media"
        path = Path(tmp) / "profiles.csv"
        broken = write_csv(path, args.rows)
        imported = path
        if args.ragged:
            # COPY would refuse the file: the reference loads it without the ragged line
            imported = Path(tmp) / "profiles-ragged.csv"
            shutil.copyfile(path, imported)
            with open(imported, "a") as out:
                out.write("ragged,line\n")
            broken += 1
        project_times, reference_times, counts = [], [], {}
        try:
            for _ in range(args.repeat):
                reference_times.append(reference(path))
                elapsed, counts, tenant = project(imported)
                tenants.append(tenant)
                project_times.append(elapsed)
        finally:
            if not args.keep:
                for tenant in tenants:
                    remove(tenant)
        project_s, reference_s = min(project_times), min(reference_times)
        print(json.dumps({
            "bench": "import", "rows": args.rows, "project_s": round(project_s, 3),
            "reference_s": round(reference_s, 3), "ratio": round(project_s / reference_s, 2),
            "rows_per_s": round(args.rows / project_s), "broken_lines": broken, **counts,
            "file_mb": round(path.stat().st_size / 2**20, 1), "repeat": args.repeat,
            "ragged": args.ragged,
        }))


if __name__ == "__main__":
    main()
