from django.contrib import admin

from apps.core.admin_site import ReadOnlyTenantOwnedAdmin
from apps.profiles.models import ProfileConsentEvent


@admin.register(ProfileConsentEvent)
class ProfileConsentEventAdmin(ReadOnlyTenantOwnedAdmin):
    """The consent history is evidence: it is read, never edited."""

    list_display = ["profile_key", "channel", "opted_in", "source", "at", "tenant"]
    list_filter = ["channel", "opted_in"]
    search_fields = ["profile_key"]
    readonly_fields = ["profile_key", "channel", "opted_in", "source", "at", "by"]
