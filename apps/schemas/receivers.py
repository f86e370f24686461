from typing import Any

from django.dispatch import receiver

from apps.schemas.builtin import install_profile_schema
from apps.tenants.signals import tenant_created


@receiver(tenant_created)
def give_new_tenant_a_profile_schema(sender: Any, tenant: Any, **kwargs: Any) -> None:
    install_profile_schema(tenant=tenant)
