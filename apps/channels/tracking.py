"""Tracking and consent links of a message: a signed open pixel, signed click redirects, a signed
unsubscribe page with RFC 8058 one-click `List-Unsubscribe` headers; and what they record (each
event once per message, kind and link), plus signed delivery-status callbacks of the SMS/push
providers and hard bounces, which suppress the address.

Links carry a token signed with SECRET_KEY (django.core.signing) naming the tenant and the
message: nobody can forge one for another message, and a link reveals nothing but an id."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from apps.channels.models import EventKind, Message, MessageEvent, Suppression
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

SALTS = {"open": "channels.track.open", "click": "channels.track.click", "unsubscribe": "channels.unsubscribe"}
HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'\s>]+)\2""", re.I)


class BadToken(Exception):
    pass


def public_url(path: str) -> str:
    return settings.CHANNELS_PUBLIC_URL.rstrip("/") + path


def sign(kind: str, *, tenant_id: int, message_id: int, link: str = "") -> str:
    payload: dict[str, Any] = {"t": tenant_id, "m": message_id}
    if link:
        payload["u"] = link
    return signing.dumps(payload, salt=SALTS[kind], compress=True)


def unsign(kind: str, token: str) -> dict[str, Any]:
    try:
        payload = signing.loads(token, salt=SALTS[kind])
    except signing.BadSignature:
        raise BadToken("invalid link") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), int) or not isinstance(payload.get("m"), int):
        raise BadToken("invalid link")
    return payload


def links_for(*, tenant_id: int, message_id: int) -> dict[str, str]:
    """The message's own links, offered to templates as `message.*`."""
    unsubscribe = sign("unsubscribe", tenant_id=tenant_id, message_id=message_id)
    return {"unsubscribe_url": public_url(reverse("channels:unsubscribe", args=[unsubscribe]))}


def instrument_email(html: str, *, tenant_id: int, message_id: int, unsubscribe_url: str) -> tuple[str, dict[str, str]]:
    """Rewrite the HTML's http(s) links into signed click redirects, add the open pixel, and
    return the List-Unsubscribe headers (RFC 2369 + RFC 8058 one-click)."""
    headers = {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    if not html:
        return html, headers

    def rewrite(match: re.Match[str]) -> str:
        link = match.group(3).replace("&amp;", "&")
        if link == unsubscribe_url:
            return match.group(0)
        token = sign("click", tenant_id=tenant_id, message_id=message_id, link=link)
        return f"{match.group(1)}{match.group(2)}{public_url(reverse('channels:click', args=[token]))}{match.group(2)}"

    html = HREF.sub(rewrite, html)
    pixel_token = sign("open", tenant_id=tenant_id, message_id=message_id)
    pixel = (f'<img src="{public_url(reverse("channels:open", args=[pixel_token]))}" width="1" height="1" alt="" '
             'style="display:none">')
    closing = re.search(r"</body\s*>", html, re.I)
    html = html[: closing.start()] + pixel + html[closing.start():] if closing else html + pixel
    return html, headers


def _message(payload: dict[str, Any]) -> tuple[Tenant, Message] | None:
    tenant = Tenant.objects.filter(pk=payload["t"], is_active=True).first()
    if tenant is None:
        return None
    with tenant_scope(tenant):
        message = Message.objects.filter(pk=payload["m"]).first()
    return (tenant, message) if message is not None else None


def event_record(*, tenant: Tenant, message: Message, kind: str, link: str = "", detail: str = "") -> bool:
    """Record the event once; returns whether it was new."""
    try:
        with transaction.atomic(), tenant_scope(tenant):
            MessageEvent.objects.create(tenant=tenant, message=message, kind=kind, link=link[:2000],
                                        detail=detail[:500])
        return True
    except IntegrityError:
        return False


def track_open(token: str) -> None:
    found = _message(unsign("open", token))
    if found:
        event_record(tenant=found[0], message=found[1], kind=EventKind.OPEN)


def track_click(token: str) -> str:
    """Record the click; returns where to send the reader (the signed link, http(s) only)."""
    payload = unsign("click", token)
    link = str(payload.get("u") or "")
    if urlsplit(link).scheme not in ("http", "https"):
        raise BadToken("invalid link")
    found = _message(payload)
    if found:
        event_record(tenant=found[0], message=found[1], kind=EventKind.CLICK, link=link)
    return link


def unsubscribe_target(token: str) -> tuple[Tenant, Message]:
    found = _message(unsign("unsubscribe", token))
    if found is None:
        raise BadToken("invalid link")
    return found


@transaction.atomic
def unsubscribe(token: str, *, source: str) -> Tenant:
    """Opt the recipient out of the message's channel (the profile's consent flag and history)."""
    from apps.channels.models import Delivery
    from apps.profiles import selectors as profile_selectors
    from apps.profiles import services as profile_services
    from apps.profiles.models import CONSENT_FIELDS

    tenant, message = unsubscribe_target(token)
    with tenant_scope(tenant):
        delivery = Delivery.objects.get(pk=message.delivery_id)
    if delivery.dimension == "profile" and delivery.channel in CONSENT_FIELDS:
        profile = profile_selectors.profile_get(tenant=tenant, key=message.recipient_key)
        profile_services.profile_consent_set(tenant=tenant, profile=profile, channel=delivery.channel, opted_in=False,
                                             source=source, by=None)
    event_record(tenant=tenant, message=message, kind=EventKind.UNSUBSCRIBE)
    return tenant


def suppress(*, tenant: Tenant, channel: str, addresses: list[tuple[str, str]]) -> None:
    """Hard bounces: these addresses get no message any more (excluded as `suppressed`)."""
    with tenant_scope(tenant):
        Suppression.objects.bulk_create(
            [Suppression(tenant=tenant, channel=channel, address=address.lower(), detail=detail[:500])
             for address, detail in addresses], ignore_conflicts=True)


def status_callback(*, tenant: Tenant, channel: str, body: bytes, timestamp: str, signature: str) -> bool:
    """A provider's delivery report for an SMS or push message, signed with the channel's webhook
    secret: `{"message_id": <idempotency key>, "status": "delivered" | "undelivered", "error": ...}`.
    Returns whether the report named a message of this tenant."""
    import json

    from apps.channels import encryption, providers
    from apps.channels.selectors import channel_settings_get

    config = channel_settings_get(tenant=tenant)
    secret = encryption.decrypt(config.sms_webhook_secret_encrypted if channel == "sms"
                                else config.push_webhook_secret_encrypted)
    if not secret or not providers.verify_signature(secret, timestamp, body, signature):
        raise BadToken("bad signature")
    try:
        report = json.loads(body)
        key, status = str(report["message_id"]), report["status"]
    except (ValueError, KeyError, TypeError):
        raise BadToken("malformed report") from None
    if status not in ("delivered", "undelivered"):
        raise BadToken("unknown status")
    with tenant_scope(tenant):
        message = Message.objects.filter(idempotency_key=_uuid(key), delivery__channel=channel).first()
    if message is None:
        return False
    event_record(tenant=tenant, message=message, kind=status, detail=str(report.get("error") or ""))
    return True


def _uuid(value: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadToken("malformed report") from None
