"""A run that ends (stopped, failed, completed) cancels the tasks still open on it."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_migrate, post_save
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


def beat_entries_ensure() -> None:
    """The approvals' periodic jobs in django-celery-beat (idempotent): reminders every few
    minutes, digests daily. Declared here and created on every `migrate` (deploy, `make run`)."""
    from django.conf import settings
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(
        every=int(getattr(settings, "TASK_REMINDER_SECONDS", 300)), period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name="remind assignees of tasks due soon", defaults={
        "task": "approvals.send_due_reminders", "interval": every, "enabled": True})
    daily, _ = CrontabSchedule.objects.get_or_create(minute="0", hour="7", day_of_week="*", day_of_month="*",
                                                     month_of_year="*")
    PeriodicTask.objects.update_or_create(name="send task digests", defaults={
        "task": "approvals.send_task_digests", "crontab": daily, "enabled": True})


@receiver(post_migrate)
def ensure_beat_entries(sender: Any, **kwargs: Any) -> None:
    if getattr(sender, "label", None) == "approvals":
        beat_entries_ensure()
