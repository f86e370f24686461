"""The channels API: the tenant's channel settings and a test send for each channel."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.channels import selectors, services
from apps.channels.api import serializers as s
from apps.tenants.api.base import TenantAPIMixin

MANAGE = "channels.manage"


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
