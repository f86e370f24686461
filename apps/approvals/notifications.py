"""E-mails to the people a task is assigned to: when it is created, when it is reassigned (or
escalated), and before it expires. Each carries a signed link straight to the task's decision
page; the link names the task and its tenant, it does not log anyone in."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

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


def wants_immediate(tenant: Any) -> bool:
    """Tenant setting `task_notifications`: "immediate" (default: one e-mail per event) or
    "digest" (one daily e-mail per person; reminders before expiry are still sent)."""
    return (tenant.settings or {}).get("task_notifications", "immediate") != "digest"


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
    """Ask a worker to e-mail the assignees once the transaction commits (a rolled-back task
    notifies no one; the request or the engine never waits on SMTP)."""
    if event not in SUBJECTS:
        raise ValueError(f"unknown task event {event!r}")
    from apps.approvals import tasks

    task_id, tenant_id = task.pk, task.tenant_id
    transaction.on_commit(lambda: tasks.notify_task.delay(task_id=task_id, event=event, tenant_id=tenant_id))


def task_notify_now(task: Task, event: str) -> int:
    """E-mail the people who may act on `task` now (one message each); returns how many were sent.
    Through the tenant's SMTP settings (apps/channels) when it has them, else the platform's
    e-mail backend. A mail outage is logged, never raised."""
    people = recipients(task)
    if not people:
        return 0
    subject, body = render(task, event)
    return deliver(task.tenant, subject, body, [u.email for u in people], key=f"task-{task.pk}-{event}")


def deliver(tenant: Any, subject: str, body: str, to: list[str], *, key: str) -> int:
    from apps.channels import providers
    from apps.channels.selectors import channel_settings_get

    config = channel_settings_get(tenant=tenant)
    sent = 0
    try:
        if config.smtp_host and config.from_email:
            with providers.SmtpSender(config) as smtp:
                for address in to:
                    email = providers.Email(to=address, subject=subject, text=body, html="",
                                            message_id=f"{key}-{uuid.uuid4().hex[:12]}@{config.message_id_domain}")
                    result = smtp.send(email)
                    if result.is_sent:
                        sent += 1
                    else:
                        logger.warning("task notification to %s not sent: %s", address, result.detail)
        else:
            # One message per person: assignees do not see each other's addresses.
            sent = send_mass_mail([(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in to])
    except Exception:
        logger.exception("could not send the task notification %s", key)
    return sent


def dangerously_send_digests() -> int:
    """Across tenants that chose digests: one e-mail per member with open tasks waiting on them."""
    from apps.approvals.selectors import task_list
    from apps.tenants.models import Membership, Tenant
    from apps.tenants.scoping import tenant_scope

    sent = 0
    for tenant in Tenant.objects.filter(is_active=True, settings__task_notifications="digest"):
        with tenant_scope(tenant):
            for membership in Membership.objects.filter(is_active=True, user__is_active=True).select_related("user"):
                tasks = list(task_list(tenant=tenant, user=membership.user,
                                       filters={"status": "open", "assignee": "me"}).order_by("due_at", "id")[:50])
                if not tasks:
                    continue
                lines = [f"{len(tasks)} task(s) wait on you in {tenant.name}:", ""]
                for task in tasks:
                    due = f" (due {task.due_at:%Y-%m-%d %H:%M %Z})" if task.due_at else ""
                    lines.append(f"- {task.get_kind_display()} #{task.pk}: {task.title}, {task.campaign.name}{due}")
                    lines.append(f"  {task_link(task)}")
                sent += deliver(tenant, f"[{tenant.name}] Your tasks", "\n".join(lines) + "\n",
                                [membership.user.email], key=f"digest-{membership.user_id}")
    return sent
