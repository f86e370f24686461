"""The report as CSV through the API (`GET /api/v1/channels/report.csv`): one row per delivery
with its counts, exclusions by reason and rates, or one row per hour or day in the tenant's time
zone with the gaps filled; cells a spreadsheet would run as formulas are neutralised; bad filters
are 400 naming the field; another tenant's deliveries never show; every role may read it."""

from __future__ import annotations

import csv
import io

import pytest
from rest_framework.test import APIClient

from apps.channels.reports import COUNTED, DELIVERY_COLUMNS, OVER_TIME_COLUMNS
from tests.channels.reported import NAME, NODE, reported_campaign
from tests.conftest import ROLES

URL = "/api/v1/channels/report.csv"


@pytest.fixture
def reported(acme, people):
    return reported_campaign(acme, people["acme"])


def rows_of(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def test_one_row_per_delivery_with_counts_reasons_and_rates(api, reported):
    response = api("acme", "viewer").get(URL, {"campaign": reported.campaign.pk})
    assert response["Content-Disposition"] == f'attachment; filename="report-campaign-{reported.campaign.pk}.csv"'
    header, rows = rows_of(response)
    assert header == DELIVERY_COLUMNS
    assert [r["delivery_id"] for r in rows] == [str(reported.sms.pk), str(reported.email.pk)]  # newest first
    sms, email = rows
    assert {k: email[k] for k in ("targeted", "excluded", "excluded_no_consent", "excluded_no_address",
                                  "excluded_pressure", "sent", "failed", "pending", "cancelled", "delivered",
                                  "opened", "clicked", "unsubscribed")} == {
        "targeted": "10", "excluded": "3", "excluded_no_consent": "2", "excluded_no_address": "1",
        "excluded_pressure": "0", "sent": "6", "failed": "1", "pending": "0", "cancelled": "0", "delivered": "0",
        "opened": "3", "clicked": "2", "unsubscribed": "1"}
    assert {k: email[k] for k in ("exclusion_rate_pct", "failure_rate_pct", "delivery_rate_pct", "open_rate_pct",
                                  "click_rate_pct", "click_to_open_rate_pct", "unsubscribe_rate_pct")} == {
        "exclusion_rate_pct": "30.0", "failure_rate_pct": "14.29", "delivery_rate_pct": "",  # e-mail: no reports
        "open_rate_pct": "50.0", "click_rate_pct": "33.33", "click_to_open_rate_pct": "66.67",
        "unsubscribe_rate_pct": "16.67"}
    assert (sms["channel"], sms["sent"], sms["delivered"], sms["undelivered"], sms["excluded_pressure"],
            sms["delivery_rate_pct"]) == ("sms", "3", "2", "1", "1", "66.67")
    assert (email["run_id"], email["is_test_run"], email["status"]) == (str(reported.runs[0].pk), "true", "done")
    assert email["finished_at"] == "2026-03-10 10:45:00"  # 09:45 UTC, local to Europe/Paris


def test_cells_that_a_spreadsheet_would_run_are_neutralised(api, reported):
    _, rows = rows_of(api("acme", "viewer").get(URL, {"delivery": reported.email.pk}))
    [row] = rows
    assert row["campaign"] == "'" + NAME and row["node"] == "'" + NODE
    assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for value in row.values())


def test_over_time_per_day_and_hour_in_the_tenants_time_zone(api, reported):
    response = api("acme", "marketer").get(URL, {"campaign": reported.campaign.pk, "table": "over_time",
                                                 "bucket": "day"})
    assert response["Content-Disposition"] == (
        f'attachment; filename="report-campaign-{reported.campaign.pk}-by-day.csv"')
    header, days = rows_of(response)
    assert header == OVER_TIME_COLUMNS
    # The open and the unsubscribe at 23:30 UTC on March 10 are on March 11 in Paris.
    assert days == [
        {"bucket_start": "2026-03-10 00:00", "sent": "6", "delivered": "0", "undelivered": "0", "opened": "2",
         "clicked": "3", "unsubscribed": "0", "bounced": "0"},
        {"bucket_start": "2026-03-11 00:00", "sent": "3", "delivered": "2", "undelivered": "1", "opened": "1",
         "clicked": "0", "unsubscribed": "1", "bounced": "0"}]
    _, hours = rows_of(api("acme", "marketer").get(URL, {"campaign": reported.campaign.pk, "table": "over_time",
                                                         "bucket": "hour"}))
    # From 08:00 on March 10 to 11:00 on March 11 (Paris), the silent hours as zeros.
    assert len(hours) == 28 and hours[0]["bucket_start"] == "2026-03-10 08:00"
    assert hours[-1] == {"bucket_start": "2026-03-11 11:00", "sent": "3", "delivered": "2", "undelivered": "1",
                         "opened": "0", "clicked": "0", "unsubscribed": "0", "bounced": "0"}
    assert sum(int(h["sent"]) for h in hours) == 9 and hours[5]["sent"] == "0"


def test_a_run_filters_the_rows(api, reported):
    _, rows = rows_of(api("acme", "viewer").get(URL, {"run": reported.runs[1].pk}))
    assert [r["delivery_id"] for r in rows] == [str(reported.sms.pk)]


@pytest.mark.parametrize(("query", "field"), [
    ({"table": "pivot"}, "table"), ({"table": "over_time", "bucket": "week"}, "bucket"), ({"bucket": "week"}, "bucket"),
    ({"campaign": "abc"}, "campaign"), ({"run": "1x"}, "run"), ({"delivery": "x", "table": "over_time"}, "delivery"),
])
def test_bad_filters_are_400_naming_the_field(api, reported, query, field):
    response = api("acme", "viewer").get(URL, query)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert field in response.json()["error"]["fields"], response.json()


def test_another_tenants_deliveries_never_show(api, reported):
    for query in ({}, {"campaign": reported.campaign.pk}, {"delivery": reported.email.pk}):
        _, rows = rows_of(api("globex", "admin").get(URL, query))
        assert rows == []
    _, rows = rows_of(api("globex", "admin").get(URL, {"campaign": reported.campaign.pk, "table": "over_time"}))
    assert rows == []


def test_every_role_may_read_it_and_nobody_anonymous(api, reported):
    for role in ROLES:
        _, rows = rows_of(api("acme", role).get(URL, {"campaign": reported.campaign.pk}))
        assert len(rows) == 2, role
    assert APIClient().get(URL).status_code == 401


def test_the_rows_add_up_to_the_json_report(api, reported):
    report = api("acme", "viewer").get("/api/v1/channels/report", {"campaign": reported.campaign.pk}).json()
    _, rows = rows_of(api("acme", "viewer").get(URL, {"campaign": reported.campaign.pk}))
    for key in COUNTED:
        assert sum(int(row[key]) for row in rows) == report[key], key
    for reason, count in report["excluded_by_reason"].items():
        assert sum(int(row[f"excluded_{reason}"]) for row in rows) == count
