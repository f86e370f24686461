"""Signing in and out, lockout, password change, and what a person without a workspace sees."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse

from apps.tenants.models import Membership
from tests.factories import UserFactory

PORTAL_PAGES = ["portal:dashboard", "portal:campaigns", "portal:audiences", "portal:data", "portal:tasks",
                "portal:settings", "portal:user-list", "portal:password-change"]


def test_login_page_renders_a_labelled_form(db):
    response = Client().get(reverse("portal:login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<label class="field__label" for="id_username">Email' in html
    assert '<label class="field__label" for="id_password">Password' in html
    assert "css/portal.css" in html


def test_login_then_dashboard(people, password):
    client = Client()
    response = client.post(reverse("portal:login"), {"username": "admin@acme.test", "password": password})
    assert response.status_code == 302
    assert response.url == reverse("portal:dashboard")
    page = client.get(response.url)
    assert page.status_code == 200
    assert 'data-testid="current-tenant">Acme Corporation<' in page.content.decode()


def test_login_follows_next(people, password):
    client = Client()
    response = client.post(reverse("portal:login") + "?next=/tasks/",
                           {"username": "viewer@acme.test", "password": password, "next": "/tasks/"})
    assert response.status_code == 302
    assert response.url == "/tasks/"


def test_wrong_password_is_a_form_error(people):
    response = Client().post(reverse("portal:login"), {"username": "admin@acme.test", "password": "nope-nope"})
    assert response.status_code == 200
    assert "do not match an account" in response.content.decode()


def test_repeated_failures_lock_the_login(people, password):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(reverse("portal:login"), {"username": "admin@acme.test", "password": "wrong-1"})
    assert response.status_code == 429
    assert "Sign-in paused" in response.content.decode()
    # Even the right password is refused while locked out.
    response = client.post(reverse("portal:login"), {"username": "admin@acme.test", "password": password})
    assert response.status_code == 429


@pytest.mark.parametrize("context", [
    {"failure_limit": 5, "username": "admin@acme.test", "cooloff_timedelta": timedelta(minutes=15)},
    {"cooloff_hours": 0.25},
])
def test_lockout_page_says_when_to_retry(db, context):
    html = render_to_string("portal/locked_out.html", context, request=RequestFactory().get("/login/"))
    assert "Sign-in paused" in html
    assert "You can try again in 15 minutes." in html


@pytest.mark.parametrize("name", PORTAL_PAGES)
def test_every_page_requires_login(db, name):
    response = Client().get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("portal:login") + "?next=")


def test_logout_is_a_post(portal):
    client = portal("acme", "admin")
    assert client.get(reverse("portal:logout")).status_code == 405
    response = client.post(reverse("portal:logout"))
    assert response.status_code == 302
    assert response.url == reverse("portal:login")
    assert "You are signed out." in client.get(response.url).content.decode()
    assert client.get(reverse("portal:dashboard")).status_code == 302


def test_layout_has_logout_form_and_password_link(portal):
    html = portal("acme", "viewer").get(reverse("portal:dashboard")).content.decode()
    assert f'<form method="post" action="{reverse("portal:logout")}">' in html
    assert f'href="{reverse("portal:password-change")}"' in html


def test_password_change(people, portal, password):
    client = portal("acme", "marketer")
    assert client.get(reverse("portal:password-change")).status_code == 200
    response = client.post(reverse("portal:password-change"), {
        "old_password": password,
        "new_password1": "a-much-better-passphrase",
        "new_password2": "a-much-better-passphrase",
    })
    assert response.status_code == 302
    assert response.url == reverse("portal:password-change-done")
    assert client.get(response.url).status_code == 200  # still signed in
    user = people["acme"]["marketer"].user
    user.refresh_from_db()
    assert user.check_password("a-much-better-passphrase")


def test_password_change_wrong_old_password(portal):
    response = portal("acme", "marketer").post(reverse("portal:password-change"), {
        "old_password": "not-it", "new_password1": "a-much-better-passphrase",
        "new_password2": "a-much-better-passphrase",
    })
    assert response.status_code == 200
    assert "field--invalid" in response.content.decode()


@pytest.mark.parametrize("name", ["portal:dashboard", "portal:campaigns", "portal:settings", "portal:user-list"])
def test_user_without_a_workspace_sees_a_friendly_page(db, name):
    client = Client()
    client.force_login(UserFactory(email="drifter@example.test"))
    response = client.get(reverse(name))
    assert response.status_code == 200
    html = response.content.decode()
    assert "You are not in a workspace yet" in html
    assert "drifter@example.test" in html


def test_deactivated_member_has_no_workspace(people):
    Membership.dangerously_unscoped.filter(user=people["acme"]["viewer"].user).update(is_active=False)
    client = Client()
    client.force_login(people["acme"]["viewer"].user)
    assert "You are not in a workspace yet" in client.get(reverse("portal:dashboard")).content.decode()


def test_not_found_page_uses_the_portal_design(portal):
    response = portal("acme", "admin").get("/no-such-page/")
    assert response.status_code == 404
    assert "We could not find that page" in response.content.decode()
