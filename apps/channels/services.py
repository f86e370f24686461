"""State changes of the channels app: settings, test sends, proofs, deliveries."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.channels import content as content_module
from apps.channels import encryption, personalization, providers, selectors
from apps.channels.models import ChannelSettings, Delivery, DeliveryStatus, Message, MessageStatus
from apps.channels.selectors import channel_settings_get
from apps.core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from apps.schemas import selectors as schema_selectors
from apps.tenants.models import Membership, Tenant, User
from apps.tenants.roles import role_can
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
        rendered: dict[str, Any] = {"text": f"Test message from {tenant.name}.", "segments": 1}
    else:
        url, secret = config.push_webhook_url, config.push_webhook_secret_encrypted
        rendered = {"title": f"Test from {tenant.name}", "body": "This is a test notification.", "deep_link": "",
                    "data": {}}
    payload = providers.webhook_payload(channel, rendered, to=to, message_id=key, sender=config.sms_sender, is_proof=True)
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


# Content: preview and proofs ---------------------------------------------------------------------

def _ensure_valid_content(*, tenant: Tenant, channel: str, content: Any, schema: str) -> None:
    problems = selectors.content_problems(tenant=tenant, channel=channel, content=content, schema=schema)
    if problems:
        fields: dict[str, list[str]] = {}
        for problem in problems:
            where = f"line {problem['line']}: " if problem["line"] else ""
            fields.setdefault(f"content.{problem['path']}" if problem["path"] else "content", []).append(
                where + problem["message"])
        raise ApplicationError("The content has errors.", code="invalid_content", fields=fields)


def content_render_for(*, tenant: Tenant, channel: str, content: dict[str, Any], schema: str = "profile",
                       key: str, variables: dict[str, Any] | None = None, row: dict[str, Any] | None = None,
                       campaign: str = "") -> dict[str, Any]:
    """The message `content` gives for record `key` of `schema` (preview; proofs send it)."""
    _ensure_valid_content(tenant=tenant, channel=channel, content=content, schema=schema)
    data_schema = schema_selectors.schema_get(tenant=tenant, name=schema)
    try:
        record = schema_selectors.record_get(tenant=tenant, schema=data_schema, key=str(key))
    except NotFound:
        raise ApplicationError("No such record.", fields={"key": [f"{schema} has no record {key!r}."]}) from None
    context = personalization.message_context(
        record=record.attributes, dimension=schema, row=row, variables=variables, campaign=campaign,
        message={"id": "preview", "unsubscribe_url": "#unsubscribe-preview"})
    try:
        return content_module.render_content(channel, content, context)
    except personalization.RenderError as exc:
        raise ApplicationError(f"The content cannot be rendered for this record: {exc}", code="render_failed",
                               fields={"content": [str(exc)]}) from None


def content_proof_send(*, tenant: Tenant, by: User | None, channel: str, content: dict[str, Any],
                       schema: str = "profile", key: str, to: list[str], variables: dict[str, Any] | None = None,
                       row: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send the message rendered for record `key` to test addresses (phone numbers, device
    tokens), marked as a proof. Nothing is written to any delivery."""
    if channel not in ("email", "sms", "push"):
        raise ApplicationError("Proofs are sent by e-mail, SMS or push.", fields={"channel": ["Not a sending channel."]})
    rendered = content_render_for(tenant=tenant, channel=channel, content=content, schema=schema, key=key,
                                  variables=variables, row=row)
    config = channel_settings_get(tenant=tenant)
    results = []
    try:
        if channel == "email":
            with providers.SmtpSender(config) as smtp:
                for address in to:
                    message_id = f"proof-{uuid.uuid4()}@{config.message_id_domain}"
                    result = smtp.send(providers.Email(to=address, subject=f"[Proof] {rendered['subject']}",
                                                       html=rendered["html"], text=rendered["text"],
                                                       message_id=message_id))
                    results.append({"to": address, "sent": result.is_sent, "detail": result.detail})
        else:
            url, secret = ((config.sms_webhook_url, config.sms_webhook_secret_encrypted) if channel == "sms"
                           else (config.push_webhook_url, config.push_webhook_secret_encrypted))
            with providers.WebhookSender(url, secret, channel=channel) as sender:
                for address in to:
                    key_ = str(uuid.uuid4())
                    payload = providers.webhook_payload(channel, rendered, to=address, message_id=key_, sender=config.sms_sender,
                                              is_proof=True)
                    result = sender.post(payload, key_)
                    results.append({"to": address, "sent": result.is_sent, "detail": result.detail})
    except providers.ProviderError as exc:
        raise SendFailed(str(exc)) from None
    audit_record(tenant=tenant, actor=by, action="channels.proof_send", object_type="channels.content",
                 data={"channel": channel, "recipients": len(to), "sent": sum(r["sent"] for r in results)})
    return {"rendered": rendered, "results": results}


