"""A run that ends (stopped, failed, completed) cancels the tasks still open on it."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.campaigns.models import Run, RunStatus

ENDED = (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.COMPLETED)


@receiver(post_save, sender=Run)
def cancel_tasks_of_ended_run(sender: Any, instance: Run, created: bool, **kwargs: Any) -> None:
    if created or instance.status not in ENDED:
        return
    fields = kwargs.get("update_fields")
    if fields is not None and "status" not in fields:
        return
    from apps.approvals.services import tasks_cancel_for_run

    tasks_cancel_for_run(run=instance)
