"""The tenant switcher: a member of several tenants moves between them; nobody reaches a tenant
they are not an active member of."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from apps.tenants.middleware import SESSION_KEY
from apps.tenants.models import Tenant
from tests.factories import MembershipFactory, TenantFactory


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _current_tenant(client: Client) -> str:
    html = client.get(reverse("portal:dashboard")).content.decode()
    start = html.index('data-testid="current-tenant">') + len('data-testid="current-tenant">')
    return html[start:html.index("<", start)]


def test_switcher_lists_every_tenant_of_the_user(two_tenant_person, acme, globex):
    html = _client(two_tenant_person.user).get(reverse("portal:dashboard")).content.decode()
    assert f'name="tenant_id" value="{acme.pk}"' in html
    assert f'name="tenant_id" value="{globex.pk}"' in html


def test_switch_tenant(two_tenant_person, acme, globex):
    client = _client(two_tenant_person.user)
    assert _current_tenant(client) == "Acme Corporation"
    response = client.post(reverse("portal:switch-tenant"), {"tenant_id": globex.pk})
    assert response.status_code == 302
    assert response.url == reverse("portal:dashboard")
    assert client.session[SESSION_KEY] == globex.pk
    assert "You are now working in Globex Inc." in client.get(response.url).content.decode()
    assert _current_tenant(client) == "Globex Inc."
    # The role follows the tenant: marketer in acme, approver in globex.
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert '<span class="usermenu__role">Approver</span>' in html
    client.post(reverse("portal:switch-tenant"), {"tenant_id": acme.pk})
    assert _current_tenant(client) == "Acme Corporation"


def test_switch_to_a_tenant_without_membership_is_404(people, acme, globex):
    client = _client(people["acme"]["admin"].user)
    client.get(reverse("portal:dashboard"))
    response = client.post(reverse("portal:switch-tenant"), {"tenant_id": globex.pk})
    assert response.status_code == 404
    assert client.session[SESSION_KEY] == acme.pk
    assert _current_tenant(client) == "Acme Corporation"


def test_switch_to_unknown_or_garbage_tenant_is_404(people):
    client = _client(people["acme"]["admin"].user)
    assert client.post(reverse("portal:switch-tenant"), {"tenant_id": 999999}).status_code == 404
    assert client.post(reverse("portal:switch-tenant"), {"tenant_id": "acme"}).status_code == 404
    assert client.post(reverse("portal:switch-tenant"), {}).status_code == 404


def test_switch_to_inactive_membership_or_tenant_is_404(two_tenant_person, globex):
    from apps.tenants.models import Membership

    Membership.dangerously_unscoped.filter(tenant=globex, user=two_tenant_person.user).update(is_active=False)
    client = _client(two_tenant_person.user)
    assert client.post(reverse("portal:switch-tenant"), {"tenant_id": globex.pk}).status_code == 404

    closed = TenantFactory(slug="closed", name="Closed Ltd")
    MembershipFactory(tenant=closed, user=two_tenant_person.user, role="admin")
    Tenant.objects.filter(pk=closed.pk).update(is_active=False)
    assert client.post(reverse("portal:switch-tenant"), {"tenant_id": closed.pk}).status_code == 404


def test_switch_requires_post_and_login(two_tenant_person, globex):
    assert _client(two_tenant_person.user).get(reverse("portal:switch-tenant")).status_code == 405
    response = Client().post(reverse("portal:switch-tenant"), {"tenant_id": globex.pk})
    assert response.status_code == 302
    assert response.url.startswith(reverse("portal:login"))
