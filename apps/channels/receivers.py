"""A run that ends (stopped, failed, completed) cancels its deliveries still waiting for
confirmation, and those still sending (see `apps.channels.services.deliveries_cancel_for_run`)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.campaigns.models import Run, RunStatus

ENDED = (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.COMPLETED)


@receiver(post_save, sender=Run)
def cancel_deliveries_of_ended_run(sender: Any, instance: Run, created: bool, **kwargs: Any) -> None:
    if created or instance.status not in ENDED:
        return
    fields = kwargs.get("update_fields")
    if fields is not None and "status" not in fields:
        return
    from apps.channels.services import deliveries_cancel_for_run

    deliveries_cancel_for_run(run=instance)
