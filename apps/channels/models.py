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
