"""The channels API: the tenant's channel settings and a test send for each channel; content
validation, preview and proofs; deliveries and their messages; asynchronous bounces."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from apps.channels import selectors, services
from apps.channels.api import serializers as s
from apps.channels.models import Delivery
from apps.core.api.pagination import PagePagination
from apps.core.errors import Conflict
from apps.tenants.api.base import TenantAPIMixin

MANAGE = "channels.manage"
READ = "campaigns.read"


class ChannelSettingsView(TenantAPIMixin, APIView):
    capabilities = {"get": MANAGE, "patch": MANAGE}

    @extend_schema(responses=s.ChannelSettingsSerializer)
    def get(self, request: Request) -> Response:
        return Response(s.ChannelSettingsSerializer(selectors.channel_settings_get(tenant=self.tenant)).data)

    @extend_schema(request=s.ChannelSettingsUpdateSerializer, responses=s.ChannelSettingsSerializer)
    def patch(self, request: Request) -> Response:
        data = s.ChannelSettingsUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config = services.channel_settings_update(tenant=self.tenant, by=request.user, **data.validated_data)
        return Response(s.ChannelSettingsSerializer(config).data)


class TestEmailView(TenantAPIMixin, APIView):
    capabilities = {"post": MANAGE}

    @extend_schema(request=s.TestEmailSerializer, responses=s.TestSendResultSerializer)
    def post(self, request: Request) -> Response:
        data = s.TestEmailSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.channel_test_email(tenant=self.tenant, by=request.user, **data.validated_data))


class TestSmsView(TenantAPIMixin, APIView):
    capabilities = {"post": MANAGE}

    @extend_schema(request=s.TestSmsSerializer, responses=s.TestSendResultSerializer)
    def post(self, request: Request) -> Response:
        data = s.TestSmsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.channel_test_webhook(tenant=self.tenant, by=request.user, channel="sms",
                                                      **data.validated_data))


class TestPushView(TenantAPIMixin, APIView):
    capabilities = {"post": MANAGE}

    @extend_schema(request=s.TestPushSerializer, responses=s.TestSendResultSerializer)
    def post(self, request: Request) -> Response:
        data = s.TestPushSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.channel_test_webhook(tenant=self.tenant, by=request.user, channel="push",
                                                      **data.validated_data))


class ContentValidateView(TenantAPIMixin, APIView):
    """Check a message's content: its shape, Liquid syntax (with lines), filters, and every name
    it uses against the schema's fields and the declared variables."""

    capabilities = {"post": "campaigns.read"}

    @extend_schema(request=s.ContentValidateSerializer, responses=s.ContentValidationSerializer)
    def post(self, request: Request) -> Response:
        data = s.ContentValidateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        problems = selectors.content_problems(tenant=self.tenant, **data.validated_data)
        return Response({"is_valid": not problems, "problems": problems})


class ContentPreviewView(TenantAPIMixin, APIView):
    """The message rendered for one chosen record."""

    capabilities = {"post": "campaigns.read"}

    @extend_schema(request=s.ContentPreviewSerializer, responses=dict)
    def post(self, request: Request) -> Response:
        data = s.ContentPreviewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.content_render_for(tenant=self.tenant, **data.validated_data))


class ProofView(TenantAPIMixin, APIView):
    """Send the message rendered for a chosen record to test addresses, marked as a proof."""

    capabilities = {"post": "campaigns.build"}

    @extend_schema(request=s.ProofSerializer, responses=dict)
    def post(self, request: Request) -> Response:
        data = s.ProofSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.content_proof_send(tenant=self.tenant, by=request.user, **data.validated_data))


class DeliveryViewSet(TenantAPIMixin, ViewSet):
    """Deliveries of channel activities: their counts by status and exclusion reason, their
    messages, and the file of a file export."""

    capabilities = {"list": READ, "retrieve": READ, "messages": READ, "file": READ}

    def lookup_object(self, pk: str) -> Delivery:
        return selectors.delivery_get(tenant=self.tenant, id=pk)

    @extend_schema(parameters=[OpenApiParameter("campaign", int), OpenApiParameter("run", int),
                               OpenApiParameter("channel", str), OpenApiParameter("status", str)],
                   responses=s.DeliverySerializer(many=True))
    def list(self, request: Request) -> Response:
        qs = selectors.delivery_list(tenant=self.tenant, filters={
            name: request.query_params.get(name) for name in ("campaign", "run", "channel", "status")})
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.DeliverySerializer(page, many=True).data)

    @extend_schema(responses=s.DeliverySerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        delivery = self.object
        body = s.DeliverySerializer(delivery).data
        body["counts"] = selectors.delivery_counts(tenant=self.tenant, delivery=delivery)
        return Response(body)

    @extend_schema(parameters=[OpenApiParameter("status", str)], responses=s.MessageSerializer(many=True))
    def messages(self, request: Request, pk: str) -> Response:
        qs = selectors.message_list(tenant=self.tenant, delivery=self.object, status=request.query_params.get("status"))
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.MessageSerializer(page, many=True).data)

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="The exported file.")})
    def file(self, request: Request, pk: str) -> Any:
        from apps.channels.sending import export_path

        delivery = self.object
        path = export_path(delivery)
        if delivery.channel != "file" or delivery.status != "done" or not path.exists():
            raise Conflict("This delivery has no file (not a file export, not written yet, or purged).",
                           code="no_file")
        response = FileResponse(path.open("rb"), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="delivery-{delivery.pk}.csv"'
        return response


class ReportView(TenantAPIMixin, APIView):
    """What happened to the messages of the tenant's deliveries, of one campaign, run or
    delivery: counts by outcome and reason, events (delivered, opened, clicked, unsubscribed),
    and the same over time per hour or day."""

    capabilities = {"get": READ}

    @extend_schema(parameters=[OpenApiParameter("campaign", int), OpenApiParameter("run", int),
                               OpenApiParameter("delivery", int), OpenApiParameter("bucket", str, enum=["hour", "day"])],
                   responses=dict)
    def get(self, request: Request) -> Response:
        query = request.query_params
        return Response(selectors.delivery_report(
            tenant=self.tenant, campaign=query.get("campaign"), run=query.get("run"), delivery=query.get("delivery"),
            bucket=query.get("bucket") or "hour"))


class BounceView(TenantAPIMixin, APIView):
    """Asynchronous bounces (docs/channels.md, "Tracking and consent"): a raw delivery status
    notification (`Content-Type: message/rfc822`, as an MTA pipe posts it) or a provider's JSON
    bounce. 200 when every report matched one of the tenant's e-mails, 202 when some matched none."""

    capabilities = {"post": MANAGE}

    @extend_schema(request={"message/rfc822": bytes, "application/json": dict},
                   responses={200: OpenApiResponse(description="Every report matched: `reports` with outcomes."),
                              202: OpenApiResponse(description="Some report matched no message (`unmatched`)."),
                              400: OpenApiResponse(description="Not a DSN or a valid JSON bounce.")})
    def post(self, request: Request) -> Response:
        from apps.channels import bounces

        outcomes = bounces.bounce_record(tenant=self.tenant, content_type=request.content_type or "",
                                         body=request.body, by=request.user)
        unmatched = sum(1 for o in outcomes if o["outcome"] == "unmatched")
        return Response({"reports": outcomes, "unmatched": unmatched}, status=202 if unmatched else 200)
