"""The delivery machinery: the message ledger and the senders (DESIGN §6).

1. `delivery_open` (inside the channel activity's node transaction) creates the Delivery and
   writes the ledger with ONE `INSERT … SELECT` from the population: one row per recipient, each
   already classified `pending` or `excluded` with its reason (no address, no consent, marketing
   pressure), and an idempotency key derived from the delivery and the recipient.
2. Senders (`delivery_send`, Celery task `channels.send_delivery`) work outside that transaction,
   in autocommit: each batch is claimed with a lease in one statement (`FOR UPDATE SKIP LOCKED`;
   a batch whose lease expired, because its worker died, is claimed again), rendered, handed to
   the provider with its idempotency keys, and its outcome written in one statement. So a killed
   worker's batch is retried with the same keys, and the unique (delivery, recipient) row is never
   duplicated. Pacing (the delivery's messages/s and the tenant's) is a reservation on a row, so
   it holds across parallel senders. A sender stops between batches when the run is paused or
   stopped, and after a time budget (it then sends itself again, letting other work through).
3. The channel activity is re-executed by the engine (a Wait with a wake-up time) until nothing is
   left to send; it re-sends a sender if none showed a sign of life for a lease period, closes
   the send window, and then produces its output populations.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg import sql

from apps.activities.base import NodeError, Population
from apps.channels import content as content_module
from apps.channels import personalization, providers, tracking
from apps.channels.models import (
    ChannelSettings,
    Delivery,
    DeliveryStatus,
    ExclusionReason,
    MessageStatus,
)
from apps.channels.selectors import channel_settings_get
from apps.schemas.models import DataSchema, Field
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
FLUSH_EVERY = 25
UNTRIED = "untried"  # an outcome: not handed over before the deadline; pending again, attempt not counted


def lease_seconds() -> float:
    return float(os.environ.get("CHANNELS_LEASE_SECONDS", "60"))


def sender_connections() -> int:
    """How many connections one sender hands messages over on at once."""
    return max(1, int(os.environ.get("CHANNELS_SENDER_CONNECTIONS", "4")))


def senders_per_delivery() -> int:
    """How many senders (Celery tasks) work on one delivery at once when it is kicked; they share
    the work through leased batches (`FOR UPDATE SKIP LOCKED`) and the pacing rows."""
    return max(1, int(os.environ.get("CHANNELS_SENDERS_PER_DELIVERY", "1")))


def time_budget_seconds() -> float:
    return float(os.environ.get("CHANNELS_SENDER_BUDGET_SECONDS", "20"))


@dataclass(frozen=True)
class Addressing:
    """Where a channel finds a recipient's address and consent in their record."""

    address_field: str | None        # None: the channel needs no address (file export)
    is_list: bool = False            # push: a JSON list of device tokens
    consent_field: str | None = None
    consent_default: bool = False    # a record without a value: consented or not


DEFAULT_ADDRESSING = {
    "email": Addressing("email", consent_field="email_opt_in", consent_default=True),
    "sms": Addressing("phone", consent_field="sms_opt_in", consent_default=False),
    "push": Addressing("push_tokens", is_list=True, consent_field="push_opt_in", consent_default=True),
    "file": Addressing(None),
}


def addressing_for(channel: str, schema: DataSchema, config: dict[str, Any]) -> Addressing:
    """The channel's defaults, overridden by the activity's `address_field` / `consent_field`;
    a consent field the schema does not have is not checked."""
    base = DEFAULT_ADDRESSING[channel]
    fields = {f.name: f for f in Field.objects.filter(schema=schema)}
    address = config.get("address_field", base.address_field)
    consent = config.get("consent_field", base.consent_field)
    default = base.consent_default
    if consent and consent in fields and fields[consent].default is not None:
        default = bool(fields[consent].default)
    return Addressing(address_field=address, is_list=base.is_list and address == base.address_field,
                      consent_field=consent if consent in fields else None, consent_default=default)


# The ledger ---------------------------------------------------------------------------------------