# Send confirmation of one-off campaigns -----------------------------------------------------------

CONFIRM_CAPABILITY = "campaigns.run"


def _require(tenant: Tenant, by: User | None, capability: str) -> None:
    if by is None:  # the system acts with full rights
        return
    membership = Membership.objects.filter(tenant=tenant, user=by, is_active=True).first()
    if membership is None or not role_can(membership.role, capability):
        raise PermissionDenied()


def _awaiting(tenant: Tenant, delivery: Delivery) -> Delivery:
    """The delivery's row, locked, if it still waits for confirmation and its run can still go
    on; else 409.

    Lock order: the run first, then the delivery (then the node's state, and the run-log row
    that references the run). Stopping a run takes the same order (the run, its node states,
    then, in `apps.channels.receivers`, its deliveries), so a decision and a Stop at the same
    moment queue behind each other on the run's row instead of deadlocking."""
    from apps.campaigns.models import Run, RunStatus

    with tenant_scope(tenant):
        run = Run.objects.select_for_update().filter(tenant=tenant, pk=delivery.run_id).first()
        locked = Delivery.objects.select_for_update().filter(tenant=tenant, pk=delivery.pk).first()
    if run is None or locked is None:
        raise NotFound("No such delivery.")
    if locked.status != DeliveryStatus.AWAITING_CONFIRMATION:
        raise Conflict(f"The delivery is not waiting for confirmation (it is {locked.get_status_display().lower()}).",
                       code="not_awaiting_confirmation")
    # Its waiting node can still go on (a paused or suspended run sends on resume / retry); an
    # ended run's node never will.
    if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.SUSPENDED):
        raise Conflict(f"The run is {run.get_status_display().lower()}: its delivery can no longer be decided.",
                       code="run_not_active")
    return locked


def _decided(delivery: Delivery, *, status: str, by: User | None) -> None:
    delivery.status = status
    delivery.decided_by = by if by is not None and by.is_authenticated else None
    delivery.decided_at = timezone.now()
    fields = ["status", "decided_by", "decided_at"]
    if status == DeliveryStatus.CANCELLED:
        delivery.finished_at = delivery.decided_at
        fields.append("finished_at")
    delivery.save(update_fields=fields)


def _run_log(delivery: Delivery, message: str) -> None:
    from apps.campaigns import engine
    from apps.campaigns.models import Run

    run = Run.objects.filter(pk=delivery.run_id).only("id", "tenant_id").first()
    if run is not None:
        engine.log(run, message, node_id=delivery.node_id, delivery=delivery.pk)


@transaction.atomic
def delivery_confirm(*, tenant: Tenant, delivery: Delivery, by: User | None) -> Delivery:
    """Confirm a prepared delivery that waits for confirmation: it starts sending (its node wakes
    and sends senders). 409 when it does not wait (any more)."""
    from apps.channels import sending

    with tenant_scope(tenant):
        _require(tenant, by, CONFIRM_CAPABILITY)
        delivery = _awaiting(tenant, delivery)
        counts = sending.delivery_counts(delivery)
        _decided(delivery, status=DeliveryStatus.SENDING, by=by)
        who = by.email if by is not None and by.is_authenticated else "the system"
        _run_log(delivery, f"Delivery {delivery.pk} confirmed by {who}: {counts['pending']} to send.")
        audit_record(tenant=tenant, actor=by, action="delivery.confirm", obj=delivery,
                     data={"run": delivery.run_id, "node": delivery.node_id, "to_send": counts["pending"],
                           "excluded": counts["excluded"]})
        sending._wake_node(delivery)
    return delivery


@transaction.atomic
def delivery_cancel(*, tenant: Tenant, delivery: Delivery, by: User | None) -> Delivery:
    """Cancel a prepared delivery that waits for confirmation: its pending messages become
    `cancelled`, nothing is sent, and its node finishes as for a stopped delivery (ports `sent`
    and `failed` empty, `excluded` with the excluded and cancelled recipients)."""
    from apps.channels import sending

    with tenant_scope(tenant):
        _require(tenant, by, CONFIRM_CAPABILITY)
        delivery = _awaiting(tenant, delivery)
        cancelled = _cancel_pending(tenant, delivery)
        _decided(delivery, status=DeliveryStatus.CANCELLED, by=by)
        who = by.email if by is not None and by.is_authenticated else "the system"
        _run_log(delivery, f"Delivery {delivery.pk} cancelled by {who}: nothing is sent ({cancelled} cancelled).")
        audit_record(tenant=tenant, actor=by, action="delivery.cancel", obj=delivery,
                     data={"run": delivery.run_id, "node": delivery.node_id, "cancelled": cancelled})
        sending._wake_node(delivery)
    return delivery


