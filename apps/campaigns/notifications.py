"""E-mails to a campaign's supervisors when a run fails or is suspended."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

logger = logging.getLogger(__name__)


def notify_supervisors(run) -> None:
    recipients = [e for e in (run.campaign.settings or {}).get("supervisors", []) if isinstance(e, str)]
    if not recipients:
        return
    subject = f"[{run.tenant.name if hasattr(run, 'tenant') else ''}] Campaign “{run.campaign.name}”: run {run.status}"
    body = (f"Run {run.pk} of campaign “{run.campaign.name}” is {run.status}.\n"
            f"Activity: {run.error_node or '-'}\nReason: {run.error or '-'}\n")

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # a mail outage must not break the engine
            logger.exception("could not notify supervisors of run %s", run.pk)

    transaction.on_commit(send)
