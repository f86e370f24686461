from django.contrib import admin

from apps.channels.models import ChannelSettings, Delivery, Suppression
from apps.core.admin_site import TenantOwnedAdmin


@admin.register(ChannelSettings)
class ChannelSettingsAdmin(TenantOwnedAdmin):
    """Secrets are set through the API (encrypted there); the admin never shows them."""

    list_display = ["tenant", "smtp_host", "from_email", "send_rate_per_second", "pressure_max_per_day",
                    "pressure_max_per_week", "updated_at"]
    exclude = ["smtp_password_encrypted", "sms_webhook_secret_encrypted", "push_webhook_secret_encrypted"]
    readonly_fields = ["updated_at", "updated_by"]


@admin.register(Delivery)
class DeliveryAdmin(TenantOwnedAdmin):
    """Deliveries are written by the engine: read here, never edited."""

    list_display = ["id", "campaign", "run", "node_id", "channel", "status", "targeted", "created_at", "tenant"]
    list_filter = ["channel", "status"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Suppression)
class SuppressionAdmin(TenantOwnedAdmin):
    """Suppressed addresses (hard bounces); deleting one lets messages go to it again."""

    list_display = ["address", "channel", "reason", "created_at", "tenant"]
    list_filter = ["channel", "reason"]
    search_fields = ["address"]
    readonly_fields = ["channel", "address", "reason", "detail", "created_at"]

    def has_add_permission(self, request):
        return False