def _cancel_pending(tenant: Tenant, delivery: Delivery) -> int:
    with tenant_scope(tenant):
        return Message.objects.filter(tenant=tenant, delivery=delivery, status=MessageStatus.PENDING).update(
            status=MessageStatus.CANCELLED)


def deliveries_cancel_for_run(*, run: Any) -> int:
    """The run ended (stopped, failed, completed): its deliveries still waiting for confirmation
    are cancelled, so none of them can be confirmed (and sent) later; and its deliveries still
    `sending` are cancelled as a sender cancels itself when it finds the run ended
    (`sending._cancel`), since no node will send a sender for them again (a delivery confirmed
    just before the run was stopped would otherwise stay `sending` with its messages pending).

    Runs in the transaction that ends the run, which holds the run's row (lock order: run, then
    delivery). Rows of a `sending` delivery that a live sender holds (status `sending` under an
    unexpired lease) are left to that sender: it records their outcomes, then finds the run
    ended before its next batch and cancels what is left. Only `pending` rows and rows of a
    lapsed lease are cancelled here, so an outcome a provider already accepted is never
    overwritten. Returns the number of deliveries cancelled; a second call finds none."""
    from apps.channels import sending

    with tenant_scope(run.tenant), transaction.atomic():
        deliveries = list(Delivery.objects.select_for_update().filter(
            tenant_id=run.tenant_id, run_id=run.pk,
            status__in=[DeliveryStatus.AWAITING_CONFIRMATION, DeliveryStatus.SENDING]).order_by("pk"))
        for delivery in deliveries:
            if delivery.status == DeliveryStatus.AWAITING_CONFIRMATION:
                cancelled = _cancel_pending(run.tenant, delivery)
                _decided(delivery, status=DeliveryStatus.CANCELLED, by=None)
            else:
                cancelled = _cancel_unleased(run.tenant, delivery)
                delivery.status = DeliveryStatus.CANCELLED
                delivery.finished_at = timezone.now()
                delivery.save(update_fields=["status", "finished_at"])
            # Its node is cancelled and will not write the final counts: they are written here
            # (a live sender's last outcomes are not in them).
            delivery.counts = sending.delivery_counts(delivery)
            delivery.save(update_fields=["counts"])
            audit_record(tenant=run.tenant, actor=None, action="delivery.cancel", obj=delivery,
                         data={"run": run.pk, "node": delivery.node_id, "cancelled": cancelled,
                               "run_status": run.status})
    return len(deliveries)


def dangerously_close_abandoned_deliveries() -> int:
    """Nightly, across tenants: messages of cancelled deliveries left `sending` under a lease that
    has lapsed (their sender was killed between the run's end, which left them to it, and its
    next batch) become `cancelled`, and their deliveries' stored counts are written again.
    Returns the number of messages closed."""
    from apps.channels import sending

    abandoned = (Delivery.dangerously_unscoped.filter(status=DeliveryStatus.CANCELLED)
                 .filter(pk__in=Message.dangerously_unscoped.filter(status=MessageStatus.SENDING)
                         .filter(Q(lease_expires_at__lt=Now()) | Q(lease_expires_at__isnull=True))
                         .values("delivery_id"))
                 .select_related("tenant"))
    closed = 0
    for delivery in abandoned:
        with tenant_scope(delivery.tenant), transaction.atomic():
            delivery = Delivery.objects.select_for_update().get(tenant=delivery.tenant, pk=delivery.pk)
            closed += _cancel_unleased(delivery.tenant, delivery)
            delivery.counts = sending.delivery_counts(delivery)
            delivery.save(update_fields=["counts"])
    return closed


def _cancel_unleased(tenant: Tenant, delivery: Delivery) -> int:
    """A sending delivery's messages no sender holds (pending, or leased by a sender that died)
    become `cancelled`."""
    with tenant_scope(tenant):
        return Message.objects.filter(tenant=tenant, delivery=delivery).filter(
            Q(status=MessageStatus.PENDING)
            | Q(status=MessageStatus.SENDING, lease_expires_at__lt=Now())
            | Q(status=MessageStatus.SENDING, lease_expires_at__isnull=True)).update(
            status=MessageStatus.CANCELLED, lease_owner="", lease_expires_at=None)
