"""Delivery throughput against rendering the same templates in a plain loop.

    python bench/delivery.py --recipients 100000 [--senders 2] [--batch 500]
                             [--webhook-sink asyncio|http.server] [--channels email,sms] [--keep]

Creates a fresh tenant with N profiles and a population of them, then times
- the project's senders (`apps.channels.sending.delivery_send` exactly as the Celery task runs
  it: ledger written by one INSERT … SELECT, batches claimed under leases, records looked up,
  Liquid rendering, hand-over with idempotency keys, outcomes written back). With `--senders 1`
  the sender runs in this process; with more, each in a process of its own, as Celery worker
  processes run them (`CHANNELS_SENDERS_PER_DELIVERY`), timed from the moment all are ready;
- to a loopback SMTP server (aiosmtpd) and to a loopback HTTP webhook (a minimal asyncio
  HTTP/1.1 keep-alive server that counts Idempotency-Keys, or Python's http.server), each in a
  child process;
- the reference: rendering the same templates for the same records in a plain Python loop
  (no database, no network),
and prints one JSON line: {"bench", "recipients", "senders", "batch", "webhook_sink",
"connections_per_sender", "reference_messages_per_s", "smtp_messages_per_s", "smtp_ratio",
"sent_smtp", "received_smtp", "webhook_messages_per_s", "webhook_ratio", "sent_webhook",
"received_webhook", "load_average_1m"}.

Uses the database of DATABASE_URL (migrated). Everything it creates is removed at the end
(unless --keep)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["CHANNELS_SENDER_BUDGET_SECONDS"] = "100000"  # one sender, start to finish

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg import sql  # noqa: E402

from apps.campaigns import services as campaign_services  # noqa: E402
from apps.campaigns.models import Campaign, Run, RunStatus  # noqa: E402
from apps.campaigns.populations import PopulationStore, drop_run_tables  # noqa: E402
from apps.channels import content as content_module  # noqa: E402
from apps.channels import personalization, sending  # noqa: E402
from apps.channels import services as channel_services  # noqa: E402
from apps.profiles.selectors import profile_schema  # noqa: E402
from apps.schemas.models import Record  # noqa: E402
from apps.tenants.models import Tenant  # noqa: E402
from apps.tenants.scoping import tenant_scope  # noqa: E402
from apps.tenants.services import tenant_create  # noqa: E402

EMAIL = {"subject": "Hello {{ profile.first_name | default: 'friend' }}, {{ vars.promo }}",
         "html": "<html><body><h1>Hi {{ profile.first_name }}</h1><p>Your code: {{ vars.promo | upcase }}</p>"
                 "{% if profile.country == 'FR' %}<p>Bonjour !</p>{% endif %}"
                 "<p><a href='https://shop.example/sale'>Sale</a></p></body></html>"}
SMS = {"text": "Hi {{ profile.first_name | default: 'friend' }}: {{ vars.promo }} -20% today. STOP 36111"}
VARIABLES = {"promo": "spring"}


def _smtp_child(ready, stop, result) -> None:
    from tests.channels.sinks import SmtpSink

    with SmtpSink() as sink:
        ready.put(sink.port)
        stop.wait()
        result.put(len(set(sink.message_ids())))


def _http_child(ready, stop, result) -> None:
    from tests.channels.sinks import HttpSink

    with HttpSink() as sink:
        ready.put(sink.url)
        stop.wait()
        result.put(len({r.headers["Idempotency-Key"] for r in sink.requests}))


def _fast_http_child(ready, stop, result) -> None:
    from tests.channels.sinks import FastHttpSink

    with FastHttpSink() as sink:
        ready.put(sink.url)
        stop.wait()
        result.put(len(set(sink.keys) - {None}))


def _sender_child(tenant_id: int, delivery_id: int, ready, go, result) -> None:
    """One sender in its own process, as a Celery worker process runs the task."""
    tenant = Tenant.objects.get(pk=tenant_id)
    ready.put(os.getpid())
    go.wait()
    with tenant_scope(tenant):
        result.put(sending.delivery_send(tenant=tenant, delivery_id=delivery_id))


class Sink:
    def __init__(self, target) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.result, self.stop = context.Queue(), context.Queue(), context.Event()
        self.process = context.Process(target=target, args=(self.ready, self.stop, self.result), daemon=True)

    def __enter__(self):
        self.process.start()
        return self.ready.get(timeout=60)

    def received(self) -> int:
        self.stop.set()
        count = self.result.get(timeout=120)
        self.process.join(30)
        return count

    def __exit__(self, *exc) -> None:
        if self.process.is_alive():
            self.process.kill()


def make_world(n: int) -> tuple[Tenant, list[str]]:
    tenant = tenant_create(name="Bench delivery", slug=f"bench-delivery-{uuid.uuid4().hex[:8]}", by=None)
    schema = profile_schema(tenant=tenant)
    keys = [f"b{i:08d}" for i in range(n)]
    with tenant_scope(tenant):
        for start in range(0, n, 10_000):
            Record.objects.bulk_create([
                Record(tenant=tenant, schema=schema, key=key, attributes={
                    "id": key, "email": f"{key}@example.test", "phone": f"+3360{i:07d}", "first_name": f"N{i}",
                    "country": "FR" if i % 3 else "DE", "email_opt_in": True, "sms_opt_in": True})
                for i, key in enumerate(keys[start:start + 10_000], start)])
    return tenant, keys


def run_senders(tenant: Tenant, delivery_id: int, senders: int) -> tuple[Any, Any, list[Any]]:
    """Start `senders` sender processes (as Celery worker processes run them) and wait until each
    is ready; they start sending when the returned event is set, and put why they stopped on the
    returned queue."""
    context = multiprocessing.get_context("spawn")
    ready, result, go = context.Queue(), context.Queue(), context.Event()
    processes = [context.Process(target=_sender_child, args=(tenant.pk, delivery_id, ready, go, result), daemon=True)
                 for _ in range(senders)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    return go, result, processes


def timed_delivery(tenant: Tenant, channel: str, content: dict, batch: int, senders: int = 1) -> tuple[float, int]:
    """Open a delivery over every profile and send it with `senders` senders; returns (seconds, sent)."""
    graph = {"nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}}], "edges": []}
    with tenant_scope(tenant):
        campaign = campaign_services.campaign_create(tenant=tenant, by=None, name=f"bench {channel}", graph=graph)
        run = campaign_services.campaign_test(tenant=tenant, campaign=campaign, by=None)
        Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, is_test=False)
        schema = profile_schema(tenant=tenant)
        with connection.cursor() as cursor:
            store = PopulationStore(cursor=cursor, run_id=run.pk, node_pk=0)
            population = store.create("in", sql.SQL("SELECT key FROM schemas_record WHERE tenant_id = %s "
                                                    "AND schema_id = %s"), [tenant.pk, schema.pk],
                                      dimension="profile")
        delivery = sending.delivery_open(
            tenant=tenant, run=run, node_id=channel, channel=channel, schema=schema, population=population,
            config={"content": content, "batch_size": batch, "rate_per_second": 100_000}, variables=VARIABLES, now=timezone.now())
        if senders == 1:
            started = time.perf_counter()
            sending.delivery_send(tenant=tenant, delivery_id=delivery.pk)
        else:
            connection.close()  # not shared with the children; reopened below
            go, result, processes = run_senders(tenant, delivery.pk, senders)
            started = time.perf_counter()
            go.set()
            whys = [result.get(timeout=3600) for _ in processes]
            for process in processes:
                process.join(30)
            print(f"{channel}: senders stopped: {whys}", file=sys.stderr)
        seconds = time.perf_counter() - started
        print(f"{channel}: {seconds:.1f} s", file=sys.stderr)
        sent = sending.delivery_counts(delivery)["sent"]
    return seconds, sent


def reference(tenant: Tenant, n: int) -> float:
    """Render the e-mail and the SMS for the same records in a plain loop; messages per second
    (a message being one e-mail or one SMS)."""
    schema = profile_schema(tenant=tenant)
    with tenant_scope(tenant):
        records = [r.attributes for r in Record.objects.filter(schema=schema).only("attributes")]
    started = time.perf_counter()
    for attributes in records:
        context = personalization.message_context(record=attributes, variables=VARIABLES, campaign="bench")
        content_module.render_content("email", EMAIL, context)
        content_module.render_content("sms", SMS, context)
    return 2 * n / (time.perf_counter() - started)


def remove(tenant: Tenant) -> None:
    """Drop what the bench made: working tables, the tenant's index on records, the tenant (the
    audit trail's purge switch allows its rows to go with it, as bench/import.py does)."""
    from django_celery_beat.models import PeriodicTask

    with tenant_scope(tenant), connection.cursor() as cursor:
        for run_id in Run.objects.filter(tenant=tenant).values_list("pk", flat=True):
            drop_run_tables(cursor, run_id)
        cursor.execute("DELETE FROM channels_message WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM schemas_record WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'schemas_record' AND indexname LIKE %s",
                       [f"schemas_rec_t{tenant.pk}\\_%"])
        for (name,) in cursor.fetchall():
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
    PeriodicTask.objects.filter(name=f"dispatch schedules of tenant {tenant.slug}").delete()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL campaigns.allow_audit_purge = 'on'")
        with tenant_scope(tenant):
            Run.objects.all().delete()  # before their campaigns' versions, which they protect
            Campaign.objects.all().delete()
        tenant.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--senders", type=int, default=2,
                        help="sender processes per delivery (CHANNELS_SENDERS_PER_DELIVERY in a deployment)")
    parser.add_argument("--webhook-sink", choices=("asyncio", "http.server"), default="asyncio",
                        help="the loopback webhook receiver: a minimal asyncio HTTP/1.1 server, or http.server")
    parser.add_argument("--channels", default="email,sms", help="which deliveries to time: email, sms or both")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    channels = set(args.channels.split(","))
    tenant, _ = make_world(args.recipients)
    figures: dict[str, Any] = {"bench": "delivery", "recipients": args.recipients, "senders": args.senders,
                               "batch": args.batch, "webhook_sink": args.webhook_sink,
                               "connections_per_sender": sending.sender_connections()}
    try:
        reference_per_s = reference(tenant, args.recipients)
        figures["reference_messages_per_s"] = round(reference_per_s, 1)
        if "email" in channels:
            smtp = Sink(_smtp_child)
            with smtp as port:
                channel_services.channel_settings_update(
                    tenant=tenant, by=None, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                    from_email="bench@example.test", send_rate_per_second=100_000)
                smtp_s, smtp_sent = timed_delivery(tenant, "email", EMAIL, args.batch, args.senders)
                figures.update(smtp_messages_per_s=round(smtp_sent / smtp_s, 1),
                               smtp_ratio=round(reference_per_s / (smtp_sent / smtp_s), 2),
                               sent_smtp=smtp_sent, received_smtp=smtp.received())
        if "sms" in channels:
            http = Sink(_fast_http_child if args.webhook_sink == "asyncio" else _http_child)
            with http as url:
                channel_services.channel_settings_update(tenant=tenant, by=None, sms_webhook_url=url,
                                                         sms_webhook_secret="bench-secret",
                                                         send_rate_per_second=100_000)
                webhook_s, webhook_sent = timed_delivery(tenant, "sms", SMS, args.batch, args.senders)
                figures.update(webhook_messages_per_s=round(webhook_sent / webhook_s, 1),
                               webhook_ratio=round(reference_per_s / (webhook_sent / webhook_s), 2),
                               sent_webhook=webhook_sent, received_webhook=http.received())
        figures["load_average_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(figures))
    finally:
        if not args.keep:
            remove(tenant)


if __name__ == "__main__":
    main()
