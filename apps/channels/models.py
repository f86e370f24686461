"""Channel settings of a tenant, deliveries (one per channel activity of a run) and the message
ledger: exactly one row per (delivery, recipient), whose idempotency key is what the provider
sees (SMTP Message-ID, webhook `Idempotency-Key`)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.tenants.scoping import TenantOwnedModel

MAX_RATE_PER_SECOND = 2000


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"
    PUSH = "push", "Push"
    FILE = "file", "File export"


class SmtpSecurity(models.TextChoices):
    NONE = "none", "None (plain)"
    STARTTLS = "starttls", "STARTTLS"
    TLS = "tls", "TLS (implicit, SMTPS)"


class ChannelSettings(TenantOwnedModel):
    """One row per tenant. Secrets are stored encrypted (apps/channels/encryption.py) and never
    returned by the API, which only says whether one is set."""

    # E-mail over SMTP
    smtp_host = models.CharField(max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(default=587, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    smtp_security = models.CharField(max_length=16, choices=SmtpSecurity.choices, default=SmtpSecurity.STARTTLS)
    smtp_username = models.CharField(max_length=255, blank=True)
    smtp_password_encrypted = models.TextField(blank=True)
    from_email = models.EmailField(blank=True)
    from_name = models.CharField(max_length=200, blank=True)
    reply_to = models.EmailField(blank=True)
    sending_domain = models.CharField(max_length=253, blank=True,
                                      help_text="Right-hand side of Message-IDs; defaults to the from address's domain.")
    # SMS and push over signed HTTP webhooks
    sms_webhook_url = models.URLField(max_length=500, blank=True)
    sms_webhook_secret_encrypted = models.TextField(blank=True)
    sms_sender = models.CharField(max_length=32, blank=True)
    push_webhook_url = models.URLField(max_length=500, blank=True)
    push_webhook_secret_encrypted = models.TextField(blank=True)
    # Limits
    send_rate_per_second = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Messages per second across all the tenant's deliveries.")
    pressure_max_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most messages one profile receives in 24 hours, all campaigns and channels.")
    pressure_max_per_week = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most messages one profile receives in 7 days, all campaigns and channels.")
    # The tenant-wide send pacing: the time at which the next batch of any delivery may start.
    rate_next_at = models.DateTimeField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant"], name="channels_settings_tenant_key"),
        ]
        verbose_name_plural = "channel settings"

    def __str__(self) -> str:
        return f"channel settings of tenant {self.tenant_id}"

    @property
    def has_smtp_password(self) -> bool:
        return bool(self.smtp_password_encrypted)

    @property
    def has_sms_webhook_secret(self) -> bool:
        return bool(self.sms_webhook_secret_encrypted)

    @property
    def has_push_webhook_secret(self) -> bool:
        return bool(self.push_webhook_secret_encrypted)

    @property
    def message_id_domain(self) -> str:
        if self.sending_domain:
            return self.sending_domain
        if "@" in self.from_email:
            return self.from_email.rsplit("@", 1)[1]
        return "campaigns.invalid"


class DeliveryStatus(models.TextChoices):
    AWAITING_CONFIRMATION = "awaiting_confirmation", "Waiting for confirmation"
    SENDING = "sending", "Sending"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class Delivery(TenantOwnedModel):
    """The sending of one channel activity in one run: its frozen content, pacing and window.
    Recipients and their fate are the Message rows."""

    run = models.ForeignKey("campaigns.Run", on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="+")
    node_id = models.CharField(max_length=64)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    dimension = models.CharField(max_length=63)
    content = models.JSONField()
    variables = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=24, choices=DeliveryStatus.choices, default=DeliveryStatus.SENDING)
    decided_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="Who confirmed or cancelled a delivery that waited for confirmation.")
    decided_at = models.DateTimeField(null=True, blank=True)
    rate_per_second = models.PositiveIntegerField(default=MAX_RATE_PER_SECOND)
    batch_size = models.PositiveIntegerField(default=200)
    window_starts_at = models.DateTimeField(null=True, blank=True)
    window_ends_at = models.DateTimeField(null=True, blank=True)
    next_batch_at = models.DateTimeField(null=True, blank=True, help_text="Pacing: when the next batch may start.")
    sender_seen_at = models.DateTimeField(null=True, blank=True,
                                          help_text="Last sign of life of a sender; null when none is at work.")
    targeted = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="Final counts by status and reason.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "run", "node_id"], name="channels_delivery_run_node_key"),
        ]
        indexes = [models.Index(fields=["tenant", "campaign", "-created_at"], name="channels_delivery_campaign_idx")]
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.channel} delivery {self.pk} of run {self.run_id}"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"       # claimed by a sender (see lease_expires_at)
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    EXCLUDED = "excluded", "Excluded"
    CANCELLED = "cancelled", "Cancelled"


class ExclusionReason(models.TextChoices):
    NO_ADDRESS = "no_address", "No address"
    NO_CONSENT = "no_consent", "No consent (opted out or unsubscribed)"
    PRESSURE = "pressure", "Marketing pressure cap reached"
    SUPPRESSED = "suppressed", "Address suppressed (hard bounce)"
    WINDOW_CLOSED = "window_closed", "Send window closed"


class Message(TenantOwnedModel):
    """Exactly one row per (delivery, recipient), written by one INSERT … SELECT from the
    population. `idempotency_key` is derived from the delivery and the recipient, so a retried
    batch hands the provider the same key again."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="messages", db_index=False)
    recipient_key = models.CharField(max_length=255)
    address = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    reason = models.CharField(max_length=32, blank=True, help_text="Why it was excluded.")
    error = models.TextField(blank=True, help_text="Why the provider did not take it.")
    idempotency_key = models.UUIDField()
    data = models.JSONField(null=True, blank=True, help_text="The population's extra columns for this recipient.")
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "delivery", "recipient_key"],
                                    name="channels_message_recipient_key"),
        ]
        indexes = [
            # Claiming a batch: the delivery's unfinished messages in id order.
            models.Index(fields=["tenant", "delivery", "id"], name="channels_message_todo_idx",
                         condition=models.Q(status__in=["pending", "sending"])),
            # Marketing pressure: a profile's recent messages that count.
            models.Index(fields=["tenant", "recipient_key", "queued_at"], name="channels_message_pressure_idx",
                         condition=models.Q(status__in=["pending", "sending", "sent"])),
            # Provider callbacks name a message by its idempotency key.
            models.Index(fields=["tenant", "idempotency_key"], name="channels_message_key_idx"),
        ]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.recipient_key} {self.status}"


class EventKind(models.TextChoices):
    OPEN = "open", "Opened"
    CLICK = "click", "Clicked"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
    DELIVERED = "delivered", "Delivered (provider callback)"
    UNDELIVERED = "undelivered", "Not delivered (provider callback)"
    BOUNCE = "bounce", "Hard bounce"
    SOFT_BOUNCE = "soft_bounce", "Soft bounce (delayed or temporary failure)"


class MessageEvent(TenantOwnedModel):
    """What happened to a message after it was handed over; recorded once per message, kind and
    link (a second open of the same message is not a new open)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    link = models.TextField(blank=True, help_text="The URL of a click.")
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "message", "kind", "link"], name="channels_event_once_key"),
        ]
        ordering = ["at", "id"]


class Suppression(TenantOwnedModel):
    """An address no message goes to any more (a hard bounce); excluded as `suppressed`."""

    channel = models.CharField(max_length=8, choices=Channel.choices)
    address = models.CharField(max_length=320)
    reason = models.CharField(max_length=32, default="hard_bounce")
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        constraints = [
            *TenantOwnedModel.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "channel", "address"], name="channels_suppression_address_key"),
        ]
