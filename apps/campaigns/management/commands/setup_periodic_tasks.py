"""Declare the periodic tasks in django-celery-beat (run at deploy and by `make run`): the
sweeper, the nightly purge, and one schedule dispatcher per tenant."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.campaigns.schedules import global_beat_entries_ensure, tenant_beat_entry_ensure
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = "Create or update the periodic tasks (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        global_beat_entries_ensure()
        count = 0
        for tenant in Tenant.objects.iterator():
            tenant_beat_entry_ensure(tenant)
            count += 1
        self.stdout.write(self.style.SUCCESS(f"Periodic tasks ready ({count} tenant dispatchers)."))
