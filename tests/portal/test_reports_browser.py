"""A report page in a real Chromium (Playwright, Debian's /usr/bin/chromium): the campaign page
links to it, Chart.js draws both charts from the page's data (non-blank canvases), the hour/day
switch redraws the line chart, and the CSV button downloads a formula-safe file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.channels.reported import NAME, reported_campaign
from tests.portal.browser import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser

# The points of a canvas that are not transparent: Chart.js drew something.
PAINTED = """id => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
  return painted;
}"""


def test_report_draws_its_charts_and_downloads_the_csv(page, acme, people, password):
    reported = reported_campaign(acme, people["acme"])
    sign_in(page, people["acme"]["viewer"].email, password)
    page.goto(f"/campaigns/{reported.campaign.pk}/")
    page.get_by_test_id("report-link").click()
    page.wait_for_url(f"**/campaigns/{reported.campaign.pk}/report/")
    expect(page.locator('[data-count="sent"] .stat__value')).to_have_text("9")

    page.wait_for_function("() => window.Chart && Chart.getChart('counts-chart') && Chart.getChart('time-chart')")
    bars = page.evaluate("() => Chart.getChart('counts-chart').data.datasets[0].data")
    assert bars == [14, 4, 9, 1, 2, 3, 2, 1]
    assert page.evaluate("() => Chart.getChart('time-chart').data.labels.length") == 28
    assert page.evaluate(PAINTED, "counts-chart") > 1000
    assert page.evaluate(PAINTED, "time-chart") > 1000
    page.screenshot(path=str(ARTIFACTS / "report-campaign.png"), full_page=True)

    page.get_by_role("link", name="By day").click()
    page.wait_for_url("**bucket=day")
    page.wait_for_function("() => window.Chart && Chart.getChart('time-chart')")
    assert page.evaluate("() => Chart.getChart('time-chart').data.labels") == ["Tue Mar 10", "Wed Mar 11"]

    with page.expect_download() as info:
        page.get_by_test_id("export-deliveries").click()
    download = info.value
    assert download.suggested_filename.endswith(f"-campaign-{reported.campaign.pk}.csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [r["delivery_id"] for r in rows] == [str(reported.sms.pk), str(reported.email.pk)]
    assert {r["campaign"] for r in rows} == {"'" + NAME}

    page.get_by_role("link", name=f"#{reported.email.pk} · -mail").click()
    page.wait_for_url(f"**/deliveries/{reported.email.pk}/")
    page.wait_for_function("() => window.Chart && Chart.getChart('counts-chart')")
    assert page.evaluate("() => Chart.getChart('counts-chart').data.datasets[0].data") == [10, 3, 6, 1, 0, 3, 2, 1]
    page.screenshot(path=str(ARTIFACTS / "report-delivery.png"), full_page=True)
