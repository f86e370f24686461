"""A tenant's data model: schemas (record types) with typed fields and links between them, and
the records themselves.

Records of every schema live in one table, `schemas_record`, keyed by (tenant, schema, key), with
their values in a JSONB `attributes` column typed by the schema (see apps/schemas/types.py for how
each type is stored and read back in SQL). A filter over millions of records is then one SQL
statement, helped by the expression indexes that fields marked `indexed` ask for."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.db import models

from apps.tenants.scoping import TenantOwnedModel

IDENTIFIER = RegexValidator(
    r"^[a-z][a-z0-9_]{0,62}$",
    "Start with a lower-case letter; use lower-case letters, digits and underscores (at most 63).",
)


class FieldType(models.TextChoices):
    STRING = "string", "Text"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal"
    BOOLEAN = "boolean", "Yes/no"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    EMAIL = "email", "E-mail address"
    PHONE = "phone", "Phone number"
    ENUM = "enum", "Choice"
    JSON = "json", "JSON"


class LinkKind(models.TextChoices):
    MANY_TO_ONE = "many_to_one", "Many to one"
    ONE_TO_MANY = "one_to_many", "One to many"


class DataSchema(TenantOwnedModel):
    name = models.CharField(max_length=63, validators=[IDENTIFIER])
    label = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    primary_key = models.CharField(max_length=63, validators=[IDENTIFIER],
                                   help_text="Name of the field whose value identifies a record.")
    is_builtin = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "name"], name="schemas_dataschema_tenant_name_key"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Field(TenantOwnedModel):
    schema = models.ForeignKey(DataSchema, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=63, validators=[IDENTIFIER])
    label = models.CharField(max_length=200, blank=True)
    type = models.CharField(max_length=16, choices=FieldType.choices)
    required = models.BooleanField(default=False)
    default = models.JSONField(null=True, blank=True)
    indexed = models.BooleanField(default=False)
    enum_values = models.JSONField(default=list, blank=True)
    is_builtin = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "schema", "name"], name="schemas_field_tenant_schema_name_key"),
        ]
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.schema_id}.{self.name}"


class Link(TenantOwnedModel):
    """A named way from records of `schema` to records of `target`: many-to-one when
    `source_field` of a record names the `target_field` of one target record (a purchase's
    `profile_id` → the profile's `id`), one-to-many for the reverse (a profile's purchases)."""

    schema = models.ForeignKey(DataSchema, on_delete=models.CASCADE, related_name="links")
    name = models.CharField(max_length=63, validators=[IDENTIFIER])
    label = models.CharField(max_length=200, blank=True)
    target = models.ForeignKey(DataSchema, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=LinkKind.choices)
    source_field = models.CharField(max_length=63, validators=[IDENTIFIER])
    target_field = models.CharField(max_length=63, validators=[IDENTIFIER])

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "schema", "name"], name="schemas_link_tenant_schema_name_key"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.schema_id}.{self.name}"


class Record(TenantOwnedModel):
    """One record of a schema. `key` is the text form of its primary-key field's value.

    `tenant` and `schema` have no foreign-key constraint in the database: checking both on every
    row was half the cost of a bulk import's write, and a distributed `schemas_record` (Citus,
    docs/scaling.md) could not keep the `schema_id` one anyway. The services keep them right:
    every record write locks its schema's row first and fails when the row is gone
    (services._lock_schema, the import's write phase, the Update data activity), and deleting a
    schema or a tenant deletes its records (services.schema_delete, Django's cascade;
    tests/schemas/test_record_integrity.py).

    Its primary key in the database is (tenant_id, id) (migration 0005), not `id` alone: one
    B-tree on ids instead of the usual two (`id`, and the (tenant, id) every tenant-owned table
    has), as every read by id names the tenant. Django still sees `id` as the primary key, which the
    identity column keeps unique."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", editable=False,
                               db_index=False, db_constraint=False)
    schema = models.ForeignKey(DataSchema, on_delete=models.CASCADE, related_name="+", db_index=False,
                               db_constraint=False)
    key = models.CharField(max_length=255)
    attributes = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            # (tenant, id) is the primary key (see above), not a constraint of its own
            models.UniqueConstraint(fields=["tenant", "schema", "key"], name="schemas_record_tenant_schema_key"),
        ]

    def __str__(self) -> str:
        return f"{self.schema_id}:{self.key}"

    # Django writes an instance by `id` alone; naming the tenant lets the (tenant_id, id) key find it.
    def _do_update(self, base_qs: Any, *args: Any, **kwargs: Any) -> Any:
        return super()._do_update(base_qs.filter(tenant_id=self.tenant_id), *args, **kwargs)

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        rows = type(self).dangerously_unscoped.filter(tenant_id=self.tenant_id, pk=self.pk)
        deleted = (rows.using(using) if using else rows).delete()
        self.id = None
        return deleted


class ImportMode(models.TextChoices):
    UPSERT = "upsert", "Upsert (valid rows land, rejects are reported)"
    ALL_OR_NOTHING = "all_or_nothing", "All or nothing"


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON lines"


class ImportJob(TenantOwnedModel):
    """A bulk import of a file into a schema, run by a Celery task; its counters are the
    progress the API and the portal show."""

    schema = models.ForeignKey(DataSchema, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    file = models.CharField(max_length=500, help_text="Path of the uploaded file under MEDIA_ROOT.")
    original_name = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=8, choices=ImportFormat.choices, default=ImportFormat.CSV)
    mode = models.CharField(max_length=16, choices=ImportMode.choices, default=ImportMode.UPSERT)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    rows_read = models.BigIntegerField(default=0)
    rows_valid = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    rows_inserted = models.BigIntegerField(default=0)
    rows_updated = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    rejects_file = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "schema", "-created_at"], name="schemas_import_schema_idx")]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.schema_id}"