def _classified(*, tenant: Tenant, schema: DataSchema, population: Population, channel: str,
                addressing: Addressing, pressure: tuple[int | None, int | None], seed: str
                ) -> tuple[sql.Composable, list[Any]]:
    """A SELECT of the population, one row per key: key, address, status, reason, idempotency
    key, data (the extra columns). Everything is decided here, in SQL."""
    from apps.campaigns.populations import table_ident

    params: list[Any] = []
    if addressing.address_field is None:
        address = sql.SQL("NULL::text")
    elif addressing.is_list:
        attr = sql.SQL("r.attributes->{}").format(sql.Literal(addressing.address_field))
        address = sql.SQL("CASE WHEN jsonb_typeof({a}) = 'array' AND jsonb_array_length({a}) > 0 "
                          "THEN ({a})::text END").format(a=attr)
    else:
        address = sql.SQL("nullif(btrim(r.attributes->>{}), '')").format(sql.Literal(addressing.address_field))
    if addressing.consent_field:
        consent = sql.SQL("coalesce((r.attributes->>{})::boolean, {})").format(
            sql.Literal(addressing.consent_field), sql.Literal(addressing.consent_default))
    else:
        consent = sql.SQL("true")
    per_day, per_week = pressure
    if per_day or per_week:
        # Messages each recipient already has (queued or sent, any campaign, any channel) in the
        # last 24 hours and 7 days, for the population's keys only.
        pressure_join = sql.SQL("""
            LEFT JOIN (
                SELECT m.recipient_key,
                       count(*) FILTER (WHERE m.queued_at > now() - interval '1 day') AS day,
                       count(*) AS week
                FROM channels_message m
                JOIN channels_delivery d ON d.tenant_id = m.tenant_id AND d.id = m.delivery_id
                WHERE m.tenant_id = %s AND d.dimension = 'profile'
                  AND m.status IN ('pending', 'sending', 'sent') AND m.queued_at > now() - interval '7 days'
                  AND m.recipient_key IN (SELECT key FROM {table})
                GROUP BY m.recipient_key
            ) pr ON pr.recipient_key = p.key""").format(table=table_ident(population.table))
        params.append(tenant.pk)
        over = sql.SQL("(coalesce(pr.day, 0) >= %s OR coalesce(pr.week, 0) >= %s)")
        over_params = [per_day or 2**62, per_week or 2**62]
    else:
        pressure_join, over, over_params = sql.SQL(""), sql.SQL("false"), []
    statement = sql.SQL("""
        SELECT p.key, c.address,
               CASE WHEN c.missing THEN 'excluded' WHEN NOT c.consent THEN 'excluded' WHEN c.suppressed THEN 'excluded'
                    WHEN {over} THEN 'excluded' ELSE 'pending' END AS status,
               CASE WHEN c.missing THEN {no_address} WHEN NOT c.consent THEN {no_consent}
                    WHEN c.suppressed THEN {suppressed} WHEN {over} THEN {pressure} ELSE '' END AS reason,
               md5(%s || p.key)::uuid AS idempotency_key,
               nullif(to_jsonb(p) - 'key', '{{}}'::jsonb) AS data
        FROM (SELECT DISTINCT ON (key) * FROM {table} ORDER BY key) p
        LEFT JOIN schemas_record r ON r.tenant_id = %s AND r.schema_id = %s AND r.key = p.key
        CROSS JOIN LATERAL (SELECT {address} AS address,
                                   (r.key IS NULL OR ({needs_address} AND {address} IS NULL)) AS missing,
                                   {consent} AS consent,
                                   EXISTS (SELECT 1 FROM channels_suppression s WHERE s.tenant_id = %s
                                           AND s.channel = %s AND s.address = lower({address})) AS suppressed) c
        {pressure_join}
    """).format(
        over=over, no_address=sql.Literal(ExclusionReason.NO_ADDRESS.value),
        no_consent=sql.Literal(ExclusionReason.NO_CONSENT.value), pressure=sql.Literal(ExclusionReason.PRESSURE.value),
        suppressed=sql.Literal(ExclusionReason.SUPPRESSED.value),
        table=table_ident(population.table), address=address, consent=consent, pressure_join=pressure_join,
        needs_address=sql.Literal(addressing.address_field is not None),
    )
    # Placeholders in textual order: the CASEs (over twice), the seed, the record join, the
    # suppression test, the pressure join.
    return statement, [*over_params, *over_params, seed, tenant.pk, schema.pk, tenant.pk, channel, *params]


def _pressure_caps(tenant: Tenant, dimension: str, channel: str) -> tuple[int | None, int | None]:
    if dimension != "profile" or channel == "file":
        return (None, None)
    config = channel_settings_get(tenant=tenant)
    return (config.pressure_max_per_day, config.pressure_max_per_week)


