"""Channels: the tenant's channel settings, providers (SMTP, webhooks, files), deliveries and
their per-recipient message ledger, personalization, and the send machinery channel
activities use."""

from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "apps.channels"
    label = "channels"
    verbose_name = "Channels and deliveries"

    def ready(self) -> None:
        from apps.channels import receivers  # noqa: F401
