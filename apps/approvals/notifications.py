"""E-mails to the people a task is assigned to: when it is created, when it is reassigned (or
escalated), and before it expires. Each carries a signed link straight to the task's decision
page; the link names the task and its tenant, it does not log anyone in."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.core.mail import send_mass_mail
from django.db import transaction

if TYPE_CHECKING:
    from apps.approvals.models import Task
    from apps.tenants.models import User

logger = logging.getLogger(__name__)

LINK_SALT = "approvals.task-link"
LINK_MAX_AGE = 60 * 60 * 24 * 30  # a link older than 30 days leads to the inbox instead

SUBJECTS = {
    "created": "New task: {title}",
    "reassigned": "Task assigned to you: {title}",
    "reminder": "Due soon: {title}",
}


def task_link_token(task: Task) -> str:
    return signing.dumps({"task": task.pk, "tenant": task.tenant_id}, salt=LINK_SALT, compress=True)


def task_link_read(token: str) -> dict[str, int] | None:
    """The task and tenant a link names, or None when it is forged or too old."""
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("task"), int) or not isinstance(data.get("tenant"), int):
        return None
    return data


def task_link(task: Task) -> str:
    base = getattr(settings, "PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    return f"{base}/tasks/link/{task_link_token(task)}/"


def recipients(task: Task) -> list[User]:
    """The people who may act on the task now: its assignees, or when it is assigned to no one,
    the tenant's members whose role may decide it."""
    from apps.tenants.models import Membership
    from apps.tenants.roles import CAPABILITIES

    if task.requires_each:
        users = [a.user for a in task.approvers.select_related("user")]
    elif task.assignee_user_id:
        users = [task.assignee_user]
    elif task.assignee_group_id:
        users = list(task.assignee_group.group.user_set.filter(is_active=True).order_by("email"))
    else:
        roles = CAPABILITIES["tasks.decide"] if task.kind == "approval" else CAPABILITIES["tasks.read"]
        users = [m.user for m in Membership.objects.filter(tenant_id=task.tenant_id, is_active=True,
                                                          role__in=list(roles)).select_related("user")]
    active = {m.user_id for m in _active_members(task, users)}
    return [u for u in users if u.is_active and u.email and u.pk in active]


def _active_members(task: Task, users: list[User]):
    from apps.tenants.models import Membership

    return Membership.objects.filter(tenant_id=task.tenant_id, user__in=users, is_active=True)


def render(task: Task, event: str) -> tuple[str, str]:
    subject = SUBJECTS[event].format(title=task.title)
    lines = [
        f"Campaign: {task.campaign.name}",
        f"Task: {task.get_kind_display()} #{task.pk}: {task.title}",
    ]
    if task.instructions:
        lines.append(f"Instructions: {task.instructions}")
    if task.snapshot.get("count") is not None:
        lines.append(f"Recipients: {task.snapshot['count']}")
    if task.due_at:
        lines.append(f"Due: {task.due_at:%Y-%m-%d %H:%M %Z} (then: {task.get_expiry_action_display().lower()})")
    lines += ["", f"Open the task (you will be asked to log in): {task_link(task)}"]
    return f"[{task.tenant.name}] {subject}", "\n".join(lines) + "\n"


def task_notify(task: Task, event: str) -> None:
    """Send the e-mail after the transaction commits (a rolled-back task notifies no one); a mail
    outage is logged and never breaks the engine or the decision."""
    if event not in SUBJECTS:
        raise ValueError(f"unknown task event {event!r}")
    to = [u.email for u in recipients(task)]
    if not to:
        return
    subject, body = render(task, event)
    task_id = task.pk

    def send() -> None:
        try:
            # One message per person: assignees do not see each other's addresses.
            send_mass_mail([(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in to])
        except Exception:
            logger.exception("could not notify the assignees of task %s", task_id)

    transaction.on_commit(send)
