"""Celery tasks of the approvals app: kicks that carry ids, and the periodic jobs (reminders
before expiry, daily digests). Expiry itself needs no job: a task's due date is the wake-up time
of the node waiting on it, which the engine's sweeper honours."""

from __future__ import annotations

from celery import shared_task

from apps.tenants.scoping import tenant_task


@shared_task(name="approvals.notify_task")
@tenant_task
def notify_task(*, task_id: int, event: str, tenant_id: int) -> int:
    from apps.approvals import notifications
    from apps.approvals.models import Task

    task = Task.objects.select_related("campaign", "tenant", "assignee_user", "assignee_group").filter(
        pk=task_id).first()
    if task is None or not task.is_open:
        return 0
    if event != "reminder" and not notifications.wants_immediate(task.tenant):  # digest instead
        return 0
    return notifications.task_notify_now(task, event)


@shared_task(name="approvals.send_due_reminders")
def send_due_reminders() -> int:
    """Periodic: e-mail the assignees of open tasks that expire soon (once per task and due date)."""
    from apps.approvals import services

    return services.dangerously_tasks_remind_due()


@shared_task(name="approvals.send_task_digests")
def send_task_digests() -> int:
    """Daily: one e-mail per person listing the open tasks waiting on them, in tenants that chose
    digests over one e-mail per event."""
    from apps.approvals import notifications

    return notifications.dangerously_send_digests()
