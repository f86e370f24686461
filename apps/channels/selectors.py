"""Reads of channel settings, deliveries and messages."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.channels import content as content_module
from apps.channels.models import ChannelSettings, Delivery, DeliveryStatus, Message, MessageStatus
from apps.core.errors import ApplicationError, NotFound
from apps.schemas import selectors as schema_selectors
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def channel_settings_get(*, tenant: Tenant) -> ChannelSettings:
    """The tenant's settings (an unsaved default row if it never saved any)."""
    with tenant_scope(tenant):
        found = ChannelSettings.objects.filter(tenant=tenant).first()
    return found or ChannelSettings(tenant=tenant)


def content_problems(*, tenant: Tenant, channel: str, content: Any, schema: str = "profile",
                     variables: list[str] | None = None) -> list[dict[str, Any]]:
    """What is wrong with `content` for `channel`, checked against the fields of `schema` and the
    declared `variables` (None: variables are not checked)."""
    try:
        data_schema = schema_selectors.schema_get(tenant=tenant, name=schema)
    except NotFound:
        raise ApplicationError("Unknown schema.", fields={"schema": [f"No schema named {schema!r}."]}) from None
    fields = {f.name for f in schema_selectors.field_list(tenant=tenant, schema=data_schema)}
    problems = content_module.content_problems(channel, content, fields=fields,
                                               variables=set(variables) if variables is not None else None)
    return [p.as_dict() for p in problems]


def delivery_list(*, tenant: Tenant, filters: dict[str, Any] | None = None) -> QuerySet[Delivery]:
    filters = filters or {}
    with tenant_scope(tenant):
        qs = Delivery.objects.filter(tenant=tenant).select_related("campaign", "decided_by")
    for name in ("campaign", "run"):
        if filters.get(name):
            try:
                qs = qs.filter(**{f"{name}_id": int(filters[name])})
            except (TypeError, ValueError):
                raise ApplicationError(f"Invalid {name}.", fields={name: ["Give an id."]}) from None
    if filters.get("channel"):
        qs = qs.filter(channel=filters["channel"])
    if filters.get("status"):
        if filters["status"] not in DeliveryStatus.values:
            raise ApplicationError("Invalid status.", fields={"status": [f"One of: {', '.join(DeliveryStatus.values)}."]})
        qs = qs.filter(status=filters["status"])
    return qs


def delivery_get(*, tenant: Tenant, id: Any) -> Delivery:
    with tenant_scope(tenant):
        found = Delivery.objects.filter(tenant=tenant, pk=id).select_related("campaign").first()
    if found is None:
        raise NotFound("No such delivery.")
    return found


def delivery_counts(*, tenant: Tenant, delivery: Delivery) -> dict[str, Any]:
    """Live counts by status and exclusion reason (final ones once the delivery is done)."""
    from apps.channels import sending

    if delivery.tenant_id != tenant.pk:
        raise NotFound("No such delivery.")
    return sending.delivery_counts(delivery)


def message_list(*, tenant: Tenant, delivery: Delivery, status: str | None = None) -> QuerySet[Message]:
    with tenant_scope(tenant):
        qs = Message.objects.filter(tenant=tenant, delivery=delivery).order_by("id")
    if status:
        if status not in MessageStatus.values:
            raise ApplicationError("Invalid status.", fields={"status": [f"One of {', '.join(MessageStatus.values)}."]})
        qs = qs.filter(status=status)
    return qs


def _report_scope(*, tenant: Tenant, campaign: Any, run: Any, delivery: Any) -> tuple[Any, list[Any]]:
    """The SQL condition on the deliveries `d` a report counts, and its parameters; a filter
    that is not an id is a 400 naming it."""
    from psycopg import sql

    conditions, params = [sql.SQL("d.tenant_id = %s")], [tenant.pk]
    for column, field, value in (("campaign_id", "campaign", campaign), ("run_id", "run", run),
                                 ("id", "delivery", delivery)):
        if value not in (None, ""):
            try:
                params.append(int(value))
            except (TypeError, ValueError):
                raise ApplicationError(f"Invalid {field}.", fields={field: ["Give an id."]}) from None
            conditions.append(sql.SQL("d.{} = %s").format(sql.Identifier(column)))
    return sql.SQL(" AND ").join(conditions), params


_MESSAGES = ("channels_message m JOIN channels_delivery d ON d.tenant_id = m.tenant_id AND d.id = m.delivery_id")
_EVENTS = ("channels_messageevent e JOIN channels_message m ON m.tenant_id = e.tenant_id AND m.id = e.message_id "
           "JOIN channels_delivery d ON d.tenant_id = m.tenant_id AND d.id = m.delivery_id")


def _report_counts(statuses: list[tuple[str, str, int]], events: dict[str, int]) -> dict[str, Any]:
    """The report's counts from (status, reason, count) rows and the events' counts by kind."""
    by_status = {status: 0 for status in MessageStatus.values}
    excluded: dict[str, int] = {}
    for status, reason, count in statuses:
        by_status[status] += count
        if status == MessageStatus.EXCLUDED:
            excluded[reason] = excluded.get(reason, 0) + count
    return {
        "targeted": sum(count for _, _, count in statuses), "excluded": by_status["excluded"],
        "excluded_by_reason": excluded, "sent": by_status["sent"], "failed": by_status["failed"],
        "pending": by_status["pending"] + by_status["sending"], "cancelled": by_status["cancelled"],
        # `undelivered` are the SMS/push providers' reports; e-mails' hard bounces are `bounced`, so
        # the delivery rate stays a rate over provider reports and the bounce rate one over e-mails.
        "delivered": events.get("delivered", 0), "undelivered": events.get("undelivered", 0),
        "opened": events.get("open", 0), "clicked": events.get("click", 0), "unsubscribed": events.get("unsubscribe", 0),
        "bounced": events.get("bounce", 0), "soft_bounced": events.get("soft_bounce", 0),
    }


