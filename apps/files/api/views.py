"""Campaign files, under /api/v1/campaigns/<id>/files/: upload (written to disk chunk by chunk as
it arrives), list, read, delete, and the columns a Load file would read from one (its structure,
types guessed from its first lines). And /api/v1/runs/<id>/rejects?node=<node id>: the rejects of
a Load file or Update data node of a run, as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.campaigns import selectors as campaign_selectors
from apps.core.api.pagination import PagePagination
from apps.core.errors import ApplicationError
from apps.files import selectors, services, storage
from apps.files.models import CampaignFile
from apps.schemas.api.imports import MAX_UPLOAD_BYTES, ImportUploadHandler
from apps.tenants.api.base import TenantAPIMixin

READ, BUILD = "campaigns.read", "campaigns.build"


class CampaignFileUploadHandler(ImportUploadHandler):
    """The import's streaming upload handler, writing under MEDIA_ROOT/campaign-files/<tenant>/."""

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        FileUploadHandler.new_file(self, field_name, *args, **kwargs)
        if field_name != "file" or self.target is not None:
            return
        self.target = storage.new_path(self.tenant_id)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.target, "wb")  # noqa: SIM115 - closed in file_complete / upload_interrupted
        raise StopFutureHandlers()


class CampaignFileSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = CampaignFile
        fields = ["id", "campaign", "name", "size", "content_type", "created_by", "created_at"]

    def get_created_by(self, file: CampaignFile) -> str | None:
        return file.created_by.email if file.created_by_id else None


class CampaignFileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=f"The CSV or JSON-lines file (at most {MAX_UPLOAD_BYTES // 1024**2} MiB).")
    name = serializers.CharField(required=False, max_length=255, help_text="Default: the uploaded file's name.")


class CampaignFileViewSet(TenantAPIMixin, ViewSet):
    """Files of a campaign. Members who build campaigns upload and delete them; every member reads."""

    capabilities = {"list": READ, "retrieve": READ, "columns": READ, "create": BUILD, "destroy": BUILD}
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def lookup_object(self, pk: int, file_id: int | None = None) -> Any:
        self.campaign = campaign_selectors.campaign_get(tenant=self.tenant, id=pk)
        if file_id is None:
            return self.campaign
        return selectors.campaign_file_get(tenant=self.tenant, campaign=self.campaign, id=file_id)

    @extend_schema(responses=CampaignFileSerializer(many=True))
    def list(self, request: Request, pk: int) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.campaign_file_list(tenant=self.tenant, campaign=self.campaign),
                                           request, view=self)
        return paginator.get_paginated_response(CampaignFileSerializer(page, many=True).data)

    @extend_schema(request={"multipart/form-data": CampaignFileUploadSerializer}, responses={201: CampaignFileSerializer})
    def create(self, request: Request, pk: int) -> Response:
        handler = CampaignFileUploadHandler(request._request, tenant_id=self.tenant.pk)
        if not hasattr(request._request, "_files"):
            request._request.upload_handlers = [handler]
        try:
            data = CampaignFileUploadSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            stored = services.campaign_file_upload(tenant=self.tenant, campaign=self.campaign, by=request.user,
                                                   **data.validated_data)
        except BaseException:
            handler.discard()
            raise
        return Response(CampaignFileSerializer(stored).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=CampaignFileSerializer)
    def retrieve(self, request: Request, pk: int, file_id: int) -> Response:
        return Response(CampaignFileSerializer(self.object).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: int, file_id: int) -> Response:
        services.campaign_file_delete(tenant=self.tenant, file=self.object, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(parameters=[OpenApiParameter("delimiter", str), OpenApiParameter("encoding", str),
                               OpenApiParameter("format", str), OpenApiParameter("header", bool),
                               OpenApiParameter("skip_lines", int)], responses={200: dict})
    def columns(self, request: Request, pk: int, file_id: int) -> Response:
        """The `columns` a Load file would declare for this file: one per header cell (or JSON key),
        with the type its first 1000 lines fit. Options as the Load file's config."""
        from apps.activities.load_file import FileProblem, infer_columns

        config = _sample_options(request.query_params)
        try:
            columns = infer_columns(Path(selectors.campaign_file_path(self.object)), self.object.name, config)
        except FileProblem as error:
            raise ApplicationError(f"The file cannot be read: {error}", fields={"file": [str(error)]}) from None
        return Response({"columns": columns})


def _sample_options(params: Any) -> dict[str, Any]:
    config: dict[str, Any] = {k: params[k] for k in ("delimiter", "quote", "encoding") if params.get(k)}
    if params.get("format"):
        if params["format"] not in ("csv", "jsonl"):
            raise ApplicationError("Unknown format.", fields={"format": ["csv or jsonl."]})
        config["format"] = params["format"]
    if "header" in params:
        config["header"] = params["header"].lower() not in ("false", "0", "no")
    if params.get("skip_lines"):
        try:
            config["skip_lines"] = max(0, min(1000, int(params["skip_lines"])))
        except ValueError:
            raise ApplicationError("skip_lines must be an integer.", fields={"skip_lines": ["Not an integer."]}) from None
    return config


class RunRejectsViewSet(TenantAPIMixin, ViewSet):
    """The rejects of a data activity of a run, as CSV (line or row key, column, value, reason)."""

    capabilities = {"rejects": READ}

    def lookup_object(self, pk: int) -> Any:
        return campaign_selectors.run_get(tenant=self.tenant, id=pk)

    @extend_schema(parameters=[OpenApiParameter("node", str, required=True)],
                   responses={(200, "text/csv"): OpenApiResponse(description="line,column,value,reason")})
    def rejects(self, request: Request, pk: int) -> FileResponse:
        from apps.files.reports import rejects_file

        node = request.query_params.get("node")
        if not node:
            raise ApplicationError("Name the node.", fields={"node": ["Give the id of a Load file or Update data "
                                                                      "node of this run."]})
        report = rejects_file(tenant=self.tenant, run=self.object, node_id=node)
        return FileResponse(report, as_attachment=True, filename=f"run-{self.object.pk}-{node}-rejects.csv",
                            content_type="text/csv; charset=utf-8")
