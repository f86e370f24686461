"""Load file against plain COPY.

    python bench/load_file.py --rows 5000000 [--keep-file PATH]

Writes a CSV of N lines (about 200 bytes each: 5 million lines is about 1 GB; one line in 100,000
has a value that does not fit its column) and times
- the project: the Load file activity, as the engine runs it (its own transaction): stream the
  file with COPY, check and convert every value, fill `out` and `rejects`; with the peak of
  Python's traced memory;
- the reference: `COPY` of the same file into a plain table of text columns.
Prints one JSON line: {"bench", "rows", "bytes", "project_s", "reference_s", "ratio", "rows_per_s",
"peak_python_mib", "loaded", "rejected"}. Everything is rolled back at the end.

Uses the database of DATABASE_URL (migrated)."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg import sql  # noqa: E402

from apps.activities import registry  # noqa: E402
from apps.activities.base import ExecutionContext  # noqa: E402
from apps.campaigns.models import Campaign  # noqa: E402
from apps.campaigns.populations import PopulationStore  # noqa: E402
from apps.files import storage  # noqa: E402
from apps.files.models import CampaignFile  # noqa: E402
from apps.tenants.scoping import tenant_scope  # noqa: E402
from apps.tenants.services import tenant_create  # noqa: E402

COLUMNS = [
    {"name": "customer_id", "source": "id"}, {"name": "email", "type": "email"},
    {"name": "points", "type": "integer"}, {"name": "amount", "type": "decimal"},
    {"name": "joined", "type": "date"}, {"name": "opt_in", "type": "boolean"}, {"name": "note"},
]
WIDTH = 7  # columns of the file
NOTE = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore"


def write_csv(path: Path, rows: int) -> int:
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8") as out:
        out.write("id,email,points,amount,joined,opt_in,note\n")
        for i in range(rows):
            points = "many" if i % 100_000 == 50_000 else str(rng.randrange(0, 10_000))
            out.write(f"c{i:010d},Customer.{i}@Example.org,{points},{rng.randrange(0, 100_000) / 100},"
                      f"20{rng.randrange(10, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d},"
                      f"{'yes' if i % 3 else 'no'},{NOTE} {i}\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with transaction.atomic():
        tenant = tenant_create(by=None, slug=f"bench-load-{uuid.uuid4().hex[:8]}", name="Bench load",
                               time_zone="UTC")
        path = storage.new_path(tenant.pk)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = write_csv(path, args.rows)
        try:
            with tenant_scope(tenant):
                campaign = Campaign.objects.create(name="bench")
                file = CampaignFile.objects.create(campaign=campaign, name="bench.csv", path=storage.relative(path),
                                                   size=size)
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                config = {"file": {"upload": file.pk}, "columns": COLUMNS}
                ctx = ExecutionContext(
                    tenant=tenant, run=SimpleNamespace(pk=0), campaign=campaign, node_id="load", config=config,
                    variables={}, is_test=False, now=timezone.now(), state={},
                    store=PopulationStore(cursor=cursor, run_id=0, node_pk=0), dimension="profile")
                tracemalloc.start()
                started = time.perf_counter()
                with transaction.atomic(), tenant_scope(tenant):
                    done = registry.get("load_file").execute(config, ctx, [])
                project = time.perf_counter() - started
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()

                raw = cursor.cursor
                columns = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(WIDTH))
                raw.execute(sql.SQL("CREATE TEMP TABLE bench_reference ({})").format(
                    sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}")) for i in range(WIDTH))))
                started = time.perf_counter()
                with open(path, "rb") as handle, raw.copy(sql.SQL(
                        "COPY bench_reference ({}) FROM STDIN (FORMAT csv, HEADER true)").format(columns)) as copy:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        copy.write(chunk)
                reference = time.perf_counter() - started
        finally:
            storage.remove(path)
            transaction.set_rollback(True)
    print(json.dumps({
        "bench": "load_file", "rows": args.rows, "bytes": size, "project_s": round(project, 2),
        "reference_s": round(reference, 2), "ratio": round(project / reference, 2),
        "rows_per_s": round(args.rows / project), "peak_python_mib": round(peak / 1024**2, 1),
        "loaded": done.outputs["out"].count, "rejected": done.summary["rejected"],
    }))


if __name__ == "__main__":
    main()
