"""Section pages: every member reaches them, and they describe the section honestly."""

from __future__ import annotations

import pytest
from django.urls import reverse

SECTIONS = {
    "portal:campaigns": "No campaigns in this workspace",
    "portal:audiences": "No saved audiences",
    "portal:data": "No records imported yet",
    "portal:tasks": "Nothing waiting for a decision",
}


@pytest.mark.parametrize("role", ["admin", "marketer", "approver", "viewer"])
@pytest.mark.parametrize("name", list(SECTIONS))
def test_sections_render_for_every_role(people, portal, name, role):
    response = portal("acme", role).get(reverse(name))
    assert response.status_code == 200
    html = response.content.decode()
    assert SECTIONS[name] in html
    assert 'aria-current="page"' in html


def test_section_copy_follows_the_role(people, portal):
    assert "you can build, test and start campaigns" in (
        portal("acme", "marketer").get(reverse("portal:campaigns")).content.decode())
    assert "you can follow campaigns" in portal("acme", "viewer").get(reverse("portal:campaigns")).content.decode()
    assert "you can approve or reject tasks" in portal("acme", "approver").get(reverse("portal:tasks")).content.decode()


def test_navigation_shows_users_to_admins_only(people, portal):
    nav_link = f'href="{reverse("portal:user-list")}"'
    assert nav_link in portal("acme", "admin").get(reverse("portal:campaigns")).content.decode()
    assert nav_link not in portal("acme", "approver").get(reverse("portal:campaigns")).content.decode()


def test_no_external_assets(people, portal):
    html = portal("acme", "admin").get(reverse("portal:dashboard")).content.decode()
    assert "https://" not in html and "http://" not in html
    assert "/static/vendor/htmx.min.js" in html
