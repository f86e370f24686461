"""The schemas API: schemas, their fields and links (tenant admins change them, every member
reads them), records of any schema, and filter queries."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.core.api.pagination import PagePagination
from apps.schemas import selectors, services
from apps.schemas.api import serializers as s
from apps.schemas.models import DataSchema
from apps.tenants.api.base import TenantAPIMixin

READ, MANAGE, WRITE = "data.read", "schemas.manage", "data.write"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class SchemaViewSet(TenantAPIMixin, ViewSet):
    """A tenant's schemas: every member reads them; tenant admins create, change and delete them."""

    capabilities = {"list": READ, "retrieve": READ, "create": MANAGE, "partial_update": MANAGE, "update": MANAGE,
                    "destroy": MANAGE}

    def lookup_object(self, schema_name: str) -> DataSchema:
        return selectors.schema_get(tenant=self.tenant, name=schema_name)

    @extend_schema(responses=s.SchemaSerializer(many=True))
    def list(self, request: Request) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.schema_list(tenant=self.tenant), request, view=self)
        return paginator.get_paginated_response(s.SchemaSerializer(page, many=True).data)

    @extend_schema(responses=s.SchemaSerializer)
    def retrieve(self, request: Request, schema_name: str) -> Response:
        return Response(s.SchemaSerializer(self.object).data)

    @extend_schema(request=s.SchemaCreateSerializer, responses={201: s.SchemaSerializer})
    def create(self, request: Request) -> Response:
        data = s.SchemaCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        schema = services.schema_create(tenant=self.tenant, by=request.user, **data.validated_data)
        schema = selectors.schema_get(tenant=self.tenant, name=schema.name)
        return Response(s.SchemaSerializer(schema).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SchemaUpdateSerializer, responses=s.SchemaSerializer)
    def partial_update(self, request: Request, schema_name: str) -> Response:
        data = s.SchemaUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.schema_update(tenant=self.tenant, schema=self.object, by=request.user, **data.validated_data)
        return Response(s.SchemaSerializer(selectors.schema_get(tenant=self.tenant, name=schema_name)).data)

    update = partial_update

    @extend_schema(parameters=[OpenApiParameter("force", bool, description="Also delete its records and the "
                                                                           "links to it.")],
                   responses={204: None})
    def destroy(self, request: Request, schema_name: str) -> Response:
        services.schema_delete(tenant=self.tenant, schema=self.object, by=request.user,
                               force=_truthy(request.query_params.get("force")))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _SchemaChildMixin:
    """Views under /schemas/<schema_name>/: `self.data_schema` is the schema, `self.object` the child
    the URL names (or the schema on a collection route)."""

    data_schema: DataSchema | None = None

    def _schema(self, schema_name: str) -> DataSchema:
        self.data_schema = selectors.schema_get(tenant=self.tenant, name=schema_name)
        return self.data_schema


