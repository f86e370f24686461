"""Declare the periodic tasks in django-celery-beat (run at deploy and by `make run`): the
sweeper, the nightly purge, and the schedule fan-out (one entry for all tenants; it replaces the
per-tenant entries of earlier versions, which it deletes)."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.campaigns.schedules import global_beat_entries_ensure


class Command(BaseCommand):
    help = "Create or update the periodic tasks (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        global_beat_entries_ensure()
        self.stdout.write(self.style.SUCCESS("Periodic tasks ready."))
