"""The report as CSV (`GET /api/v1/channels/report.csv`): the same filters as the JSON report,
and `table=deliveries` (one row per delivery: counts, exclusions by reason, rates) or
`table=over_time` (one row per hour or day in the tenant's time zone). Cells a spreadsheet would
run as formulas start with a single quote. Errors answer in JSON, as everywhere in the API."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.channels import reports, selectors
from apps.core.errors import ApplicationError
from apps.tenants.api.base import TenantAPIMixin
from apps.tenants.models import Tenant

TABLES = ("deliveries", "over_time")


def report_csv_response(*, tenant: Tenant, campaign: Any = None, run: Any = None, delivery: Any = None,
                        table: str = "deliveries", bucket: str = "day", filename: str = "report") -> Any:
    """The CSV download of a report (shared with the portal's download button); a bad filter
    raises ApplicationError naming the field."""
    if table not in TABLES:
        raise ApplicationError("Invalid table.", fields={"table": ["deliveries or over_time"]})
    if bucket not in ("hour", "day"):
        raise ApplicationError("Invalid bucket.", fields={"bucket": ["hour or day"]})
    scope = {"tenant": tenant, "campaign": campaign, "run": run, "delivery": delivery}
    if table == "deliveries":
        lines = reports.deliveries_csv(selectors.delivery_report_rows(**scope), time_zone=tenant.time_zone)
    else:
        over_time = selectors.delivery_report_over_time(**scope, bucket=bucket)
        lines = reports.over_time_csv(reports.report_series(over_time, bucket=bucket, time_zone=tenant.time_zone))
    for field in ("campaign", "run", "delivery"):
        if scope[field] not in (None, ""):
            filename += f"-{field}-{int(scope[field])}"  # an id: the selector refused anything else
    if table == "over_time":
        filename += f"-by-{bucket}"
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


class ReportCsvView(TenantAPIMixin, APIView):
    """The report as a spreadsheet: one row per delivery, or one row per hour or day."""

    capabilities = {"get": "campaigns.read"}

    @extend_schema(parameters=[OpenApiParameter("campaign", int), OpenApiParameter("run", int),
                               OpenApiParameter("delivery", int),
                               OpenApiParameter("table", str, enum=list(TABLES), default="deliveries"),
                               OpenApiParameter("bucket", str, enum=["hour", "day"], default="day")],
                   responses={(200, "text/csv"): OpenApiResponse(description="The report, as CSV.")})
    def get(self, request: Request) -> Any:
        query = request.query_params
        return report_csv_response(tenant=self.tenant, campaign=query.get("campaign"), run=query.get("run"),
                                   delivery=query.get("delivery"), table=query.get("table") or "deliveries",
                                   bucket=query.get("bucket") or "day")
