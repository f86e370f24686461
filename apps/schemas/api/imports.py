"""Bulk imports of one schema, under /api/v1/schemas/<schema_name>/imports/: upload a CSV or
JSON-lines file (202, the job), follow its progress, download its rejects report. The upload is
written to disk chunk by chunk as it arrives; the work happens in a worker (apps/schemas/imports.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers
from django.http import FileResponse
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.core.api.pagination import PagePagination
from apps.core.errors import ApplicationError
from apps.schemas import imports
from apps.schemas.models import DataSchema, ImportFormat, ImportJob, ImportMode
from apps.tenants.api.base import TenantAPIMixin

READ, WRITE = "data.read", "data.write"
MAX_UPLOAD_BYTES = int(getattr(settings, "IMPORT_MAX_BYTES", 4 * 1024**3))


# Upload ---------------------------------------------------------------------------------------

class StoredUpload(UploadedFile):
    """An uploaded file already written to its final place (`stored_path`)."""

    def __init__(self, stored_path: Path, name: str, content_type: str, size: int) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.stored_path = stored_path

    def open(self, mode: str = "rb") -> Any:
        return open(self.stored_path, mode)

    def close(self) -> None:
        pass


class ImportUploadHandler(FileUploadHandler):
    """Writes the `file` part of an import request straight to MEDIA_ROOT/imports/<tenant>/,
    one chunk at a time, so that a file of any size never sits in memory or in /tmp."""

    def __init__(self, request: Any = None, *, tenant_id: int) -> None:
        super().__init__(request)
        self.tenant_id = tenant_id
        self.target: Path | None = None
        self.handle: Any = None
        self.size = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        if field_name != "file" or self.target is not None:
            return
        self.target = imports.import_upload_path(self.tenant_id)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.target, "wb")  # noqa: SIM115 - closed in file_complete / upload_interrupted
        raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.handle is None:
            return raw_data
        self.size += len(raw_data)
        if self.size > MAX_UPLOAD_BYTES:
            self.upload_interrupted()
            raise ApplicationError(f"The file is larger than {MAX_UPLOAD_BYTES // 1024**2} MiB.",
                                   code="too_large", status=413)
        self.handle.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if self.handle is None:
            return None
        self.handle.close()
        self.handle = None
        return StoredUpload(self.target, self.file_name or "", self.content_type or "", file_size)

    def upload_interrupted(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        imports._remove(self.target)

    def discard(self) -> None:
        """Remove the stored file (the request failed before a job took it)."""
        self.upload_interrupted()


# Serializers ----------------------------------------------------------------------------------

class ImportJobSerializer(serializers.ModelSerializer):
    schema = serializers.CharField(source="schema.name")
    created_by = serializers.SerializerMethodField()
    has_rejects = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = ["id", "schema", "status", "format", "mode", "original_name", "options", "rows_read", "rows_valid",
                  "rows_rejected", "rows_inserted", "rows_updated", "has_rejects", "error", "created_by",
                  "created_at", "started_at", "finished_at"]

    def get_created_by(self, job: ImportJob) -> str | None:
        return job.created_by.email if job.created_by_id else None

    def get_has_rejects(self, job: ImportJob) -> bool:
        return bool(job.rejects_file)


class ImportCreateSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV (header line: field names) or JSON-lines file.")
    format = serializers.ChoiceField(choices=ImportFormat.choices, required=False,
                                     help_text="Default: from the file name (.jsonl, .ndjson: jsonl; else csv).")
    mode = serializers.ChoiceField(choices=ImportMode.choices, required=False, default=ImportMode.UPSERT)
    delimiter = serializers.CharField(required=False, trim_whitespace=False, max_length=3,
                                      help_text='CSV: default "," ("\\t" for .tsv files); "tab" for a tab.')
    quotechar = serializers.CharField(required=False, trim_whitespace=False, max_length=1)
    encoding = serializers.CharField(required=False, max_length=40, help_text="Default utf-8.")
    mapping = serializers.JSONField(required=False, binary=True,
                                    help_text="{column or JSON key: field name, or null to leave it out}")


# Views ----------------------------------------------------------------------------------------

class ImportViewSet(TenantAPIMixin, ViewSet):
    """Bulk imports of a schema. Members who may write data start them; every member reads them."""

    capabilities = {"list": READ, "retrieve": READ, "rejects": READ, "create": WRITE}
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    data_schema: DataSchema

    def lookup_object(self, schema_name: str, pk: Any = None) -> Any:
        self.data_schema = imports.import_schema_get(tenant=self.tenant, name=schema_name)
        if pk is None:
            return self.data_schema
        return imports.import_get(tenant=self.tenant, schema=self.data_schema, id=pk)

    @extend_schema(responses=ImportJobSerializer(many=True))
    def list(self, request: Request, schema_name: str) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(imports.import_list(tenant=self.tenant, schema=self.data_schema),
                                           request, view=self)
        return paginator.get_paginated_response(ImportJobSerializer(page, many=True).data)

    @extend_schema(request={"multipart/form-data": ImportCreateSerializer}, responses={202: ImportJobSerializer})
    def create(self, request: Request, schema_name: str) -> Response:
        handler = ImportUploadHandler(request._request, tenant_id=self.tenant.pk)
        if not hasattr(request._request, "_files"):
            request._request.upload_handlers = [handler]
        try:
            data = ImportCreateSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            job = imports.import_create(tenant=self.tenant, schema=self.data_schema, by=request.user,
                                        **data.validated_data)
        except BaseException:
            handler.discard()
            raise
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ImportJobSerializer)
    def retrieve(self, request: Request, schema_name: str, pk: str) -> Response:
        return Response(ImportJobSerializer(self.object).data)

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="line,column,value,reason")})
    def rejects(self, request: Request, schema_name: str, pk: str) -> FileResponse:
        """The rejects report as CSV: one row per value that was refused, with its line, column and
        reason. Cells a spreadsheet would run as formulas start with a single quote."""
        job = self.object
        return FileResponse(imports.import_rejects_open(job=job), as_attachment=True,
                            filename=f"import-{job.pk}-rejects.csv", content_type="text/csv; charset=utf-8")


jobs = ImportViewSet

# Included by apps/schemas/api/urls.py under "schemas/<str:schema_name>/imports/".
urlpatterns_imports = [
    path("", jobs.as_view({"get": "list", "post": "create"}), name="schema-import-list"),
    path("<int:pk>/", jobs.as_view({"get": "retrieve"}), name="schema-import-detail"),
    path("<int:pk>/rejects", jobs.as_view({"get": "rejects"}), name="schema-import-rejects"),
]