DRY_RUN_SEED = "dry-run"


def classified(*, tenant: Tenant, schema: DataSchema, population: Population, channel: str,
               config: dict[str, Any], seed: str = DRY_RUN_SEED) -> tuple[sql.Composable, list[Any]]:
    """The SELECT that classifies each recipient of `population` for a channel activity with
    `config` (key, address, status, reason, idempotency key, data), and its parameters. `seed`
    makes the idempotency keys and breaks pressure-cap ties; test mode and its explanation use
    DRY_RUN_SEED, a delivery its own."""
    return _classified(tenant=tenant, schema=schema, population=population, channel=channel,
                       addressing=addressing_for(channel, schema, config),
                       pressure=_pressure_caps(tenant, schema.name, channel), seed=seed)


def classify_counts(*, tenant: Tenant, schema: DataSchema, population: Population, channel: str,
                    config: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Test mode: what a delivery would do, without writing anything: counts by outcome
    (`eligible` and each exclusion reason) and the first eligible keys (for samples)."""
    statement, params = classified(tenant=tenant, schema=schema, population=population, channel=channel,
                                   config=config)
    query = sql.SQL("SELECT reason, count(*), (array_agg(key ORDER BY key))[1:3] FROM ({}) x GROUP BY reason").format(
        statement)
    counts: dict[str, int] = {}
    samples: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(cursor.connection), params)
        for reason, count, keys in cursor.fetchall():
            counts[reason or "eligible"] = count
            if not reason:
                samples = list(keys)
    return counts, samples


def delivery_open(*, tenant: Tenant, run: Any, node_id: str, channel: str, schema: DataSchema,
                  population: Population, config: dict[str, Any], variables: dict[str, Any],
                  now: dt.datetime) -> Delivery:
    """Create the delivery and its ledger (one INSERT … SELECT). Runs in the node's transaction:
    if the node's work rolls back, so does the ledger."""
    window_start, window_end = send_window(config.get("window"), tenant=tenant, now=now)
    delivery = Delivery.objects.create(
        tenant=tenant, run=run, campaign_id=run.campaign_id, node_id=node_id, channel=channel,
        dimension=schema.name, content=config["content"], variables=variables or {},
        rate_per_second=int(config.get("rate_per_second") or 2000), batch_size=int(config.get("batch_size") or 200),
        window_starts_at=window_start, window_ends_at=window_end)
    statement, params = classified(tenant=tenant, schema=schema, population=population, channel=channel,
                                   config=config, seed=f"{delivery.pk}:{uuid.uuid4()}:")
    insert = sql.SQL("""
        INSERT INTO channels_message (tenant_id, delivery_id, recipient_key, address, status, reason, error,
                                      idempotency_key, data, attempts, lease_owner, queued_at)
        SELECT %s, %s, x.key, x.address, x.status, x.reason, '', x.idempotency_key, x.data, 0, '', now()
        FROM ({}) x
        ON CONFLICT (tenant_id, delivery_id, recipient_key) DO NOTHING
    """).format(statement)
    with connection.cursor() as cursor:
        cursor.execute(insert.as_string(cursor.connection), [tenant.pk, delivery.pk, *params])
        delivery.targeted = cursor.rowcount
    delivery.save(update_fields=["targeted"])
    return delivery


def send_window(window: dict[str, str] | None, *, tenant: Tenant, now: dt.datetime
                ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The next send window `{"start": "HH:MM", "end": "HH:MM"}` in the tenant's time zone:
    today's if it has not ended yet, else tomorrow's."""
    if not window:
        return None, None
    zone = ZoneInfo(tenant.time_zone or "UTC")
    local = now.astimezone(zone)
    start_t, end_t = dt.time.fromisoformat(window["start"]), dt.time.fromisoformat(window["end"])
    for days in (0, 1):
        day = local.date() + dt.timedelta(days=days)
        start = dt.datetime.combine(day, start_t, zone)
        end = dt.datetime.combine(day if end_t > start_t else day + dt.timedelta(days=1), end_t, zone)
        if now < end:
            return max(start, now), end
    raise AssertionError("unreachable")


def delivery_counts(delivery: Delivery) -> dict[str, Any]:
    """Counts by status and by exclusion reason, in SQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, reason, count(*) FROM channels_message WHERE tenant_id = %s "
                       "AND delivery_id = %s GROUP BY status, reason", [delivery.tenant_id, delivery.pk])
        rows = cursor.fetchall()
    counts: dict[str, Any] = {status: 0 for status in MessageStatus.values}
    excluded: dict[str, int] = {}
    for status, reason, count in rows:
        counts[status] += count
        if status == MessageStatus.EXCLUDED:
            excluded[reason] = excluded.get(reason, 0) + count
    counts["targeted"] = sum(count for _, _, count in rows)
    counts["excluded_by_reason"] = excluded
    return counts


def close_window(delivery: Delivery, now: dt.datetime) -> int:
    """After the window's end: messages not handed over yet (and not in a live batch) are
    excluded as `window_closed`."""
    if delivery.window_ends_at is None or now < delivery.window_ends_at:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE channels_message SET status = 'excluded', reason = %s, lease_owner = '', lease_expires_at = NULL "
            "WHERE tenant_id = %s AND delivery_id = %s AND (status = 'pending' OR "
            "(status = 'sending' AND lease_expires_at < now()))",
            [ExclusionReason.WINDOW_CLOSED.value, delivery.tenant_id, delivery.pk])
        return cursor.rowcount


