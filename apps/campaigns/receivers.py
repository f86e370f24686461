from typing import Any

from django.dispatch import receiver

from apps.tenants.signals import tenant_created


@receiver(tenant_created)
def give_new_tenant_its_schedule_dispatcher(sender: Any, tenant: Any, **kwargs: Any) -> None:
    from apps.campaigns.schedules import tenant_beat_entry_ensure

    tenant_beat_entry_ensure(tenant)
