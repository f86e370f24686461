"""Saved audiences: a static list of record keys frozen when it was built, or a dynamic saved
query (a filter tree) evaluated whenever it is used."""

from __future__ import annotations

from django.db import models

from apps.tenants.scoping import TenantOwnedModel


class AudienceKind(models.TextChoices):
    STATIC = "static", "Static list"
    DYNAMIC = "dynamic", "Saved query"


class Audience(TenantOwnedModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    schema = models.ForeignKey("schemas.DataSchema", on_delete=models.PROTECT, related_name="+", db_index=False,
                               help_text="The dimension: whose records the audience holds.")
    kind = models.CharField(max_length=16, choices=AudienceKind.choices)
    filter = models.JSONField(null=True, blank=True,
                              help_text="Dynamic: the saved query. Static: the filter it was built from, if any.")
    count = models.BigIntegerField(default=0, help_text="Members when last computed.")
    created_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_computed_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "name"], name="audiences_audience_tenant_name_key"),
        ]
        indexes = [models.Index(fields=["tenant", "schema"], name="audiences_audience_schema_idx")]
        ordering = ["name", "id"]

    @property
    def is_static(self) -> bool:
        return self.kind == AudienceKind.STATIC

    def __str__(self) -> str:
        return self.name


class AudienceMember(TenantOwnedModel):
    """One member of a static audience, by record key. Members are written and deleted set-wise
    by apps/audiences/services.py, always by (tenant_id, audience_id): the foreign key has no
    index and no database constraint of its own, because on a table of millions of rows both
    would cost an index leading with audience_id (the unique key leads with tenant_id) that no
    lookup needs."""

    audience = models.ForeignKey(Audience, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                                 db_constraint=False)
    record_key = models.CharField(max_length=255)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "audience", "record_key"], name="audiences_member_key"),
        ]

    def __str__(self) -> str:
        return f"{self.audience_id}:{self.record_key}"
