"""Workspace settings: readable by every member, editable by tenant admins only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.tenants.models import AuditEntry, Tenant


def test_admin_sees_the_form(people, portal):
    html = portal("acme", "admin").get(reverse("portal:settings")).content.decode()
    assert 'name="time_zone"' in html
    assert '<option value="Europe/Paris" selected>' in html


@pytest.mark.parametrize("role", ["marketer", "approver", "viewer"])
def test_others_see_the_settings_read_only(people, portal, role):
    html = portal("acme", role).get(reverse("portal:settings")).content.decode()
    assert 'data-testid="tenant-name">Acme Corporation<' in html
    assert "Europe/Paris" in html
    assert "30 days" in html
    assert 'name="time_zone"' not in html
    assert "Read-only" in html


def test_admin_edits_the_settings(acme, people, portal):
    client = portal("acme", "admin")
    response = client.post(reverse("portal:settings"), {
        "name": "Acme Europe", "time_zone": "Europe/Berlin", "data_retention_days": 90})
    assert response.status_code == 302
    assert response.url == reverse("portal:settings")
    acme.refresh_from_db()
    assert (acme.name, acme.time_zone, acme.data_retention_days) == ("Acme Europe", "Europe/Berlin", 90)
    entry = AuditEntry.dangerously_unscoped.get(tenant=acme, action="tenant.update")
    assert entry.actor == people["acme"]["admin"].user
    assert "Workspace settings saved." in client.get(response.url).content.decode()


def test_saving_unchanged_settings_writes_nothing(acme, people, portal):
    response = portal("acme", "admin").post(reverse("portal:settings"), {
        "name": acme.name, "time_zone": acme.time_zone, "data_retention_days": acme.data_retention_days},
        follow=True)
    assert "No changes to save." in response.content.decode()
    assert not AuditEntry.dangerously_unscoped.filter(tenant=acme, action="tenant.update").exists()


@pytest.mark.parametrize("data, field", [
    ({"name": "Acme", "time_zone": "Mars/Olympus", "data_retention_days": 30}, "time_zone"),
    ({"name": "Acme", "time_zone": "UTC", "data_retention_days": 0}, "data_retention_days"),
    ({"name": "", "time_zone": "UTC", "data_retention_days": 30}, "name"),
])
def test_invalid_settings_are_form_errors(acme, people, portal, data, field):
    response = portal("acme", "admin").post(reverse("portal:settings"), data)
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    acme.refresh_from_db()
    assert (acme.name, acme.time_zone, acme.data_retention_days) == ("Acme Corporation", "Europe/Paris", 30)


@pytest.mark.parametrize("role", ["viewer", "marketer", "approver"])
def test_non_admins_cannot_change_settings(acme, people, portal, role):
    response = portal("acme", role).post(reverse("portal:settings"), {
        "name": "Hijacked", "time_zone": "UTC", "data_retention_days": 1})
    assert response.status_code == 403
    assert Tenant.objects.get(pk=acme.pk).name == "Acme Corporation"


def test_settings_change_only_the_current_tenant(acme, globex, people, portal):
    portal("globex", "admin").post(reverse("portal:settings"), {
        "name": "Globex Renamed", "time_zone": "UTC", "data_retention_days": 7})
    acme.refresh_from_db()
    globex.refresh_from_db()
    assert acme.name == "Acme Corporation"
    assert globex.name == "Globex Renamed"