def remaining(delivery: Delivery) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM channels_message WHERE tenant_id = %s AND delivery_id = %s "
                       "AND status IN ('pending', 'sending')", [delivery.tenant_id, delivery.pk])
        return cursor.fetchone()[0]


def output_populations(delivery: Delivery, population: Population, store: Any) -> dict[str, Population]:
    """The ports `sent`, `excluded` and `failed`: the input's rows (with their columns) whose
    message ended that way; one INSERT … SELECT each."""
    from apps.campaigns.populations import table_ident

    columns = sql.SQL("").join(sql.SQL(", p.{}").format(sql.Identifier(c.name)) for c in population.columns)
    outputs = {}
    for port, statuses in (("sent", ["sent"]), ("excluded", ["excluded", "cancelled"]), ("failed", ["failed"])):
        select = sql.SQL(
            "SELECT DISTINCT ON (p.key) p.key{columns} FROM {table} p WHERE EXISTS (SELECT 1 FROM channels_message m "
            "WHERE m.tenant_id = %s AND m.delivery_id = %s AND m.recipient_key = p.key AND m.status = ANY(%s)) "
            "ORDER BY p.key").format(columns=columns, table=table_ident(population.table))
        outputs[port] = store.create(port, select, [delivery.tenant_id, delivery.pk, statuses],
                                     columns=population.columns, dimension=population.dimension)
    return outputs


# Senders ------------------------------------------------------------------------------------------

def kick_sender(delivery: Delivery, *, senders: int | None = None) -> None:
    """Send senders (default: CHANNELS_SENDERS_PER_DELIVERY) to work on `delivery` once the
    current transaction commits."""
    from apps.channels import tasks

    delivery_id, tenant_id = delivery.pk, delivery.tenant_id
    count = senders or senders_per_delivery()

    def send() -> None:
        for _ in range(count):
            tasks.send_delivery.delay(delivery_id=delivery_id, tenant_id=tenant_id)

    transaction.on_commit(send)


def sender_is_stale(delivery: Delivery, now: dt.datetime) -> bool:
    seen = delivery.sender_seen_at
    return seen is None or seen < now - dt.timedelta(seconds=lease_seconds())


def _execute(statement: str, params: list[Any]) -> Any:
    cursor = connection.cursor()
    cursor.execute(statement, params)
    return cursor


def _reserve(table: str, column: str, row_id: int, tenant_id: int, seconds: float) -> dt.datetime:
    """Take the next `seconds` of a pacing row; returns when the reserved slot starts."""
    statement = sql.SQL(
        "UPDATE {table} SET {col} = greatest(coalesce({col}, clock_timestamp()), clock_timestamp()) "
        "+ make_interval(secs => %s) "
        "WHERE tenant_id = %s AND id = %s RETURNING {col} - make_interval(secs => %s)").format(
        table=sql.Identifier(table), col=sql.Identifier(column))
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.connection), [seconds, tenant_id, row_id, seconds])
        row = cursor.fetchone()
    return row[0] if row else timezone.now()


