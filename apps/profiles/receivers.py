from typing import Any

from django.dispatch import receiver

from apps.schemas.builtin import PROFILE
from apps.schemas.indexes import indexes_sync_on_commit
from apps.schemas.models import DataSchema
from apps.tenants.scoping import tenant_scope
from apps.tenants.signals import tenant_created


@receiver(tenant_created)
def build_profile_indexes(sender: Any, tenant: Any, **kwargs: Any) -> None:
    """The built-in profile schema (installed by apps.schemas, whose receiver runs first) asks for
    indexes (e-mail): build them once the tenant is committed."""
    with tenant_scope(tenant):
        schema = DataSchema.objects.filter(name=PROFILE).first()
    if schema is not None:
        indexes_sync_on_commit(tenant_id=tenant.pk, schema_id=schema.pk)
