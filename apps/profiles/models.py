"""Profiles are records of the built-in `profile` schema (apps/schemas); this app adds what is
specific to people: the history of their consent per channel, which unsubscribe links and
imports append to and which explains the current opt-in flags."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.tenants.scoping import TenantOwnedModel


class ConsentChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"


# channel -> the profile field holding its current opt-in
CONSENT_FIELDS = {ConsentChannel.EMAIL: "email_opt_in", ConsentChannel.SMS: "sms_opt_in"}


class ProfileConsentEvent(TenantOwnedModel):
    """One change of a profile's consent to be contacted on a channel."""

    profile_key = models.CharField(max_length=255)
    channel = models.CharField(max_length=16, choices=ConsentChannel.choices)
    opted_in = models.BooleanField()
    source = models.CharField(max_length=100, help_text="What recorded it: api, import, unsubscribe link, admin...")
    at = models.DateTimeField(default=timezone.now)
    by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant", "profile_key", "-at"], name="profiles_consent_key_idx")]

    def __str__(self) -> str:
        state = "in" if self.opted_in else "out"
        return f"{self.profile_key} {self.channel} opt-{state}"