def _claim(delivery: Delivery, owner: str, size: int, schema_id: int) -> list[tuple[Any, ...]]:
    """Lease the next batch and return its rows with their records. Each record is looked up
    in a subplan whose tenant and schema come from the claimed rows (parameters, not constants),
    so only the unique (tenant, schema, key) index matches: with constants and statistics taken
    before the tenant's records arrived, the planner took a tenant's expression index and
    scanned all its records for each message (0.4 s a batch at 20,000 profiles, growing)."""
    cursor = _execute("""
        WITH batch AS (
            SELECT id FROM channels_message
            WHERE tenant_id = %s AND delivery_id = %s AND status IN ('pending', 'sending')
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
            ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE channels_message m
            SET status = 'sending', lease_owner = %s, lease_expires_at = now() + make_interval(secs => %s),
                attempts = m.attempts + 1
            FROM batch WHERE m.tenant_id = %s AND m.id = batch.id
            RETURNING m.id, m.recipient_key, m.address, m.idempotency_key, m.data, m.attempts, m.tenant_id,
                      %s::bigint AS schema_id
        )
        SELECT c.id, c.recipient_key, c.address, c.idempotency_key, c.data, c.attempts,
               (SELECT r.attributes FROM schemas_record r
                WHERE r.tenant_id = c.tenant_id AND r.schema_id = c.schema_id AND r.key = c.recipient_key)
        FROM claimed c
        ORDER BY c.id
    """, [delivery.tenant_id, delivery.pk, size, owner, lease_seconds(), delivery.tenant_id, schema_id])
    rows = cursor.fetchall()
    _execute("UPDATE channels_delivery SET sender_seen_at = now() WHERE tenant_id = %s AND id = %s",
             [delivery.tenant_id, delivery.pk])
    return rows


def _record_outcomes(delivery: Delivery, owner: str, outcomes: list[tuple[int, str, str]]) -> None:
    """One statement for the whole batch: sent / failed / back to pending (a transient error) /
    UNTRIED (back to pending, the attempt not counted: it never reached the provider)."""
    if not outcomes:
        return
    ids, statuses, errors = zip(*outcomes, strict=True)
    # The tenant comes in with the rows (behind OFFSET 0, so it is not pushed down as a constant):
    # the planner then looks each row up by its primary key, instead of scanning the tenant's rows
    # when its statistics are stale (a new tenant's first large delivery: 7 ms against 1 ms).
    _execute("""
        UPDATE channels_message m
        SET status = CASE WHEN v.status = %s THEN 'pending' ELSE v.status END, error = v.error,
            attempts = m.attempts - (v.status = %s)::int, lease_owner = '', lease_expires_at = NULL,
            sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE m.sent_at END
        FROM (SELECT %s::bigint AS tenant_id, u.* FROM unnest(%s::bigint[], %s::text[], %s::text[])
              AS u(id, status, error) OFFSET 0) v
        WHERE m.tenant_id = v.tenant_id AND m.id = v.id AND m.lease_owner = %s AND m.status = 'sending'
    """, [UNTRIED, UNTRIED, delivery.tenant_id, list(ids), list(statuses), list(errors), owner])


class _Provider:
    """The provider of a delivery's channel, opened for one batch."""

    def __init__(self, delivery: Delivery, config: ChannelSettings) -> None:
        self.delivery = delivery
        self.config = config
        channel = delivery.channel
        if channel == "email":
            self.sender: Any = providers.SmtpSender(self.config)
        elif channel in ("sms", "push"):
            url, secret = ((self.config.sms_webhook_url, self.config.sms_webhook_secret_encrypted) if channel == "sms"
                           else (self.config.push_webhook_url, self.config.push_webhook_secret_encrypted))
            self.sender = providers.WebhookSender(url, secret, channel=channel)
        else:
            raise providers.ProviderError(f"channel {channel} has no sender")

    def __enter__(self) -> _Provider:
        self.sender.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sender.__exit__(*exc)

    def send(self, *, key: str, address: str, rendered: dict[str, Any]) -> providers.Result:
        if self.delivery.channel == "email":
            return self.sender.send(providers.Email(
                to=address, subject=rendered["subject"], html=rendered["html"], text=rendered["text"],
                message_id=f"{key}@{self.config.message_id_domain}", headers=rendered.get("headers") or {}))
        to: Any = address
        if self.delivery.channel == "push":
            to = json.loads(address)
        payload = providers.webhook_payload(self.delivery.channel, rendered, to=to, message_id=key,
                                            sender=self.config.sms_sender)
        return self.sender.post(payload, key)


