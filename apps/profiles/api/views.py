"""Friendly routes over the built-in `profile` schema: the same records and rules as
/schemas/profile/records/, plus upsert on POST and the consent history of each profile."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.core.api.pagination import PagePagination
from apps.profiles import selectors, services
from apps.profiles.api import serializers as ps
from apps.schemas.api import serializers as s
from apps.schemas.api.views import RECORD_LIST_PARAMETERS, RecordViewSetBase
from apps.schemas.models import DataSchema
from apps.tenants.api.base import TenantAPIMixin


class ProfileViewSet(RecordViewSetBase):
    """Profiles. POST creates the profile its `id` names, or merges into it (201 when created,
    200 when updated): the shape marketing sources send."""

    def lookup_object(self, key: str | None = None) -> Any:
        return self._load(key)

    def get_data_schema(self) -> DataSchema:
        return selectors.profile_schema(tenant=self.tenant)

    @extend_schema(parameters=RECORD_LIST_PARAMETERS, responses=s.RecordSerializer(many=True))
    def list(self, request: Request) -> Response:
        return self._list(request)

    @extend_schema(request=dict, responses={200: s.RecordSerializer, 201: s.RecordSerializer})
    def create(self, request: Request) -> Response:
        record, created = services.profile_upsert(tenant=self.tenant, values=request.data, by=request.user)
        return Response(s.RecordSerializer(record).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses=s.RecordSerializer)
    def retrieve(self, request: Request, key: str) -> Response:
        return Response(s.RecordSerializer(self.object).data)

    @extend_schema(request=dict, responses=s.RecordSerializer)
    def update(self, request: Request, key: str) -> Response:
        record = services.profile_update(tenant=self.tenant, profile=self.object, values=request.data, partial=False,
                                         by=request.user)
        return Response(s.RecordSerializer(record).data)

    @extend_schema(request=dict, responses=s.RecordSerializer)
    def partial_update(self, request: Request, key: str) -> Response:
        record = services.profile_update(tenant=self.tenant, profile=self.object, values=request.data, partial=True,
                                         by=request.user)
        return Response(s.RecordSerializer(record).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, key: str) -> Response:
        services.profile_delete(tenant=self.tenant, profile=self.object, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProfileConsentViewSet(TenantAPIMixin, ViewSet):
    """A profile's consent history; POST opts it in or out of a channel."""

    capabilities = {"list": "data.read", "create": "data.write"}

    def lookup_object(self, key: str) -> Any:
        return selectors.profile_get(tenant=self.tenant, key=key)

    @extend_schema(responses=ps.ConsentEventSerializer(many=True))
    def list(self, request: Request, key: str) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.consent_history(tenant=self.tenant, key=self.object.key),
                                           request, view=self)
        return paginator.get_paginated_response(ps.ConsentEventSerializer(page, many=True).data)

    @extend_schema(request=ps.ConsentSetSerializer, responses={201: ps.ConsentEventSerializer})
    def create(self, request: Request, key: str) -> Response:
        data = ps.ConsentSetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.profile_consent_set(tenant=self.tenant, profile=self.object, by=request.user,
                                             **data.validated_data)
        return Response(ps.ConsentEventSerializer(event).data, status=status.HTTP_201_CREATED)
