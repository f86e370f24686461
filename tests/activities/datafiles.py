"""What the data-activity tests share: files uploaded to a campaign, schemas made through the
services, and whole campaigns run through the engine in Celery's eager mode (the engine runs in
the test's process and transaction: these are logic tests, not broker tests)."""

from __future__ import annotations

import io
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from psycopg import sql

from apps.campaigns import services as campaign_services
from apps.campaigns.models import NodeState, Run
from apps.campaigns.populations import table_ident
from apps.files.models import CampaignFile
from apps.files.services import campaign_file_upload
from apps.schemas.models import DataSchema, Record
from apps.schemas.services import schema_create
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}
PLACEHOLDER = {"nodes": [START, {"id": "end", "type": "end"}], "edges": [{"from": "start", "port": "out", "to": "end"}]}


def new_campaign(tenant: Any, by: Any, variables: list[dict[str, Any]] | None = None) -> Any:
    return make_campaign(tenant, by, PLACEHOLDER, variables=variables or [])


def upload(tenant: Any, campaign: Any, content: bytes | str, name: str = "file.csv", by: Any = None) -> CampaignFile:
    data = content.encode() if isinstance(content, str) else content
    with tenant_scope(tenant):
        return campaign_file_upload(tenant=tenant, campaign=campaign, by=by,
                                    file=SimpleUploadedFile(name, data, content_type="text/csv"))


def graph(*nodes: dict[str, Any], edges: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {"nodes": [START, *nodes], "edges": [{"from": a, "port": p, "to": b} for a, p, b in edges]}


def run_campaign(tenant: Any, by: Any, campaign: Any, g: dict[str, Any], capture: Any, *, test: bool = False,
                 variables: dict[str, Any] | None = None) -> tuple[Run, dict[str, NodeState]]:
    """Save `g` as the campaign's draft and run it (test mode, or published and started), with
    Celery in eager mode and every on-commit kick executed (`capture` is pytest-django's
    `django_capture_on_commit_callbacks`), as tests/campaigns/conftest.py's `eager` does."""
    from config.celery import app

    with tenant_scope(tenant):
        campaign_services.draft_update(tenant=tenant, campaign=campaign, by=by, graph=g)
        app.conf.task_always_eager = True
        try:
            with capture(execute=True):
                if test:
                    run = campaign_services.campaign_test(tenant=tenant, campaign=campaign, by=by,
                                                          variables=variables)
                else:
                    campaign_services.campaign_publish(tenant=tenant, campaign=campaign, by=by)
                    run = campaign_services.campaign_start(tenant=tenant, campaign=campaign, by=by,
                                                           variables=variables)
        finally:
            app.conf.task_always_eager = False
        run.refresh_from_db()
        return run, {n.node_id: n for n in NodeState.objects.filter(run=run)}


def table_rows(population: dict[str, Any] | Any, order: str = "1") -> list[tuple[Any, ...]]:
    """Rows of a population (a Population or its stored dict), ordered by `order`."""
    table = population["table"] if isinstance(population, dict) else population.table
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {} ORDER BY " + order).format(table_ident(table))
                       .as_string(cursor.connection))
        return [tuple(r) for r in cursor.fetchall()]


def make_schema(tenant: Any, name: str, fields: list[dict[str, Any]], key: str) -> DataSchema:
    return schema_create(tenant=tenant, name=name, primary_key=key, fields=fields, by=None)


def records(tenant: Any, schema: DataSchema) -> dict[str, dict[str, Any]]:
    with tenant_scope(tenant):
        return {r.key: r.attributes for r in Record.objects.filter(schema=schema)}


def csv_bytes(rows: list[list[Any]], delimiter: str = ",") -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode()