def delivery_report(*, tenant: Tenant, campaign: Any = None, run: Any = None, delivery: Any = None,
                    bucket: str = "hour") -> dict[str, Any]:
    """What happened to the messages of the tenant's deliveries (optionally of one campaign, run
    or delivery): targeted, excluded by reason, sent, failed, delivered, undelivered (SMS/push
    provider reports), opened, clicked, unsubscribed, bounced (hard), soft_bounced, and `over_time` (see
    `delivery_report_over_time`). Counted in SQL; an open or a click counts once per message."""
    over_time = delivery_report_over_time(tenant=tenant, campaign=campaign, run=run, delivery=delivery, bucket=bucket)
    statuses, events = _counted(tenant=tenant, campaign=campaign, run=run, delivery=delivery, per_delivery=False)
    return {**_report_counts(statuses.get(None, []), events.get(None, {})), "bucket": bucket, "over_time": over_time}


def _counted(*, tenant: Tenant, campaign: Any, run: Any, delivery: Any,
             per_delivery: bool) -> tuple[dict[Any, list[tuple[str, str, int]]], dict[Any, dict[str, int]]]:
    """The messages of the report's deliveries by status and reason, and the messages with each
    kind of event (once per message): two statements, keyed by delivery id when `per_delivery`,
    else by None (all of them together)."""
    from django.db import connection
    from psycopg import sql

    deliveries, params = _report_scope(tenant=tenant, campaign=campaign, run=run, delivery=delivery)
    key = sql.SQL("m.delivery_id" if per_delivery else "NULL::bigint")
    statuses: dict[Any, list[tuple[str, str, int]]] = {}
    events: dict[Any, dict[str, int]] = {}
    with connection.cursor() as cursor:
        statement = sql.SQL("SELECT {key}, m.status, m.reason, count(*) FROM {messages} "
                            "WHERE m.tenant_id = %s AND {deliveries} GROUP BY 1, 2, 3").format(
            key=key, messages=sql.SQL(_MESSAGES), deliveries=deliveries)
        cursor.execute(statement.as_string(cursor.connection), [tenant.pk, *params])
        for delivery_id, status, reason, count in cursor.fetchall():
            statuses.setdefault(delivery_id, []).append((status, reason, count))
        statement = sql.SQL("SELECT {key}, e.kind, count(DISTINCT e.message_id) FROM {events} "
                            "WHERE e.tenant_id = %s AND {deliveries} GROUP BY 1, 2").format(
            key=key, events=sql.SQL(_EVENTS), deliveries=deliveries)
        cursor.execute(statement.as_string(cursor.connection), [tenant.pk, *params])
        for delivery_id, kind, count in cursor.fetchall():
            events.setdefault(delivery_id, {})[kind] = count
    return statuses, events


def delivery_report_over_time(*, tenant: Tenant, campaign: Any = None, run: Any = None, delivery: Any = None,
                              bucket: str = "hour") -> list[dict[str, Any]]:
    """Per `bucket` (hour or day, in the tenant's time zone) with any activity, in time order:
    `{"at": ISO start, "sent": n, "open": n, "click": n, ...}`: the messages sent and the events
    (a click once per message and link)."""
    from django.db import connection
    from psycopg import sql

    if bucket not in ("hour", "day"):
        raise ApplicationError("Invalid bucket.", fields={"bucket": ["hour or day"]})
    deliveries, params = _report_scope(tenant=tenant, campaign=campaign, run=run, delivery=delivery)
    # date_trunc in the tenant's zone: a day is the tenant's day, not UTC's.
    statement = sql.SQL("SELECT t.at, t.kind, count(*) FROM ("
                        " SELECT date_trunc(%s, m.sent_at, %s) AS at, 'sent' AS kind FROM {messages}"
                        " WHERE m.tenant_id = %s AND m.status = 'sent' AND m.sent_at IS NOT NULL AND {deliveries}"
                        " UNION ALL SELECT date_trunc(%s, e.at, %s), e.kind FROM {events}"
                        " WHERE e.tenant_id = %s AND {deliveries}"
                        ") t GROUP BY t.at, t.kind ORDER BY t.at").format(
        messages=sql.SQL(_MESSAGES), events=sql.SQL(_EVENTS), deliveries=deliveries)
    zone = tenant.time_zone or "UTC"
    series: dict[Any, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.connection),
                       [bucket, zone, tenant.pk, *params, bucket, zone, tenant.pk, *params])
        for at, kind, count in cursor.fetchall():
            series.setdefault(at, {"at": at.isoformat()})[kind] = count
    return list(series.values())


def delivery_report_rows(*, tenant: Tenant, campaign: Any = None, run: Any = None,
                         delivery: Any = None) -> list[dict[str, Any]]:
    """The report's counts for each of the tenant's deliveries (optionally of one campaign, run or
    delivery), newest first: `{"delivery": Delivery (with campaign and run), **counts}`; a
    delivery without messages yet has zeros. Counted in SQL, grouped by delivery."""
    # Counted first: the filters are checked there (a 400 naming the field).
    statuses, events = _counted(tenant=tenant, campaign=campaign, run=run, delivery=delivery, per_delivery=True)
    with tenant_scope(tenant):
        found = list(delivery_list(tenant=tenant, filters={"campaign": campaign, "run": run})
                     .select_related("run").filter(**({"pk": int(delivery)} if delivery not in (None, "") else {})))
    return [{"delivery": d, **_report_counts(statuses.get(d.pk, []), events.get(d.pk, {}))} for d in found]
