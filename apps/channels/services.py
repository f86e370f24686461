"""State changes of the channels app: settings, test sends, proofs, deliveries."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.channels import encryption, providers
from apps.channels.models import ChannelSettings
from apps.channels.selectors import channel_settings_get
from apps.core.errors import ApplicationError
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import tenant_scope
from apps.tenants.services import audit_record

SECRET_FIELDS = {"smtp_password": "smtp_password_encrypted", "sms_webhook_secret": "sms_webhook_secret_encrypted",
                 "push_webhook_secret": "push_webhook_secret_encrypted"}
PLAIN_FIELDS = ("smtp_host", "smtp_port", "smtp_security", "smtp_username", "from_email", "from_name", "reply_to",
                "sending_domain", "sms_webhook_url", "sms_sender", "push_webhook_url", "send_rate_per_second",
                "pressure_max_per_day", "pressure_max_per_week")


class SendFailed(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="send_failed", status=400)


@transaction.atomic
def channel_settings_update(*, tenant: Tenant, by: User | None, **changes: Any) -> ChannelSettings:
    """Change the tenant's channel settings. A secret given as "" is removed; a secret not given
    is kept. The audit entry names the fields changed, never a secret's value."""
    unknown = set(changes) - set(PLAIN_FIELDS) - set(SECRET_FIELDS)
    if unknown:
        raise ApplicationError("Unknown settings.", fields={name: ["Unknown field."] for name in sorted(unknown)})
    with tenant_scope(tenant):
        config = ChannelSettings.objects.select_for_update().filter(tenant=tenant).first() or ChannelSettings(
            tenant=tenant)
        for name in PLAIN_FIELDS:
            if name in changes:
                value = changes[name]
                if value is None and name not in ("pressure_max_per_day", "pressure_max_per_week"):
                    continue
                setattr(config, name, value)
        for name, column in SECRET_FIELDS.items():
            if name in changes:
                setattr(config, column, encryption.encrypt(changes[name] or ""))
        try:
            config.full_clean(exclude=["tenant", "updated_by"])
        except ValidationError as exc:
            raise ApplicationError("Invalid settings.", fields=exc.message_dict) from None
        config.updated_by = by if by is not None and by.is_authenticated else None
        config.save()
    audit_record(tenant=tenant, actor=by, action="channels.settings_update", obj=config,
                 data={"fields": sorted(changes)})
    return config


def _test_key() -> str:
    return str(uuid.uuid4())


def channel_test_email(*, tenant: Tenant, by: User | None, to: str) -> dict[str, Any]:
    """Send a test e-mail with the saved SMTP settings; raises SendFailed with the reason."""
    config = channel_settings_get(tenant=tenant)
    key = _test_key()
    email = providers.Email(
        to=to, subject=f"Test message from {tenant.name}",
        text=f"This is a test message sent with the SMTP settings of {tenant.name}.",
        html=f"<p>This is a test message sent with the SMTP settings of <b>{_escape(tenant.name)}</b>.</p>",
        message_id=f"{key}@{config.message_id_domain}",
    )
    try:
        with providers.SmtpSender(config) as smtp:
            result = smtp.send(email)
    except providers.ProviderError as exc:
        raise SendFailed(str(exc)) from None
    return _test_outcome(tenant, by, "email", result, message_id=f"<{email.message_id}>")


def channel_test_webhook(*, tenant: Tenant, by: User | None, channel: str, to: str) -> dict[str, Any]:
    """Send a test SMS (to a phone number) or push (to a device token) through the webhook."""
    config = channel_settings_get(tenant=tenant)
    key = _test_key()
    if channel == "sms":
        url, secret = config.sms_webhook_url, config.sms_webhook_secret_encrypted
        payload = {"type": "sms", "test": True, "message_id": key, "to": to, "from": config.sms_sender,
                   "text": f"Test message from {tenant.name}.", "segments": 1}
    else:
        url, secret = config.push_webhook_url, config.push_webhook_secret_encrypted
        payload = {"type": "push", "test": True, "message_id": key, "tokens": [to],
                   "title": f"Test from {tenant.name}", "body": "This is a test notification.", "data": {}}
    try:
        with providers.WebhookSender(url, secret, channel=channel) as sender:
            result = sender.post(payload, key)
    except providers.ProviderError as exc:
        raise SendFailed(str(exc)) from None
    return _test_outcome(tenant, by, channel, result, message_id=key)


def _test_outcome(tenant: Tenant, by: User | None, channel: str, result: providers.Result,
                  message_id: str) -> dict[str, Any]:
    audit_record(tenant=tenant, actor=by, action="channels.test_send", object_type="channels.channelsettings",
                 data={"channel": channel, "outcome": result.outcome})
    if not result.is_sent:
        raise SendFailed(f"The provider did not accept the message: {result.detail}")
    return {"sent": True, "channel": channel, "message_id": message_id}


def _escape(text: str) -> str:
    from html import escape

    return escape(text)
