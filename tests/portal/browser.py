"""The real browser of the portal tests: Debian's Chromium driven by Playwright (never
`playwright install`), on the live server, offline, failing the test on any JavaScript error.
The `page` fixture is exposed to every test through tests/portal/conftest.py; screenshots go to
test-artifacts/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def inline_tasks():
    """Celery tasks run inline in whichever thread sends them (the live server's included)."""
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


@pytest.fixture
def page(live_server, monkeypatch) -> Iterator:
    # .ci/run installs Debian's chromium; a machine without it fails here rather than skipping.
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed: apt-get install chromium chromium-driver"
    expect.set_options(timeout=10_000)
    # Playwright's sync API runs an event loop in this thread; Django would refuse ORM calls made
    # while it runs (fixtures' teardown, for instance), although they are synchronous here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url,
                                      accept_downloads=True)
        page = context.new_page()
        # The browser has no internet: any request off the live server is a bug.
        page.route(re.compile(r"^(?!" + re.escape(live_server.url) + ").*"), lambda route: route.abort())
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        context.close()
        browser.close()
    assert errors == [], f"JavaScript errors: {errors}"


def sign_in(page, email: str, password: str) -> None:
    """Sign in through the login form and land on the dashboard."""
    page.goto("/")
    assert page.url.endswith("/login/?next=/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
