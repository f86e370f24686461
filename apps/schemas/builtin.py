"""The built-in `profile` schema every tenant has from its first day: the default targeting
dimension. Tenants add their own fields to it; the built-in fields cannot be removed."""

from __future__ import annotations

from typing import Any

from apps.schemas.models import DataSchema, Field, FieldType
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

PROFILE = "profile"

PROFILE_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "label": "Profile ID", "type": FieldType.STRING, "required": True},
    {"name": "email", "label": "E-mail", "type": FieldType.EMAIL, "indexed": True},
    {"name": "phone", "label": "Phone", "type": FieldType.PHONE},
    {"name": "first_name", "label": "First name", "type": FieldType.STRING},
    {"name": "last_name", "label": "Last name", "type": FieldType.STRING},
    {"name": "language", "label": "Language", "type": FieldType.STRING},
    {"name": "country", "label": "Country", "type": FieldType.STRING},
    {"name": "birth_date", "label": "Birth date", "type": FieldType.DATE},
    {"name": "email_opt_in", "label": "E-mail opt-in", "type": FieldType.BOOLEAN, "default": True},
    {"name": "sms_opt_in", "label": "SMS opt-in", "type": FieldType.BOOLEAN, "default": False},
    {"name": "push_tokens", "label": "Push tokens", "type": FieldType.JSON, "default": []},
]


def install_profile_schema(*, tenant: Tenant) -> DataSchema:
    """Create the tenant's `profile` schema if it does not exist yet (idempotent)."""
    with tenant_scope(tenant):
        schema, created = DataSchema.objects.get_or_create(
            name=PROFILE,
            defaults={"label": "Profiles", "primary_key": "id", "is_builtin": True,
                      "description": "People you send messages to."},
        )
        if created:
            Field.objects.bulk_create([
                Field(tenant=tenant, schema=schema, position=position, is_builtin=True, **spec)
                for position, spec in enumerate(PROFILE_FIELDS)
            ])
    return schema