class FieldViewSet(_SchemaChildMixin, TenantAPIMixin, ViewSet):
    """Fields of a schema."""

    capabilities = {"list": READ, "retrieve": READ, "create": MANAGE, "partial_update": MANAGE, "destroy": MANAGE}

    def lookup_object(self, schema_name: str, field_name: str | None = None) -> Any:
        schema = self._schema(schema_name)
        if field_name is None:
            return schema
        return selectors.field_get(tenant=self.tenant, schema=schema, name=field_name)

    def _out(self, field: Any) -> dict[str, Any]:
        return s.FieldSerializer(field, context={"schema": self.data_schema}).data

    @extend_schema(responses=s.FieldSerializer(many=True))
    def list(self, request: Request, schema_name: str) -> Response:
        fields = selectors.field_list(tenant=self.tenant, schema=self.data_schema)
        paginator = PagePagination()
        page = paginator.paginate_queryset(fields, request, view=self)
        return paginator.get_paginated_response(
            s.FieldSerializer(page, many=True, context={"schema": self.data_schema}).data)

    @extend_schema(responses=s.FieldSerializer)
    def retrieve(self, request: Request, schema_name: str, field_name: str) -> Response:
        return Response(self._out(self.object))

    @extend_schema(request=s.FieldInputSerializer, responses={201: s.FieldSerializer})
    def create(self, request: Request, schema_name: str) -> Response:
        data = s.FieldInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        field = services.field_add(tenant=self.tenant, schema=self.data_schema, by=request.user, **data.validated_data)
        return Response(self._out(field), status=status.HTTP_201_CREATED)

    @extend_schema(request=s.FieldUpdateSerializer, responses=s.FieldSerializer)
    def partial_update(self, request: Request, schema_name: str, field_name: str) -> Response:
        data = s.FieldUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        field = services.field_update(tenant=self.tenant, schema=self.data_schema, field=self.object, by=request.user,
                                      **data.validated_data)
        return Response(self._out(field))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, schema_name: str, field_name: str) -> Response:
        services.field_remove(tenant=self.tenant, schema=self.data_schema, field=self.object, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LinkViewSet(_SchemaChildMixin, TenantAPIMixin, ViewSet):
    """Links of a schema to other schemas."""

    capabilities = {"list": READ, "retrieve": READ, "create": MANAGE, "destroy": MANAGE}

    def lookup_object(self, schema_name: str, link_name: str | None = None) -> Any:
        schema = self._schema(schema_name)
        if link_name is None:
            return schema
        return selectors.link_get(tenant=self.tenant, schema=schema, name=link_name)

    @extend_schema(responses=s.LinkSerializer(many=True))
    def list(self, request: Request, schema_name: str) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.link_list(tenant=self.tenant, schema=self.data_schema), request,
                                           view=self)
        return paginator.get_paginated_response(s.LinkSerializer(page, many=True).data)

    @extend_schema(responses=s.LinkSerializer)
    def retrieve(self, request: Request, schema_name: str, link_name: str) -> Response:
        return Response(s.LinkSerializer(self.object).data)

    @extend_schema(request=s.LinkCreateSerializer, responses={201: s.LinkSerializer})
    def create(self, request: Request, schema_name: str) -> Response:
        data = s.LinkCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        link = services.link_create(tenant=self.tenant, schema=self.data_schema, by=request.user, **data.validated_data)
        body = s.LinkSerializer(link).data
        if getattr(link, "reverse", None) is not None:
            body["reverse"] = {**s.LinkSerializer(link.reverse).data, "schema": link.reverse.schema.name}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, schema_name: str, link_name: str) -> Response:
        services.link_remove(tenant=self.tenant, schema=self.data_schema, link=self.object, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecordViewSetBase(TenantAPIMixin, ViewSet):
    """Records of one schema: list (paged, `?search=`, `?filter=<json>`), create, read, replace
    (PUT), change (PATCH) and delete. Values are sent as a flat object of field values and come
    back as {"key", "values", "created_at", "updated_at"}."""

    capabilities = {"list": READ, "retrieve": READ, "create": WRITE, "update": WRITE, "partial_update": WRITE,
                    "destroy": WRITE}
    data_schema: DataSchema | None = None

    def get_data_schema(self) -> DataSchema:
        raise NotImplementedError

    def _load(self, key: str | None) -> Any:
        self.data_schema = self.get_data_schema()
        if key is None:
            return self.data_schema
        return selectors.record_get(tenant=self.tenant, schema=self.data_schema, key=key)

    def _ensure_schema(self) -> DataSchema:
        if getattr(self, "data_schema", None) is None:
            self.data_schema = self.get_data_schema()
        return self.data_schema

    def _list(self, request: Request) -> Response:
        schema = self._ensure_schema()
        qs = selectors.record_list(tenant=self.tenant, schema=schema, search=request.query_params.get("search"),
                                   filter=request.query_params.get("filter"))
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.RecordSerializer(page, many=True).data)

    def _create(self, request: Request) -> Response:
        record = services.record_create(tenant=self.tenant, schema=self._ensure_schema(), values=request.data,
                                        by=request.user)
        return Response(s.RecordSerializer(record).data, status=status.HTTP_201_CREATED)

    def _change(self, request: Request, *, partial: bool) -> Response:
        record = services.record_update(tenant=self.tenant, schema=self.data_schema, record=self.object,
                                        values=request.data, partial=partial, by=request.user)
        return Response(s.RecordSerializer(record).data)

    def _destroy(self) -> Response:
        services.record_delete(tenant=self.tenant, schema=self.data_schema, record=self.object, by=self.request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


RECORD_LIST_PARAMETERS = [
    OpenApiParameter("search", str, description="Substring of the key or of a text field."),
    OpenApiParameter("filter", str, description="A filter tree, as JSON (see docs/filter-language.md)."),
]


class RecordViewSet(RecordViewSetBase):
    def lookup_object(self, schema_name: str, key: str | None = None) -> Any:
        self._schema_name = schema_name
        return self._load(key)

    def get_data_schema(self) -> DataSchema:
        return selectors.schema_get(tenant=self.tenant, name=self._schema_name)

    @extend_schema(parameters=RECORD_LIST_PARAMETERS, responses=s.RecordSerializer(many=True))
    def list(self, request: Request, schema_name: str) -> Response:
        return self._list(request)

    @extend_schema(request=dict, responses={201: s.RecordSerializer})
    def create(self, request: Request, schema_name: str) -> Response:
        return self._create(request)

    @extend_schema(responses=s.RecordSerializer)
    def retrieve(self, request: Request, schema_name: str, key: str) -> Response:
        return Response(s.RecordSerializer(self.object).data)

    @extend_schema(request=dict, responses=s.RecordSerializer)
    def update(self, request: Request, schema_name: str, key: str) -> Response:
        return self._change(request, partial=False)

    @extend_schema(request=dict, responses=s.RecordSerializer)
    def partial_update(self, request: Request, schema_name: str, key: str) -> Response:
        return self._change(request, partial=True)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, schema_name: str, key: str) -> Response:
        return self._destroy()


class QueryView(_SchemaChildMixin, TenantAPIMixin, ViewSet):
    """POST a filter tree; get how many records match and a sample of them. Filter errors are a
    400 listing each problem with the path of its node."""

    capabilities = {"query": READ}

    def lookup_object(self, schema_name: str) -> DataSchema:
        return self._schema(schema_name)

    @extend_schema(request=s.QuerySerializer, responses=s.QueryResultSerializer)
    def query(self, request: Request, schema_name: str) -> Response:
        data = s.QuerySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = selectors.records_query(tenant=self.tenant, schema=self.data_schema,
                                         tree=data.validated_data.get("filter"),
                                         variables=data.validated_data.get("variables"),
                                         sample_size=data.validated_data.get("sample_size", 20))
        return Response(result)
