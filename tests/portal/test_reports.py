"""Report pages of the portal: a campaign's report (all its deliveries or one run's) and one
delivery's: the counts, rates and exclusions as tables, the chart data in a json_script block,
over time by hour or day, the deliveries listed with navigation, the CSV downloads (formula-safe),
the link from the campaign page; every role reads them, another tenant gets 404."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from django.urls import reverse

from apps.profiles.services import profile_upsert
from tests.campaigns.conftest import eager  # noqa: F401  (fixture)
from tests.channels.conftest import smtp_ready, smtp_sink  # noqa: F401  (fixtures)
from tests.channels.reported import NAME, NODE, reported_campaign
from tests.channels.test_email_activity import email_graph, run_campaign
from tests.conftest import ROLES


@pytest.fixture
def reported(acme, people):
    return reported_campaign(acme, people["acme"])


def campaign_url(reported, **query):
    url = reverse("portal:campaign-report", kwargs={"campaign_id": reported.campaign.pk})
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def delivery_url(reported, delivery, suffix=""):
    return reverse(f"portal:delivery-report{suffix}", kwargs={"campaign_id": reported.campaign.pk,
                                                              "delivery_id": delivery.pk})


def chart_data(response):
    [data] = re.findall(r'<script id="report-data" type="application/json">(.*?)</script>', response.text, re.S)
    return json.loads(data)


def table(response, testid):
    """The rows of a table of the page as lists of cell texts."""
    [body] = re.findall(rf'<table[^>]*data-testid="{testid}".*?<tbody>(.*?)</tbody>', response.text, re.S)
    return [[re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def counts_of(response):
    """The counts table as {count: [messages, rate]}, read by the rows' data-count."""
    [body] = re.findall(r'<table[^>]*data-testid="counts-table".*?<tbody>(.*?)</tbody>', response.text, re.S)
    return {key: [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
                  for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for key, row in re.findall(r'<tr data-count="(\w+)">(.*?)</tr>', body, re.S)}


def test_campaign_report_shows_counts_rates_reasons_and_every_delivery(portal, reported):
    response = portal("acme", "viewer").get(campaign_url(reported))
    assert response.status_code == 200
    counts = counts_of(response)
    assert counts["targeted"] == ["14", "—"] and counts["excluded"] == ["4", "28.57 %"]
    assert counts["sent"][0] == "9" and counts["failed"] == ["1", "10.00 %"]
    assert counts["delivered"] == ["2", "66.67 %"] and counts["opened"] == ["3", "33.33 %"]
    assert counts["clicked"] == ["2", "22.22 %"] and counts["unsubscribed"] == ["1", "11.11 %"]
    assert counts["click_to_open"] == ["—", "66.67 %"] and counts["undelivered"] == ["1", ""]
    assert table(response, "excluded-table") == [["No consent (opted out or unsubscribed)", "2"], ["No address", "1"],
                                                 ["Marketing pressure cap reached", "1"]]
    deliveries = table(response, "deliveries-table")
    assert [row[0] for row in deliveries] == [f"#{reported.sms.pk} · sms", f"#{reported.email.pk} · {NODE}"]
    assert deliveries[1][5:] == ["10", "3", "6", "1", "3 (50.0 %)", "2 (33.3 %)", "1"]
    assert delivery_url(reported, reported.email) in response.text
    data = chart_data(response)
    assert data["counts"] == {"labels": ["Targeted", "Excluded", "Sent", "Failed", "Delivered", "Opened", "Clicked",
                                         "Unsubscribed"], "values": [14, 4, 9, 1, 2, 3, 2, 1]}
    assert data["over_time"]["bucket"] == "hour" and len(data["over_time"]["labels"]) == 28
    sent = next(s for s in data["over_time"]["series"] if s["key"] == "sent")
    assert sum(sent["values"]) == 9
    assert NAME in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")  # escaped, shown
    assert "<script" not in table(response, "deliveries-table")[0][0]


def test_over_time_switches_between_hours_and_days(portal, reported):
    client = portal("acme", "marketer")
    days = client.get(campaign_url(reported, bucket="day"))
    assert [row[0] for row in table(days, "time-table")] == ["Tue Mar 10", "Wed Mar 11"]  # Paris days
    # sent, delivered, not delivered, opened, clicked (each link), unsubscribed
    assert table(days, "time-table")[0][1:] == ["6", "0", "0", "2", "3", "0"]
    assert re.search(r'aria-current="true" data-bucket="day"', days.text)
    assert chart_data(days)["over_time"]["labels"] == ["Tue Mar 10", "Wed Mar 11"]
    hours = client.get(campaign_url(reported, bucket="hour"))
    assert len(table(hours, "time-table")) == 28 and table(hours, "time-table")[0][0] == "Mar 10, 08:00"
    bad = client.get(campaign_url(reported, bucket="week"))
    assert bad.status_code == 400 and "Bucket: choose hour or day." in bad.text


def test_one_run_and_navigation_between_runs(portal, reported):
    client = portal("acme", "viewer")
    response = client.get(campaign_url(reported, run=reported.runs[1].pk))
    assert response.status_code == 200
    assert [row[0] for row in table(response, "deliveries-table")] == [f"#{reported.sms.pk} · sms"]
    assert chart_data(response)["counts"]["values"] == [4, 1, 3, 0, 2, 0, 0, 0]
    for run in reported.runs:  # the run picker offers each run that has deliveries
        assert f'<option value="{run.pk}"' in response.text
    assert "table=deliveries" in response.text and f"run={reported.runs[1].pk}&amp;table=over_time" in response.text


def test_delivery_report_and_navigation_between_deliveries(portal, reported):
    client = portal("acme", "approver")
    response = client.get(delivery_url(reported, reported.email))
    assert response.status_code == 200
    counts = counts_of(response)
    assert counts["targeted"][0] == "10" and counts["opened"] == ["3", "50.00 %"]
    assert counts["delivered"] == ["0", "—"]                           # e-mail has no provider reports
    assert table(response, "excluded-table") == [["No consent (opted out or unsubscribed)", "2"], ["No address", "1"]]
    assert f'href="{delivery_url(reported, reported.sms)}" rel="next"' in response.text
    assert 'rel="prev"' not in response.text
    assert f"?run={reported.runs[0].pk}" in response.text              # all deliveries of its run
    newer = client.get(delivery_url(reported, reported.sms))
    assert f'href="{delivery_url(reported, reported.email)}" rel="prev"' in newer.text
    assert chart_data(newer)["counts"]["values"] == [4, 1, 3, 0, 2, 0, 0, 0]


def test_csv_downloads_from_the_pages_are_formula_safe(portal, reported):
    client = portal("acme", "viewer")
    response = client.get(reverse("portal:campaign-report-export", kwargs={"campaign_id": reported.campaign.pk}))
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="hyperlinkhttpseviltestspring-sale-campaign-{reported.campaign.pk}.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["campaign"] for r in rows] == ["'" + NAME] * 2
    assert {r["node"] for r in rows} == {"sms", "'" + NODE}
    over_time = client.get(delivery_url(reported, reported.email, "-export") + "?table=over_time&bucket=day")
    lines = b"".join(over_time.streaming_content).decode().splitlines()
    assert lines == ["bucket_start,sent,delivered,undelivered,opened,clicked,unsubscribed,bounced",
                     "2026-03-10 00:00,6,0,0,2,3,0,0", "2026-03-11 00:00,0,0,0,1,0,1,0"]
    assert over_time["Content-Disposition"].endswith(f'-delivery-{reported.email.pk}-by-day.csv"')
    run = client.get(campaign_url(reported).replace("/report/", "/report/export/") + f"?run={reported.runs[1].pk}")
    assert run["Content-Disposition"].endswith(f'-campaign-{reported.campaign.pk}-run-{reported.runs[1].pk}.csv"')
    bad = client.get(delivery_url(reported, reported.email, "-export") + "?table=pivot")
    assert bad.status_code == 400 and "table: deliveries or over_time" in bad.text


def test_campaign_page_links_to_the_report(portal, reported):
    response = portal("acme", "viewer").get(reverse("portal:campaign-detail", kwargs={"campaign_id": reported.campaign.pk}))
    assert f'href="{campaign_url(reported)}" data-testid="report-link"' in response.text
    assert f'href="{campaign_url(reported)}?run={reported.runs[1].pk}" data-testid="run-report-link"' in response.text


def test_every_role_reads_the_reports(portal, reported):
    export = reverse("portal:campaign-report-export", kwargs={"campaign_id": reported.campaign.pk})
    for role in ROLES:
        client = portal("acme", role)
        for url in (campaign_url(reported), campaign_url(reported, run=reported.runs[0].pk),
                    delivery_url(reported, reported.sms), export, delivery_url(reported, reported.sms, "-export")):
            assert client.get(url).status_code == 200, (role, url)


def test_another_tenant_gets_404(portal, reported, globex, people):
    export = reverse("portal:campaign-report-export", kwargs={"campaign_id": reported.campaign.pk})
    urls = [campaign_url(reported), campaign_url(reported, run=reported.runs[0].pk), export,
            delivery_url(reported, reported.email), delivery_url(reported, reported.email, "-export")]
    for role in ROLES:
        client = portal("globex", role)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 404, (role, url)
            assert b"Spring sale" not in response.content


def test_a_run_or_delivery_of_another_campaign_is_404(portal, reported, acme, people):
    other = reported_campaign(acme, people["acme"], name="Autumn sale")
    client = portal("acme", "admin")
    assert client.get(campaign_url(reported, run=other.runs[0].pk)).status_code == 404
    assert client.get(campaign_url(reported, run="abc")).status_code == 404
    wrong = reverse("portal:delivery-report", kwargs={"campaign_id": reported.campaign.pk,
                                                      "delivery_id": other.email.pk})
    assert client.get(wrong).status_code == 404
    assert client.post(campaign_url(reported)).status_code == 405


def test_report_of_a_delivery_sent_for_real(portal, acme, people, eager, smtp_ready):  # noqa: F811
    for i in range(3):
        profile_upsert(tenant=acme, by=None, values={"id": f"p{i}", "email": f"p{i}@example.test"})
    profile_upsert(tenant=acme, by=None, values={"id": "out", "email": "out@example.test", "email_opt_in": False})
    profile_upsert(tenant=acme, by=None, values={"id": "noaddr"})
    run = run_campaign(acme, people, eager, email_graph())
    assert run.status == "completed", run.error
    assert len(smtp_ready.messages) == 3
    response = portal("acme", "viewer").get(reverse("portal:campaign-report", kwargs={"campaign_id": run.campaign_id}))
    counts = counts_of(response)
    assert [counts[k][0] for k in ("targeted", "excluded", "sent", "failed")] == ["5", "2", "3", "0"]
    assert table(response, "excluded-table") == [["No address", "1"], ["No consent (opted out or unsubscribed)", "1"]]
    [row] = table(response, "deliveries-table")
    assert row[2:4] == ["E-mail", "Done"] and row[5:8] == ["5", "2", "3"]
    assert sum(chart_data(response)["over_time"]["series"][0]["values"]) == 3
