"""Report pages of the portal: a campaign's report (all its deliveries, or one run's) and one
delivery's report: the counts and rates as tables (the page works without JavaScript), a bar
chart of the counts and a line chart over time by hour or day (Chart.js, static/vendor/chartjs,
fed by a json_script block), the deliveries listed, and the CSV downloads. Views are thin: the
counting is `apps.channels.selectors`, the shaping `apps.channels.reports`."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from apps.campaigns import selectors as campaign_selectors
from apps.campaigns.models import Campaign, Run
from apps.channels import reports
from apps.channels import selectors as channel_selectors
from apps.channels.api.reports import report_csv_response
from apps.channels.models import Delivery, ExclusionReason
from apps.core.errors import ApplicationError
from apps.portal.views import portal_page

READ = "campaigns.read"
BUCKETS = {"hour": "By hour", "day": "By day"}

# The counts in the order a marketer reads them (the bar chart and the summary table).
COUNTS = (("targeted", "Targeted"), ("excluded", "Excluded"), ("sent", "Sent"), ("failed", "Failed"),
          ("delivered", "Delivered"), ("opened", "Opened"), ("clicked", "Clicked"), ("unsubscribed", "Unsubscribed"))
# count -> the rate shown next to it
COUNT_RATES = {"excluded": "exclusion_rate", "failed": "failure_rate", "delivered": "delivery_rate",
               "opened": "open_rate", "clicked": "click_rate", "unsubscribed": "unsubscribe_rate"}
SERIES_LABELS = {"sent": "Sent", "delivered": "Delivered", "undelivered": "Not delivered", "opened": "Opened",
                 "clicked": "Clicked", "unsubscribed": "Unsubscribed", "bounced": "Bounced"}


def _run_of(request: HttpRequest, campaign: Campaign, run_id: Any) -> Run:
    run = campaign_selectors.run_get(tenant=request.tenant, id=run_id)
    if run.campaign_id != campaign.pk:
        raise Http404("No such run.")
    return run


def _delivery_of(request: HttpRequest, campaign: Campaign, delivery_id: int) -> Delivery:
    delivery = channel_selectors.delivery_get(tenant=request.tenant, id=delivery_id)
    if delivery.campaign_id != campaign.pk:
        raise Http404("No such delivery.")
    return delivery


def _report_page(request: HttpRequest, campaign: Campaign, *, run: Run | None = None,
                 delivery: Delivery | None = None, error: str = "") -> HttpResponse:
    tenant = request.tenant
    bucket = request.GET.get("bucket") or "hour"
    status = 400 if error else 200
    if bucket not in BUCKETS:
        error, status, bucket = "Bucket: choose hour or day.", 400, "hour"
    # Every delivery of the campaign (newest first): the list, the navigation between them, and
    # (added up) the totals of the scope shown, without counting the messages twice.
    rows = channel_selectors.delivery_report_rows(tenant=tenant, campaign=campaign.pk)
    for row in rows:
        row["rates"] = reports.report_rates(row)
    shown = [r for r in rows if (run is None or r["delivery"].run_id == run.pk)]
    report = reports.report_totals([r for r in shown if delivery is None or r["delivery"].pk == delivery.pk])
    rates = reports.report_rates(report)
    over_time = channel_selectors.delivery_report_over_time(
        tenant=tenant, campaign=campaign.pk, run=run.pk if run else None, delivery=delivery.pk if delivery else None,
        bucket=bucket)
    series = reports.report_series(over_time, bucket=bucket, time_zone=tenant.time_zone)
    runs = list({r["delivery"].run_id: r["delivery"].run for r in rows}.values())
    if run is not None and run not in runs:
        runs.insert(0, run)
    label = "%b %-d, %H:00" if bucket == "hour" else "%a %b %-d"
    counts = [{"key": key, "label": name, "value": report[key],
               "rate": rates.get(COUNT_RATES.get(key, "")), "rate_label": _rate_label(COUNT_RATES.get(key))}
              for key, name in COUNTS]
    chart = {
        "counts": {"labels": [c["label"] for c in counts], "values": [c["value"] for c in counts]},
        "over_time": {"bucket": bucket, "labels": [b["at"].strftime(label) for b in series],
                      "series": [{"key": key, "label": SERIES_LABELS[key], "values": [b[key] for b in series]}
                                 for key in SERIES_LABELS if any(b[key] for b in series) or key == "sent"]},
    }
    here = (reverse("portal:delivery-report", kwargs={"campaign_id": campaign.pk, "delivery_id": delivery.pk})
            if delivery else reverse("portal:campaign-report", kwargs={"campaign_id": campaign.pk}))
    export = (reverse("portal:delivery-report-export", kwargs={"campaign_id": campaign.pk, "delivery_id": delivery.pk})
              if delivery else reverse("portal:campaign-report-export", kwargs={"campaign_id": campaign.pk}))
    run_query = f"run={run.pk}&" if run else ""
    position = next((i for i, r in enumerate(rows) if delivery and r["delivery"].pk == delivery.pk), None)
    context = {
        "campaign": campaign, "run": run, "delivery": delivery, "runs": runs, "bucket": bucket,
        "buckets": [{"value": v, "label": name, "url": f"{here}?{run_query}bucket={v}"} for v, name in BUCKETS.items()],
        "report": report, "counts": counts, "rates": rates, "error": error,
        "excluded_by_reason": [{"reason": reason, "label": _reason_label(reason), "count": count}
                               for reason, count in sorted(report["excluded_by_reason"].items(), key=lambda i: (-i[1], i[0]))],
        "series": [{"at": b["at"], "cells": [b[s["key"]] for s in chart["over_time"]["series"]]} for b in series],
        "series_labels": [s["label"] for s in chart["over_time"]["series"]],
        "rows": shown, "all_deliveries": rows, "chart": chart,
        # rows are newest first: "previous" is the older delivery
        "previous": rows[position + 1]["delivery"] if position is not None and position + 1 < len(rows) else None,
        "next": rows[position - 1]["delivery"] if position else None,
        "export_deliveries": f"{export}?{run_query}table=deliveries",
        "export_over_time": f"{export}?{run_query}table=over_time&bucket={bucket}",
        "time_zone": tenant.time_zone, "now": timezone.now(),
    }
    return render(request, "portal/reports/report.html", context, status=status)


def _rate_label(rate: str | None) -> str:
    return reports.RATES[rate][2] if rate else ""


def _reason_label(reason: str) -> str:
    try:
        return ExclusionReason(reason).label
    except ValueError:
        return reason or "Unknown"


def _export(request: HttpRequest, campaign: Campaign, *, run: Run | None = None,
            delivery: Delivery | None = None) -> HttpResponse:
    table = request.GET.get("table") or "deliveries"
    name = slugify(campaign.name)[:60].strip("-") or "report"
    try:
        return report_csv_response(tenant=request.tenant, campaign=campaign.pk, run=run.pk if run else None,
                                   delivery=delivery.pk if delivery else None, table=table,
                                   bucket=request.GET.get("bucket") or "day", filename=name)
    except ApplicationError as exc:
        problems = "; ".join(f"{field}: {' '.join(map(str, reasons))}" for field, reasons in exc.fields.items())
        return _report_page(request, campaign, run=run, delivery=delivery,
                            error=f"{exc.message} {problems}".strip() if problems else exc.message)


# --- Pages ---------------------------------------------------------------------------------------


def _scope(request: HttpRequest, campaign_id: int,
           delivery_id: int | None = None) -> tuple[Campaign, Run | None, Delivery | None]:
    """The campaign of the URL, and the run (`?run=`) or delivery of that campaign a page shows."""
    campaign = campaign_selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    if delivery_id is not None:
        return campaign, None, _delivery_of(request, campaign, delivery_id)
    run = _run_of(request, campaign, request.GET["run"]) if request.GET.get("run") else None
    return campaign, run, None


@portal_page(capability=READ)
@require_GET
def campaign_report(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign, run, _ = _scope(request, campaign_id)
    return _report_page(request, campaign, run=run)


@portal_page(capability=READ)
@require_GET
def campaign_report_export(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign, run, _ = _scope(request, campaign_id)
    return _export(request, campaign, run=run)


@portal_page(capability=READ)
@require_GET
def delivery_report(request: HttpRequest, campaign_id: int, delivery_id: int) -> HttpResponse:
    campaign, _, delivery = _scope(request, campaign_id, delivery_id)
    return _report_page(request, campaign, delivery=delivery)


@portal_page(capability=READ)
@require_GET
def delivery_report_export(request: HttpRequest, campaign_id: int, delivery_id: int) -> HttpResponse:
    campaign, _, delivery = _scope(request, campaign_id, delivery_id)
    return _export(request, campaign, delivery=delivery)
