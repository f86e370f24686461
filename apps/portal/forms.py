"""Forms of the portal pages. They parse and check input shape only; business rules stay in the
services, whose `ApplicationError`s `add_application_error` turns into form errors."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from apps.core.errors import ApplicationError
from apps.tenants.roles import Role

LEGACY_ZONE_PREFIXES = ("Etc/", "SystemV/", "US/", "posix/", "right/", "Canada/", "Brazil/", "Mexico/", "Chile/")


def add_application_error(form: forms.Form, exc: ApplicationError) -> None:
    """Show a service's refusal on `form`: errors on fields the form has go to those fields, the
    rest (and the message itself when no field is named) to the form as a whole."""
    placed = False
    for field, messages in (exc.fields or {}).items():
        messages = messages if isinstance(messages, list | tuple) else [messages]
        if field in form.fields:
            for message in messages:
                form.add_error(field, str(message))
            placed = True
        else:
            for message in messages:
                form.add_error(None, str(message))
    if not placed:
        form.add_error(None, exc.message)


def _utc_offset(zone: str, now: datetime) -> str:
    offset = now.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def time_zone_choices(current: str | None = None) -> list[tuple[str, list[tuple[str, str]]] | tuple[str, str]]:
    """IANA time zones grouped by region, each labelled with its current UTC offset. Legacy
    aliases are left out, except the one the workspace already uses."""
    now = datetime.now(zoneinfo.ZoneInfo("UTC"))
    zones = {z for z in zoneinfo.available_timezones()
             if "/" in z and not z.startswith(LEGACY_ZONE_PREFIXES)}
    if current and current != "UTC":
        zones.add(current)
    groups: dict[str, list[tuple[str, str]]] = {}
    for zone in sorted(zones):
        region = zone.partition("/")[0]
        groups.setdefault(region, []).append((zone, f"{zone.replace('_', ' ')} ({_utc_offset(zone, now)})"))
    return [("UTC", "UTC (UTC+00:00)"), *sorted(groups.items())]


class LoginForm(AuthenticationForm):
    username = forms.CharField(
        label="Email", max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username", "inputmode": "email",
                                      "spellcheck": "false", "autocapitalize": "none"}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account. Check them and try again.",
    }


class SwitchTenantForm(forms.Form):
    tenant_id = forms.IntegerField(min_value=1)


class TenantSettingsForm(forms.Form):
    name = forms.CharField(label="Workspace name", max_length=200)
    time_zone = forms.ChoiceField(
        label="Time zone",
        help_text="Schedules, send windows and every date in the portal use this time zone.",
    )
    data_retention_days = forms.IntegerField(
        label="Keep working data for", min_value=1, max_value=36500,
        help_text="Days that campaign populations and run details are kept before they are purged.",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )

    def __init__(self, *args, current_time_zone: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices(current_time_zone)


class MemberAddForm(forms.Form):
    email = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MARKETER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class MemberFilterForm(forms.Form):
    STATUS_CHOICES = [("", "Any status"), ("active", "Active"), ("inactive", "Deactivated")]

    search = forms.CharField(label="Search", required=False, max_length=200,
                             widget=forms.SearchInput(attrs={"placeholder": "Name or email"}))
    role = forms.ChoiceField(label="Role", required=False, choices=[("", "Any role"), *Role.choices])
    status = forms.ChoiceField(label="Status", required=False, choices=STATUS_CHOICES)

    def filters(self) -> dict:
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {
            "search": data.get("search") or None,
            "role": data.get("role") or None,
            "is_active": {"active": True, "inactive": False}.get(data.get("status") or ""),
        }
