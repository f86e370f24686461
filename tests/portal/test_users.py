"""The users page: tenant admins list, add, re-role, deactivate and reactivate members of their
own tenant; everyone else, and every other tenant's user id, gets a 404."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.tenants.models import AuditEntry, Membership, User
from tests.factories import MembershipFactory, UserFactory


def _membership(tenant, user) -> Membership:
    return Membership.dangerously_unscoped.get(tenant=tenant, user=user)


def test_admin_lists_members_of_their_tenant_only(people, portal):
    response = portal("acme", "admin").get(reverse("portal:user-list"))
    assert response.status_code == 200
    html = response.content.decode()
    for role in ("admin", "marketer", "approver", "viewer"):
        assert f"{role}@acme.test" in html
        assert f"{role}@globex.test" not in html


@pytest.mark.parametrize("role", ["marketer", "approver", "viewer"])
def test_non_admins_get_404(people, portal, role):
    client = portal("acme", role)
    target = people["acme"]["viewer"].user
    assert client.get(reverse("portal:user-list")).status_code == 404
    assert client.post(reverse("portal:user-add"), {"email": "x@acme.test", "role": "viewer"}).status_code == 404
    assert client.post(reverse("portal:user-role", args=[target.pk]), {"role": "admin"}).status_code == 404
    assert client.post(reverse("portal:user-deactivate", args=[target.pk])).status_code == 404
    assert client.post(reverse("portal:user-activate", args=[target.pk])).status_code == 404
    assert not User.objects.filter(email="x@acme.test").exists()


@pytest.mark.parametrize("role", ["marketer", "viewer"])
def test_users_link_hidden_from_non_admins(portal, role):
    html = portal("acme", role).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:user-list") not in html


def test_admin_adds_a_new_member_and_sees_the_password_once(acme, people, portal):
    client = portal("acme", "admin")
    response = client.post(reverse("portal:user-add"), {
        "email": "New.Person@Acme.test", "first_name": "New", "last_name": "Person", "role": "approver",
    })
    assert response.status_code == 302
    assert response.url == reverse("portal:user-list")
    html = client.get(response.url).content.decode()
    assert "new.person@acme.test was added as Approver" in html
    shown = re.search(r'value="([^"]+)" readonly data-testid="generated-password"', html).group(1)
    user = User.objects.get(email="new.person@acme.test")
    assert user.check_password(shown)
    assert _membership(acme, user).role == "approver"
    # Shown once: the next page no longer carries it.
    assert shown not in client.get(reverse("portal:user-list")).content.decode()


def test_adding_someone_with_an_account_keeps_their_password(acme, people, portal):
    outsider = people["globex"]["marketer"].user
    client = portal("acme", "admin")
    response = client.post(reverse("portal:user-add"), {"email": outsider.email, "role": "viewer"}, follow=True)
    html = response.content.decode()
    assert "already had an account" in html
    assert 'data-testid="generated-password"' not in html
    assert _membership(acme, outsider).role == "viewer"


def test_adding_an_existing_member_is_a_form_error(people, portal):
    response = portal("acme", "admin").post(reverse("portal:user-add"), {
        "email": "marketer@acme.test", "role": "viewer"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Already a member." in html
    assert "field--invalid" in html


def test_invalid_add_form(people, portal):
    response = portal("acme", "admin").post(reverse("portal:user-add"), {"email": "not-an-email", "role": "boss"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Select a valid choice." in html


def test_admin_changes_a_role(acme, people, portal):
    target = people["acme"]["viewer"].user
    response = portal("acme", "admin").post(reverse("portal:user-role", args=[target.pk]), {"role": "marketer"})
    assert response.status_code == 302
    assert _membership(acme, target).role == "marketer"
    assert AuditEntry.dangerously_unscoped.filter(tenant=acme, action="member.update").exists()


def test_unknown_role_is_refused(acme, people, portal):
    target = people["acme"]["viewer"].user
    response = portal("acme", "admin").post(reverse("portal:user-role", args=[target.pk]), {"role": "overlord"})
    assert response.status_code == 400
    assert _membership(acme, target).role == "viewer"


def test_admin_deactivates_and_reactivates(acme, people, portal):
    client = portal("acme", "admin")
    target = people["acme"]["marketer"].user
    response = client.post(reverse("portal:user-deactivate", args=[target.pk]), follow=True)
    assert "marketer@acme.test was deactivated" in response.content.decode()
    assert _membership(acme, target).is_active is False
    # The deactivated member has lost the tenant.
    victim = Client()
    victim.force_login(target)
    assert "You are not in a workspace yet" in victim.get(reverse("portal:dashboard")).content.decode()

    client.post(reverse("portal:user-activate", args=[target.pk]))
    assert _membership(acme, target).is_active is True


@pytest.mark.parametrize("url_name", ["portal:user-role", "portal:user-deactivate", "portal:user-activate"])
def test_other_tenants_user_ids_are_404(globex, people, portal, url_name):
    outsider = people["globex"]["marketer"].user
    response = portal("acme", "admin").post(reverse(url_name, args=[outsider.pk]), {"role": "admin"})
    assert response.status_code == 404
    membership = _membership(globex, outsider)
    assert (membership.role, membership.is_active) == ("marketer", True)


def test_unknown_user_id_is_404(people, portal):
    stranger = UserFactory(email="nobody@nowhere.test")
    client = portal("acme", "admin")
    assert client.post(reverse("portal:user-role", args=[stranger.pk]), {"role": "admin"}).status_code == 404
    assert client.post(reverse("portal:user-deactivate", args=[987654321])).status_code == 404


def test_last_admin_cannot_demote_or_deactivate_themselves(acme, people, portal):
    admin = people["acme"]["admin"].user
    client = portal("acme", "admin")
    response = client.post(reverse("portal:user-role", args=[admin.pk]), {"role": "viewer"})
    assert response.status_code == 409
    assert "A tenant must keep at least one active admin." in response.content.decode()
    response = client.post(reverse("portal:user-deactivate", args=[admin.pk]))
    assert response.status_code == 409
    assert "at least one active admin" in response.content.decode()
    membership = _membership(acme, admin)
    assert (membership.role, membership.is_active) == ("admin", True)


def test_admin_who_steps_down_goes_to_the_dashboard(acme, people, portal):
    MembershipFactory(tenant=acme, role="admin")
    admin = people["acme"]["admin"].user
    client = portal("acme", "admin")
    response = client.post(reverse("portal:user-role", args=[admin.pk]), {"role": "marketer"})
    assert response.status_code == 302
    assert response.url == reverse("portal:dashboard")
    assert client.get(reverse("portal:user-list")).status_code == 404


def test_search_and_filters_with_htmx_return_the_table_only(acme, people, portal):
    MembershipFactory(tenant=acme, role="viewer", is_active=False,
                      user=UserFactory(email="gone@acme.test", first_name="Gone"))
    client = portal("acme", "admin")
    response = client.get(reverse("portal:user-list"), {"search": "approver"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="members"' in html
    assert "approver@acme.test" in html
    assert "marketer@acme.test" not in html
    assert "HX-Request" in response["Vary"]

    html = client.get(reverse("portal:user-list"), {"status": "inactive"}).content.decode()
    assert "gone@acme.test" in html
    assert "admin@acme.test" not in html.split('id="members"')[1]

    html = client.get(reverse("portal:user-list"), {"role": "admin"}).content.decode().split('id="members"')[1]
    assert "admin@acme.test" in html
    assert "viewer@acme.test" not in html
