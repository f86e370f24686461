"""The audiences API: saved audiences of any schema, their preview (count and sample), the
recount of a dynamic audience, and a streamed CSV export of the members."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils.text import slugify
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.audiences import selectors, services
from apps.audiences.api import serializers as s
from apps.audiences.export import csv_lines
from apps.audiences.models import Audience
from apps.core.api.pagination import PagePagination
from apps.core.errors import ApplicationError
from apps.schemas import selectors as schema_selectors
from apps.tenants.api.base import TenantAPIMixin

READ, WRITE = "data.read", "audiences.write"


class AudienceViewSet(TenantAPIMixin, ViewSet):
    capabilities = {"list": READ, "retrieve": READ, "preview": READ, "export": READ, "create": WRITE,
                    "partial_update": WRITE, "destroy": WRITE, "refresh": WRITE}

    def lookup_object(self, pk: str) -> Audience:
        return selectors.audience_get(tenant=self.tenant, id=pk)

    @extend_schema(parameters=[OpenApiParameter("kind", str), OpenApiParameter("schema", str),
                               OpenApiParameter("search", str)],
                   responses=s.AudienceSerializer(many=True))
    def list(self, request: Request) -> Response:
        qs = selectors.audience_list(tenant=self.tenant, filters={
            "kind": request.query_params.get("kind"), "schema": request.query_params.get("schema"),
            "search": request.query_params.get("search")})
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.AudienceSerializer(page, many=True).data)

    @extend_schema(responses=s.AudienceSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.AudienceSerializer(self.object).data)

    @extend_schema(request=s.AudienceCreateSerializer, responses={201: s.AudienceSerializer})
    def create(self, request: Request) -> Response:
        data = s.AudienceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        audience, report = services.audience_create(tenant=self.tenant, by=request.user, **data.validated_data)
        return Response({**s.AudienceSerializer(audience).data, **report}, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AudienceUpdateSerializer, responses=s.AudienceSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = s.AudienceUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        audience = services.audience_update(tenant=self.tenant, audience=self.object, by=request.user,
                                            **data.validated_data)
        return Response(s.AudienceSerializer(audience).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.audience_delete(tenant=self.tenant, audience=self.object, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.AudienceSerializer)
    def refresh(self, request: Request, pk: str) -> Response:
        audience = services.audience_refresh(tenant=self.tenant, audience=self.object, by=request.user)
        return Response(s.AudienceSerializer(audience).data)

    @extend_schema(parameters=[OpenApiParameter("sample_size", int)], responses=s.AudiencePreviewSerializer)
    def preview(self, request: Request, pk: str) -> Response:
        try:
            size = int(request.query_params.get("sample_size", 20))
        except ValueError:
            raise ApplicationError("Invalid sample size.", fields={"sample_size": ["Give a number."]}) from None
        return Response(selectors.audience_preview(tenant=self.tenant, audience=self.object, sample_size=size))

    @extend_schema(parameters=[OpenApiParameter("fields", str, description="Comma-separated fields to export "
                                                                           "after the key (default: all).")],
                   responses={(200, "text/csv"): OpenApiResponse(description="The members, as CSV.")})
    def export(self, request: Request, pk: str) -> Any:
        audience: Audience = self.object
        columns = self._columns(audience, request.query_params.get("fields"))
        rows = selectors.audience_member_rows(tenant=self.tenant, audience=audience)
        response = StreamingHttpResponse(csv_lines(columns, rows), content_type="text/csv; charset=utf-8")
        filename = slugify(audience.name) or f"audience-{audience.pk}"
        response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response

    def _columns(self, audience: Audience, requested: str | None) -> list[str]:
        available = [f.name for f in schema_selectors.field_list(tenant=self.tenant, schema=audience.schema)]
        if not requested:
            return available
        columns = [c.strip() for c in requested.split(",") if c.strip()]
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise ApplicationError("Unknown fields.", fields={"fields": [f"{audience.schema.name} has no field "
                                                                         f"{c!r}." for c in unknown]})
        return columns
