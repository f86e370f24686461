"""Asynchronous bounces of e-mails: what an MTA or a provider tells us after it took a message.

Two forms are read. A delivery status notification (RFC 3464: `multipart/report;
report-type=delivery-status`, as Postfix, Exim or a provider writes it): one report per
per-recipient block of its `message/delivery-status` part, and the original message's Message-ID
from its `text/rfc822-headers` or `message/rfc822` part, whose local part is our idempotency key.
Or a provider's bounce webhook in JSON: `{"message_id": <idempotency key>, "recipient": ...,
"type": "hard" | "soft", "reason": ...}`.

A hard bounce (a failed action with a 5.x.x status, or `"type": "hard"`) records a `bounce` event
and suppresses the address the message went to; a soft bounce (delayed, or a 4.x.x status) records
a `soft_bounce` event only; a DSN reporting delivery records `delivered`. Messages are looked up
within the tenant only: another tenant's key matches nothing. Events are unique per message and
kind, so the same bounce posted twice changes nothing the second time."""

from __future__ import annotations

import email
import email.policy
import json
import re
import uuid
from dataclasses import dataclass
from email.message import Message as MimeMessage
from email.parser import HeaderParser
from typing import Any

from django.db import transaction

from apps.channels import tracking
from apps.channels.models import Channel, EventKind, Message
from apps.core.errors import ApplicationError
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import tenant_scope
from apps.tenants.services import audit_record

HARD, SOFT, DELIVERED = "hard", "soft", "delivered"
KIND_EVENT = {HARD: EventKind.BOUNCE, SOFT: EventKind.SOFT_BOUNCE, DELIVERED: EventKind.DELIVERED}
STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}$")
MAX_BODY = 1024 * 1024  # a DSN carries the original's headers, or at most the whole original


@dataclass(frozen=True)
class BounceReport:
    """One recipient's fate as a bounce tells it."""

    key: uuid.UUID | None        # the message's idempotency key; None: not a Message-ID of ours
    message_id: str              # as the bounce named it (for the answer)
    recipient: str
    kind: str                    # hard, soft or delivered
    status: str = ""             # the RFC 3463 status code, e.g. 5.1.1
    action: str = ""             # the DSN's Action
    diagnostic: str = ""

    @property
    def detail(self) -> str:
        return " ".join(part for part in (self.status, self.diagnostic) if part)


