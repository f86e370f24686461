"""Delivery reports shaped for people: the rates a marketer reads next to the counts, the
over-time series without gaps (in the tenant's time zone), and the two CSV exports (one row per
delivery; one row per hour or day), formula-safe through the audience export's `csv_table`.
The counting itself is SQL, in `selectors.delivery_report` and `selectors.delivery_report_rows`."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from apps.audiences.export import csv_table
from apps.channels.models import ExclusionReason

# The series a report draws over time: (key in the selector's buckets, column / label).
SERIES = (("sent", "sent"), ("delivered", "delivered"), ("undelivered", "undelivered"), ("open", "opened"),
          ("click", "clicked"), ("unsubscribe", "unsubscribed"), ("bounce", "bounced"))
# A long-lived campaign is not drawn hour by hour: past this many buckets the gaps are not filled.
MAX_FILLED_BUCKETS = 24 * 92

# rate -> (numerator, denominator, label)
RATES = {
    "exclusion_rate": ("excluded", "targeted", "Excluded / targeted"),
    "failure_rate": ("failed", "handed_over", "Failed / (sent + failed)"),
    "delivery_rate": ("delivered", "reported", "Delivered / (delivered + undelivered + bounced)"),
    "open_rate": ("opened", "sent", "Opened / sent"),
    "click_rate": ("clicked", "sent", "Clicked / sent"),
    "click_to_open_rate": ("clicked", "opened", "Clicked / opened"),
    "unsubscribe_rate": ("unsubscribed", "sent", "Unsubscribed / sent"),
    "bounce_rate": ("bounced", "sent", "Bounced (hard) / sent"),
}

DELIVERY_COLUMNS = [
    "campaign_id", "campaign", "run_id", "run_started", "is_test_run", "delivery_id", "node", "channel", "status",
    "created_at", "finished_at", "targeted", "excluded",
    *(f"excluded_{reason}" for reason in ExclusionReason.values),
    "sent", "failed", "pending", "cancelled", "delivered", "undelivered", "opened", "clicked", "unsubscribed",
    "bounced", "soft_bounced", *(f"{rate}_pct" for rate in RATES),
]
OVER_TIME_COLUMNS = ["bucket_start", *(column for _, column in SERIES)]


COUNTED = ("targeted", "excluded", "sent", "failed", "pending", "cancelled", "delivered", "undelivered", "opened",
           "clicked", "unsubscribed", "bounced", "soft_bounced")


def report_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts of several deliveries (rows of `selectors.delivery_report_rows`) added up: the
    same as `selectors.delivery_report` over them, since a message belongs to one delivery."""
    totals: dict[str, Any] = {key: sum(row[key] for row in rows) for key in COUNTED}
    totals["excluded_by_reason"] = {}
    for row in rows:
        for reason, count in row["excluded_by_reason"].items():
            totals["excluded_by_reason"][reason] = totals["excluded_by_reason"].get(reason, 0) + count
    return totals


def report_rates(counts: dict[str, Any]) -> dict[str, float | None]:
    """Each rate of RATES as a percentage rounded to two decimals; None when its denominator is
    zero (nothing sent yet, no provider report: e-mail has none)."""
    bases = {**counts, "handed_over": counts["sent"] + counts["failed"],
             "reported": counts["delivered"] + counts["undelivered"] + counts["bounced"]}
    rates: dict[str, float | None] = {}
    for name, (numerator, denominator, _) in RATES.items():
        base = bases[denominator]
        rates[name] = round(100 * bases[numerator] / base, 2) if base else None
    return rates


def report_series(over_time: list[dict[str, Any]], *, bucket: str, time_zone: str) -> list[dict[str, Any]]:
    """The selector's buckets as `{"at": aware datetime in the tenant's zone, "sent": n, ...}`,
    every series present, and the empty buckets between the first and the last filled with
    zeros (a line chart must not draw a straight line across a silent night)."""
    zone = zoneinfo.ZoneInfo(time_zone or "UTC")
    found = {datetime.fromisoformat(b["at"]).astimezone(zone): b for b in over_time}
    keys = sorted(found)
    if keys:
        filled, at = [], keys[0]
        while at <= keys[-1] and len(filled) <= MAX_FILLED_BUCKETS:
            filled.append(at)
            at = _next_bucket(at, bucket, zone)
        if len(filled) <= MAX_FILLED_BUCKETS:
            keys = sorted(set(filled) | set(keys))
    return [{"at": at, **{column: found.get(at, {}).get(key, 0) for key, column in SERIES}} for at in keys]


def _next_bucket(at: datetime, bucket: str, zone: zoneinfo.ZoneInfo) -> datetime:
    if bucket == "hour":
        # Step in UTC: a local hour that repeats when clocks go back is still two buckets.
        return (at.astimezone(zoneinfo.ZoneInfo("UTC")) + timedelta(hours=1)).astimezone(zone)
    day = at.date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _local(value: datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    """A time as a spreadsheet reads it: local to the tenant, without an offset."""
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def deliveries_csv(rows: list[dict[str, Any]], *, time_zone: str) -> Iterator[str]:
    """One line per delivery (rows of `selectors.delivery_report_rows`): where it belongs, its
    counts, its exclusions by reason and its rates. Times are local to `time_zone`."""
    zone = zoneinfo.ZoneInfo(time_zone or "UTC")

    def line(row: dict[str, Any]) -> list[Any]:
        delivery = row["delivery"]
        rates = report_rates(row)
        return [
            delivery.campaign_id, delivery.campaign.name, delivery.run_id, _local(delivery.run.created_at, zone),
            delivery.run.is_test, delivery.pk, delivery.node_id, delivery.channel, delivery.status,
            _local(delivery.created_at, zone), _local(delivery.finished_at, zone), row["targeted"], row["excluded"],
            *(row["excluded_by_reason"].get(reason, 0) for reason in ExclusionReason.values),
            *(row[k] for k in ("sent", "failed", "pending", "cancelled", "delivered", "undelivered", "opened",
                               "clicked", "unsubscribed", "bounced", "soft_bounced")),
            *(rates[rate] for rate in RATES),
        ]

    return csv_table(DELIVERY_COLUMNS, (line(row) for row in rows))


def over_time_csv(series: list[dict[str, Any]]) -> Iterator[str]:
    """One line per bucket of `report_series` (gaps filled with zeros), its start local to the
    tenant."""
    return csv_table(OVER_TIME_COLUMNS, ([b["at"].strftime("%Y-%m-%d %H:%M"), *(b[c] for _, c in SERIES)]
                                    for b in series))
