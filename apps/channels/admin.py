from django.contrib import admin

from apps.channels.models import ChannelSettings
from apps.core.admin_site import TenantOwnedAdmin


@admin.register(ChannelSettings)
class ChannelSettingsAdmin(TenantOwnedAdmin):
    """Secrets are set through the API (encrypted there); the admin never shows them."""

    list_display = ["tenant", "smtp_host", "from_email", "send_rate_per_second", "pressure_max_per_day",
                    "pressure_max_per_week", "updated_at"]
    exclude = ["smtp_password_encrypted", "sms_webhook_secret_encrypted", "push_webhook_secret_encrypted"]
    readonly_fields = ["updated_at", "updated_by"]