def delivery_send(*, tenant: Tenant, delivery_id: int) -> str:
    """Send batches of the delivery until nothing is left, the run is paused or stopped, the
    window closes, or the time budget is spent. Returns why it stopped."""
    from apps.campaigns.models import Run, RunStatus

    owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    delivery = Delivery.objects.filter(pk=delivery_id).select_related("campaign").first()
    if delivery is None or delivery.status != DeliveryStatus.SENDING:
        return "finished"
    schema_id = DataSchema.objects.filter(name=delivery.dimension).values_list("pk", flat=True).first()
    config = channel_settings_get(tenant=tenant)
    size = max(1, min(delivery.batch_size, delivery.rate_per_second))
    why = "budget"

    def stop_reason() -> str | None:
        """Why not to claim a batch now: the run is no longer running, the window is not open."""
        run_status = Run.objects.filter(pk=delivery.run_id).values_list("status", flat=True).first()
        if run_status != RunStatus.RUNNING:
            if run_status in (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.COMPLETED, None):
                _cancel(delivery)
            return "paused" if run_status in (RunStatus.PAUSED, RunStatus.SUSPENDED) else "stopped"
        now = timezone.now()
        if delivery.window_starts_at and now < delivery.window_starts_at:
            return "window not open"
        if delivery.window_ends_at and now >= delivery.window_ends_at:
            close_window(delivery, now)
            return "window closed"
        return None

    while True:
        if reason := stop_reason():
            why = reason
            break
        slot = _reserve("channels_delivery", "next_batch_at", delivery.pk, delivery.tenant_id,
                        size / delivery.rate_per_second)
        if config.pk:
            slot = max(slot, _reserve("channels_channelsettings", "rate_next_at", config.pk, delivery.tenant_id,
                                      size / config.send_rate_per_second))
        pause = (slot - timezone.now()).total_seconds()
        if pause > 0:
            time.sleep(pause)
            if reason := stop_reason():  # paused or stopped while this sender waited for its slot
                why = reason
                break
        deadline = time.monotonic() + 0.8 * lease_seconds()
        rows = _claim(delivery, owner, size, schema_id)
        if not rows:
            why = "done" if remaining(delivery) == 0 else "others at work"
            break
        _send_batch(delivery, tenant, config, owner, rows, deadline=deadline)
        if time.monotonic() - started > time_budget_seconds():
            break
    if why == "budget":
        kick_sender(delivery, senders=1)  # go on in a new task: other work gets a worker meanwhile
    elif why == "others at work":
        # Batches are leased by another sender, alive or dead. The claim just marked the delivery
        # as seen: the node sends a sender again only once a lease period has passed, when a
        # dead sender's batch can be claimed (waking it now would spin until then).
        pass
    else:
        _execute("UPDATE channels_delivery SET sender_seen_at = NULL WHERE tenant_id = %s AND id = %s",
                 [delivery.tenant_id, delivery.pk])
        _wake_node(delivery)
    return why


