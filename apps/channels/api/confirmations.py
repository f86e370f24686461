"""Send confirmation of one-off campaigns (docs/channels.md): a delivery prepared by a live run
waits as `awaiting_confirmation` until someone who may run campaigns confirms it (the senders
start) or cancels it (nothing is sent)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.channels import selectors, services
from apps.channels.api import serializers as s
from apps.channels.models import Delivery
from apps.tenants.api.base import TenantAPIMixin

RUN = services.CONFIRM_CAPABILITY


class _DecisionView(TenantAPIMixin, APIView):
    capabilities = {"post": RUN}

    def lookup_object(self, pk: str) -> Delivery:
        return selectors.delivery_get(tenant=self.tenant, id=pk)

    def answer(self, delivery: Delivery) -> Response:
        body = s.DeliverySerializer(delivery).data
        body["counts"] = selectors.delivery_counts(tenant=self.tenant, delivery=delivery)
        return Response(body)


class DeliveryConfirmView(_DecisionView):
    """Confirm a delivery waiting for confirmation: its messages are sent."""

    @extend_schema(request=None, responses={200: s.DeliverySerializer,
                                            409: OpenApiResponse(description="not waiting for confirmation")})
    def post(self, request: Request, pk: int) -> Response:
        return self.answer(services.delivery_confirm(tenant=self.tenant, delivery=self.object, by=request.user))


class DeliveryCancelView(_DecisionView):
    """Cancel a delivery waiting for confirmation: nothing is sent, its pending messages are cancelled."""

    @extend_schema(request=None, responses={200: s.DeliverySerializer,
                                            409: OpenApiResponse(description="not waiting for confirmation")})
    def post(self, request: Request, pk: int) -> Response:
        return self.answer(services.delivery_cancel(tenant=self.tenant, delivery=self.object, by=request.user))