def _invalid(message: str, field: str, reason: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_bounce", fields={field: [reason]})


def _key_of(message_id: str) -> uuid.UUID | None:
    """The idempotency key in `<key@domain>`; None when the Message-ID is not one we write."""
    local = message_id.strip().strip("<>").rsplit("@", 1)[0]
    try:
        return uuid.UUID(local)
    except ValueError:
        return None


def _address(value: str) -> str:
    """`rfc822; ada@example.test` -> `ada@example.test`."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _original_message_id(report: MimeMessage) -> str:
    for part in report.walk():
        content_type = part.get_content_type()
        if content_type == "text/rfc822-headers":
            headers = HeaderParser(policy=email.policy.default).parsestr(part.get_content())
            found = headers.get("Message-ID")
        elif content_type == "message/rfc822":
            payload = part.get_payload()
            found = payload[0].get("Message-ID") if isinstance(payload, list) and payload else None
        else:
            continue
        if found:
            return str(found).strip()
    raise _invalid("The bounce does not name the original message.", "Message-ID",
                   "No Message-ID in a text/rfc822-headers or message/rfc822 part.")


def _classify(action: str, status: str) -> str | None:
    """hard, soft, delivered, or None for what says nothing about the message (relayed, expanded)."""
    if action == "delivered":
        return DELIVERED
    if action == "delayed":
        return SOFT
    if action == "failed":
        return HARD if status.startswith("5.") else SOFT
    return None


def dsn_parse(raw: bytes) -> list[BounceReport]:
    """The per-recipient reports of an RFC 3464 delivery status notification. Raises
    ApplicationError (400, naming the field) when it is not one or a block is malformed."""
    try:
        report = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # the parser is lenient; a failure here is bytes that are not a message at all
        raise _invalid("The body is not an e-mail message.", "body", "Not parseable as RFC 5322.") from None
    status_part = next((p for p in report.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise _invalid("The body is not a delivery status notification.", "Content-Type",
                       "Expected multipart/report; report-type=delivery-status with a message/delivery-status part.")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise _invalid("The delivery status has no per-recipient block.", "message/delivery-status",
                       "Expected the per-message fields then at least one per-recipient block.")
    message_id = _original_message_id(report)
    key = _key_of(message_id)
    reports = []
    for block in blocks[1:]:
        recipient = _address(str(block.get("Final-Recipient") or block.get("Original-Recipient") or ""))
        action = str(block.get("Action") or "").strip().lower()
        status = str(block.get("Status") or "").strip().split(" ", 1)[0]
        if not recipient:
            raise _invalid("A per-recipient block has no recipient.", "Final-Recipient", "Required.")
        if action not in ("failed", "delayed", "delivered", "relayed", "expanded"):
            raise _invalid("A per-recipient block has an unknown action.", "Action",
                           "One of failed, delayed, delivered, relayed, expanded.")
        if not STATUS.match(status):
            raise _invalid("A per-recipient block has no valid status.", "Status",
                           "An RFC 3463 code such as 5.1.1 or 4.2.2.")
        kind = _classify(action, status)
        if kind is not None:
            reports.append(BounceReport(key=key, message_id=message_id, recipient=recipient, kind=kind,
                                        status=status, action=action,
                                        diagnostic=str(block.get("Diagnostic-Code") or "").strip()))
    return reports


def json_parse(body: bytes) -> list[BounceReport]:
    """A provider's bounce webhook: `{"message_id", "recipient", "type": "hard" | "soft", "reason"}`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("The body is not JSON.", "body", "Not parseable as JSON.") from None
    if not isinstance(data, dict):
        raise _invalid("The bounce must be a JSON object.", "body", "Expected an object.")
    message_id, kind = data.get("message_id"), data.get("type")
    recipient, reason = data.get("recipient", ""), data.get("reason", "")
    if not isinstance(message_id, str) or not message_id.strip():
        raise _invalid("The bounce names no message.", "message_id", "Required: the message's idempotency key.")
    if kind not in (HARD, SOFT):
        raise _invalid("Unknown bounce type.", "type", "hard or soft.")
    if not isinstance(recipient, str):
        raise _invalid("Invalid recipient.", "recipient", "A string.")
    if not isinstance(reason, str):
        raise _invalid("Invalid reason.", "reason", "A string.")
    return [BounceReport(key=_key_of(message_id), message_id=message_id.strip(), recipient=recipient.strip(),
                         kind=kind, diagnostic=reason.strip())]


def bounces_parse(*, content_type: str, body: bytes) -> tuple[str, list[BounceReport]]:
    """(source, reports) of a posted bounce: `dsn` for message/rfc822, `json` for application/json."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not body:
        raise _invalid("The body is empty.", "body", "Post a DSN e-mail or a JSON bounce.")
    if len(body) > MAX_BODY:
        raise _invalid("The body is too large.", "body", f"At most {MAX_BODY} bytes.")
    if media == "message/rfc822":
        return "dsn", dsn_parse(body)
    if media == "application/json":
        return "json", json_parse(body)
    raise _invalid("Unsupported content type.", "Content-Type", "message/rfc822 (a DSN) or application/json.")


def _message_get(*, tenant: Tenant, key: uuid.UUID | None) -> Message | None:
    if key is None:
        return None
    with tenant_scope(tenant):
        return Message.objects.filter(tenant=tenant, idempotency_key=key, delivery__channel=Channel.EMAIL).first()


@transaction.atomic
def bounce_record(*, tenant: Tenant, content_type: str, body: bytes, by: User | None) -> list[dict[str, Any]]:
    """Parse a posted bounce and apply each report to the tenant's message it names: the event
    (once), and for a hard bounce the suppression of the message's address; an audit entry for
    each new event. Returns one outcome per report: `recorded`, `duplicate` (already recorded)
    or `unmatched` (no e-mail of this tenant has that Message-ID)."""
    source, reports = bounces_parse(content_type=content_type, body=body)
    outcomes = []
    for report in reports:
        message = _message_get(tenant=tenant, key=report.key)
        outcome = {"message_id": report.message_id, "recipient": report.recipient, "type": report.kind,
                   "status": report.status, "outcome": "unmatched"}
        if message is not None:
            is_new = tracking.event_record(tenant=tenant, message=message, kind=KIND_EVENT[report.kind],
                                           detail=report.detail)
            if report.kind == HARD and is_new:
                address = message.address or report.recipient
                tracking.suppress(tenant=tenant, channel=Channel.EMAIL, addresses=[(address, report.detail)])
            if is_new:
                audit_record(tenant=tenant, actor=by, action="channels.bounce", obj=message,
                             data={"type": report.kind, "status": report.status, "recipient": report.recipient,
                                   "source": source, "suppressed": report.kind == HARD})
            outcome["outcome"] = "recorded" if is_new else "duplicate"
        outcomes.append(outcome)
    return outcomes