def _send_batch(delivery: Delivery, tenant: Tenant, config: ChannelSettings, owner: str,
                rows: list[tuple[Any, ...]], *, deadline: float) -> None:
    """Render a claimed batch and hand it over on up to CHANNELS_SENDER_CONNECTIONS connections
    at once (a thread each, the time goes into waiting for the provider), the hand-over starting
    with the first message rendered. Outcomes are written from this thread, in one statement as
    soon as FLUSH_EVERY have come back (with whatever else came back meanwhile), so a worker
    killed mid-batch re-sends (with the same keys) only what it had handed over and not recorded
    yet. Messages left when `deadline` passes
    (before the lease can run out: another sender may own them then) go back to pending.

    When anything raises in this thread mid-batch (a rendering helper, a write), the batch is
    wound down before the error goes on: messages no lane has taken yet are taken back, every
    lane finishes the message in hand, and all outcomes are written, what was never handed over
    going back to pending untried. Otherwise what the lanes sent would stay `sending` until the
    lease ran out, and another sender would send it again."""
    outcomes: list[tuple[int, str, str]] = []
    bounced: list[tuple[str, str]] = []
    handled: set[int] = set()  # noted here or handed to a lane; the rest go back untried on failure

    def note(message_id: int, status: str, detail: str) -> None:
        outcomes.append((message_id, status, detail))

    def flush_if_due() -> None:
        if len(outcomes) >= FLUSH_EVERY:
            _record_outcomes(delivery, owner, outcomes)
            outcomes.clear()

    def drain(*, wait: bool, flush: bool = True) -> int:
        """Note the outcomes that came back (waiting for one when `wait`), all of them before a
        write, so a write takes whatever piled up meanwhile; returns how many lanes finished."""
        done = 0
        while True:
            try:
                item = results.get() if wait else results.get_nowait()
            except queue.Empty:
                break
            wait = False
            if item is None:
                done += 1
            else:
                collect(item)
        if flush:
            flush_if_due()
        return done

    Item = tuple[int, str, str, dict[str, Any]]
    work: queue.Queue[Item | None] = queue.Queue()
    results: queue.Queue[tuple[int, str, str, str] | None] = queue.Queue()
    statuses = {providers.SENT: MessageStatus.SENT, providers.FAILED: MessageStatus.FAILED}

    def lane() -> None:
        try:
            with _Provider(delivery, config) as provider:
                while (item := work.get()) is not None:
                    message_id, address, key, rendered = item
                    if time.monotonic() > deadline:
                        results.put((message_id, UNTRIED, "", ""))
                        continue
                    try:
                        result = provider.send(key=key, address=address, rendered=rendered)
                    except Exception as exc:  # a bug or an input nobody foresaw: this message only
                        logger.exception("delivery %s: message %s", delivery.pk, message_id)
                        results.put((message_id, MessageStatus.FAILED, f"Cannot send: {exc!r}"[:1000], ""))
                        continue
                    results.put((message_id, statuses.get(result.outcome, MessageStatus.PENDING), result.detail,
                                 address if result.is_hard_bounce else ""))
        except Exception as exc:
            # The provider cannot be reached at all (or closing it failed): what this lane takes
            # from now on goes back to pending (its attempt counted), for the next sender to retry.
            if isinstance(exc, providers.ProviderError):
                logger.warning("delivery %s: %s", delivery.pk, exc)
            else:
                logger.exception("delivery %s: a sending lane failed", delivery.pk)
            while (item := work.get()) is not None:
                results.put((item[0], MessageStatus.PENDING, str(exc) or repr(exc), ""))
        finally:
            results.put(None)

    def collect(item: tuple[int, str, str, str]) -> None:
        message_id, status, detail, bounced_address = item
        note(message_id, status, detail)
        if bounced_address:
            bounced.append((bounced_address, detail))

    count = max(1, min(sender_connections(), len(rows)))
    threads = [threading.Thread(target=lane, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    finished = 0

    def stop_lanes() -> None:
        """Let every lane finish (after what is queued) and note all their outcomes."""
        nonlocal finished
        for _ in threads:
            work.put(None)
        while finished < count:
            finished += drain(wait=True, flush=False)
        for thread in threads:
            thread.join()

    # Links (signed unsubscribe URL) cost a signature and a URL reversal each: only when used.
    needs_links = delivery.channel == "email" or "unsubscribe_url" in json.dumps(delivery.content)
    campaign_name = delivery.campaign.name
    try:
        for message_id, _key, address, idempotency_key, data, attempts, attributes in rows:
            if attempts > MAX_ATTEMPTS:
                handled.add(message_id)
                note(message_id, MessageStatus.FAILED, f"Gave up after {MAX_ATTEMPTS} attempts.")
                continue
            key = str(idempotency_key)
            links = tracking.links_for(tenant_id=delivery.tenant_id, message_id=message_id) if needs_links else {}
            context = personalization.message_context(
                record=_json(attributes), dimension=delivery.dimension, row=_json(data),
                variables=delivery.variables, campaign=campaign_name, message={"id": key, **links})
            try:
                rendered = content_module.render_content(delivery.channel, delivery.content, context)
            except personalization.RenderError as exc:
                handled.add(message_id)
                note(message_id, MessageStatus.FAILED, f"Cannot render: {exc}")
                continue
            if delivery.channel == "email":
                rendered["html"], rendered["headers"] = tracking.instrument_email(
                    rendered["html"], tenant_id=delivery.tenant_id, message_id=message_id,
                    unsubscribe_url=links["unsubscribe_url"])
            handled.add(message_id)
            work.put((message_id, address, key, rendered))
            finished += drain(wait=False)
    except BaseException:
        # Stop handing over: take back what no lane has taken yet, wait for the lanes, write
        # every outcome (what was not handed over goes back to pending, untried), then go on
        # with the error.
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                note(item[0], UNTRIED, "")
        stop_lanes()
        outcomes.extend((row[0], UNTRIED, "") for row in rows if row[0] not in handled)
        try:
            _record_outcomes(delivery, owner, outcomes)
            if bounced:
                tracking.suppress(tenant=tenant, channel=delivery.channel, addresses=bounced)
        except Exception:
            logger.exception("delivery %s: cannot record the outcomes of a failed batch", delivery.pk)
        raise
    stop_lanes()
    _record_outcomes(delivery, owner, outcomes)
    if bounced:
        tracking.suppress(tenant=tenant, channel=delivery.channel, addresses=bounced)


def _json(value: Any) -> Any:
    """Django's cursor hands JSONB over as text (its JSONField decodes it itself)."""
    return json.loads(value) if isinstance(value, str) else value


def _cancel(delivery: Delivery) -> None:
    _execute("UPDATE channels_message SET status = 'cancelled', lease_owner = '', lease_expires_at = NULL "
             "WHERE tenant_id = %s AND delivery_id = %s AND status IN ('pending', 'sending')",
             [delivery.tenant_id, delivery.pk])
    _execute("UPDATE channels_delivery SET status = 'cancelled', finished_at = now() WHERE tenant_id = %s "
             "AND id = %s AND status = 'sending'", [delivery.tenant_id, delivery.pk])


def _wake_node(delivery: Delivery) -> None:
    """Tell the channel activity's node to look now rather than at its next poll. The node's
    own wake-up time stays the durable guarantee; this only saves the wait."""
    from apps.campaigns import engine
    from apps.campaigns.models import NodeState, NodeStatus, Run

    with transaction.atomic():
        woken = NodeState.objects.filter(run_id=delivery.run_id, node_id=delivery.node_id,
                                         status=NodeStatus.WAITING).update(wake_at=engine.now())
        if woken:
            run = Run.objects.filter(pk=delivery.run_id).first()
            if run is not None:
                Run.objects.filter(pk=run.pk).update(next_check_at=engine.now())
                engine.kick_run(run)


# File export --------------------------------------------------------------------------------------

def export_path(delivery: Delivery) -> Path:
    return Path(settings.MEDIA_ROOT) / "exports" / f"tenant-{delivery.tenant_id}" / f"delivery-{delivery.pk}.csv"


def export_file(delivery: Delivery, *, campaign_name: str) -> int:
    """Write the file of a file-export delivery: one line per pending message (key, then the
    rendered columns; formula-safe CSV), streamed from a server-side cursor; then mark those
    messages sent in one statement. Runs in the node's transaction: a crash rolls the ledger
    back and the file is written again, whole, by the retry."""
    from apps.audiences.export import csv_lines

    columns = [c["name"] for c in delivery.content["columns"]]
    schema_id = DataSchema.objects.filter(name=delivery.dimension).values_list("pk", flat=True).first()
    path = export_path(delivery)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")

    def rows() -> Any:
        with connection.connection.cursor(name=f"export_{delivery.pk}") as cursor:
            cursor.itersize = 2000
            cursor.execute(
                "SELECT m.recipient_key, m.idempotency_key, m.data, r.attributes FROM channels_message m "
                "LEFT JOIN schemas_record r ON r.tenant_id = m.tenant_id AND r.schema_id = %s "
                "AND r.key = m.recipient_key WHERE m.tenant_id = %s AND m.delivery_id = %s AND m.status = 'pending' "
                "ORDER BY m.recipient_key", [schema_id, delivery.tenant_id, delivery.pk])
            for key, idempotency_key, data, attributes in cursor:
                context = personalization.message_context(
                    record=_json(attributes), dimension=delivery.dimension, row=_json(data),
                    variables=delivery.variables, campaign=campaign_name, message={"id": str(idempotency_key)})
                try:
                    yield key, content_module.render_content("file", delivery.content, context)["columns"]
                except personalization.RenderError as exc:
                    raise NodeError(f"Cannot render the line of {key}: {exc}") from None

    with partial.open("w", encoding="utf-8", newline="") as out:
        for line in csv_lines(columns, rows()):
            out.write(line)
    partial.replace(path)
    cursor = _execute("UPDATE channels_message SET status = 'sent', sent_at = now() WHERE tenant_id = %s "
                      "AND delivery_id = %s AND status = 'pending'", [delivery.tenant_id, delivery.pk])
    return cursor.rowcount
