"""The portal in a real Chromium (Playwright, Debian's /usr/bin/chromium): sign in, read the
dashboard, switch tenant, manage users with htmx, sign out. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import MembershipFactory
from tests.portal.browser import ARTIFACTS, sign_in

pytestmark = pytest.mark.browser

def test_member_of_two_tenants_signs_in_switches_and_signs_out(page, people, globex, password):
    person = people["acme"]["marketer"]
    MembershipFactory(tenant=globex, user=person.user, role="approver")

    sign_in(page, person.email, password)
    header = page.get_by_test_id("current-tenant")
    expect(header).to_have_text("Acme Corporation")
    greeting = re.compile(r"^Good (morning|afternoon|evening), Marketer$")
    expect(page.get_by_role("heading", name=greeting)).to_be_visible()
    expect(page.get_by_test_id("active-members")).to_have_text("4")
    # The design system loaded: the sidebar is dark, and htmx is there.
    sidebar_bg = page.eval_on_selector(".sidebar", "el => getComputedStyle(el).backgroundColor")
    assert sidebar_bg == "rgb(15, 22, 41)"
    assert page.evaluate("typeof window.htmx") == "object"
    page.screenshot(path=str(ARTIFACTS / "dashboard-acme.png"), full_page=True)

    page.locator(".switcher summary").click()
    page.screenshot(path=str(ARTIFACTS / "tenant-switcher.png"))
    page.get_by_role("button", name=re.compile("Globex Inc.")).click()
    expect(header).to_have_text("Globex Inc.")
    expect(page.get_by_text("You are now working in Globex Inc.")).to_be_visible()
    expect(page.locator(".usermenu__role")).to_have_text("Approver")
    expect(page.get_by_test_id("tenant-time-zone")).to_have_text("America/New_York")
    page.screenshot(path=str(ARTIFACTS / "dashboard-globex.png"), full_page=True)

    page.locator(".usermenu summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login/")
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "signed-out.png"))
    page.goto("/")
    assert "/login/" in page.url


def test_admin_manages_users(page, people, password):
    sign_in(page, "admin@acme.test", password)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Users").click()
    page.wait_for_url("**/settings/users/")
    page.screenshot(path=str(ARTIFACTS / "users.png"), full_page=True)

    # htmx filters the table as you type, without reloading the page.
    page.evaluate("window.__same_page = true")
    page.get_by_label("Search members").fill("approver")
    expect(page.locator("#members")).not_to_contain_text("viewer@acme.test")
    expect(page.locator("#members")).to_contain_text("approver@acme.test")
    assert page.evaluate("window.__same_page") is True
    expect(page).to_have_url(re.compile(r"search=approver"))
    page.get_by_label("Search members").fill("")
    expect(page.locator("#members")).to_contain_text("viewer@acme.test")
    page.get_by_label("Filter by role").select_option("viewer")
    expect(page.locator("#members")).not_to_contain_text("admin@acme.test")
    expect(page.locator("#members")).to_contain_text("viewer@acme.test")
    page.get_by_label("Filter by role").select_option("")
    expect(page.locator("#members")).to_contain_text("admin@acme.test")

    form = page.locator("section", has=page.get_by_role("heading", name="Add a member"))
    form.get_by_label("Email").fill("new.hire@acme.test")
    form.get_by_label("First name").fill("New")
    form.get_by_label("Role").select_option("approver")
    form.get_by_role("button", name="Add member").click()
    expect(page.get_by_text("new.hire@acme.test was added as Approver")).to_be_visible()
    assert len(page.get_by_test_id("generated-password").input_value()) >= 12
    expect(page.locator("#members")).to_contain_text("new.hire@acme.test")
    page.screenshot(path=str(ARTIFACTS / "users-added.png"), full_page=True)

    # Demoting the only admin is refused on the page, not with a crash.
    page.get_by_label("Role of admin@acme.test").select_option("viewer")
    page.locator("tr", has_text="admin@acme.test").get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_have_text("A tenant must keep at least one active admin.")
    page.screenshot(path=str(ARTIFACTS / "users-last-admin.png"), full_page=True)
