"""The dashboard shows the tenant's real figures and nothing of other tenants."""

from __future__ import annotations

import re

import pytest
from django.test import RequestFactory
from django.urls import reverse

from apps.portal import dashboard
from apps.tenants.services import member_create, member_update, tenant_update
from tests.factories import MembershipFactory


def _role_count(html: str, role: str) -> int:
    match = re.search(rf'data-role="{role}">.*?<span class="bars__value">(\d+)</span>', html, re.S)
    assert match, f"no row for {role}"
    return int(match.group(1))


def _active_members(html: str) -> int:
    return int(re.search(r'data-testid="active-members">(\d+)<', html).group(1))


def test_dashboard_shows_members_by_role(acme, globex, people, portal):
    MembershipFactory(tenant=acme, role="marketer")
    MembershipFactory(tenant=acme, role="marketer")
    MembershipFactory(tenant=acme, role="viewer", is_active=False)  # deactivated: not counted
    MembershipFactory(tenant=globex, role="marketer")  # another tenant: not counted
    html = portal("acme", "viewer").get(reverse("portal:dashboard")).content.decode()
    assert _active_members(html) == 6
    assert _role_count(html, "marketer") == 3
    assert _role_count(html, "admin") == 1
    assert _role_count(html, "approver") == 1
    assert _role_count(html, "viewer") == 1


def test_dashboard_shows_time_zone_and_retention(acme, people, portal):
    acme.data_retention_days = 45
    acme.save()
    html = portal("acme", "marketer").get(reverse("portal:dashboard")).content.decode()
    assert 'data-testid="tenant-time-zone">Europe/Paris<' in html
    assert 'data-testid="tenant-retention">45 days<' in html
    globex_html = portal("globex", "marketer").get(reverse("portal:dashboard")).content.decode()
    assert 'data-testid="tenant-time-zone">America/New_York<' in globex_html


def test_dashboard_shows_recent_activity_of_its_tenant_only(acme, globex, people, portal):
    admin = people["acme"]["admin"].user
    membership, _ = member_create(tenant=acme, email="newbie@acme.test", role="marketer", by=admin)
    member_update(tenant=acme, membership=membership, by=admin, role="approver")
    tenant_update(tenant=acme, by=admin, time_zone="Europe/Berlin")
    member_create(tenant=globex, email="secret-hire@globex.test", role="viewer", by=people["globex"]["admin"].user)

    html = portal("acme", "approver").get(reverse("portal:dashboard")).content.decode()
    assert "added newbie@acme.test as Marketer" in html
    assert "changed the role of newbie@acme.test to Approver" in html
    assert "changed the workspace time zone" in html
    assert "secret-hire@globex.test" not in html


def test_dashboard_has_manage_link_for_admins_only(people, portal):
    users_url = reverse("portal:user-list")
    assert f'href="{users_url}"' in portal("acme", "admin").get(reverse("portal:dashboard")).content.decode()
    assert f'href="{users_url}"' not in portal("acme", "marketer").get(reverse("portal:dashboard")).content.decode()


def test_access_card_lists_what_the_role_allows(people, portal):
    approver = portal("acme", "approver").get(reverse("portal:dashboard")).content.decode()
    assert "Approve or reject tasks" in approver
    assert "Build and edit campaigns" not in approver
    viewer = portal("acme", "viewer").get(reverse("portal:dashboard")).content.decode()
    assert "your role is read-only" in viewer


def test_card_registry(monkeypatch, people):
    monkeypatch.setattr(dashboard, "_builders", dict(dashboard._builders))

    @dashboard.dashboard_card("hidden", order=1)
    def hidden(request):
        return None

    @dashboard.dashboard_card("first", order=0)
    def first(request):
        return dashboard.Card(title="First", template="portal/cards/team.html")

    with pytest.raises(ValueError, match="already registered"):
        dashboard.dashboard_card("first", order=5)(first)

    request = RequestFactory().get("/")
    request.tenant = people["acme"]["admin"].tenant
    request.membership = type("M", (), {"role": "viewer"})()
    from apps.tenants.scoping import tenant_scope

    with tenant_scope(request.tenant):
        cards = dashboard.dashboard_cards(request)
    keys = [card.key for card in cards]
    assert keys[0] == "first"
    assert "hidden" not in keys
    assert keys[-1] == "activity"
