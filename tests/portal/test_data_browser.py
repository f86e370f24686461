"""The data pages in a real Chromium (Playwright, Debian's /usr/bin/chromium): build an audience
with the rule builder and watch the live count follow the rules; import a file and watch its
progress bar reach 100% while a real Celery worker runs it. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.audiences.models import Audience
from apps.profiles.services import profile_upsert
from apps.schemas.models import ImportJob, Record
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import Worker
from tests.portal.browser import ARTIFACTS, sign_in
from tests.schemas.world import build_purchases

pytestmark = pytest.mark.browser

def _live_count(page) -> object:
    return page.get_by_test_id("live-count")


def _settled(page) -> None:
    """Wait until htmx has no request in flight (a menu change swaps the rules in place)."""
    page.wait_for_function("() => document.querySelectorAll('.htmx-request').length === 0")


def test_marketer_builds_an_audience_and_the_count_follows_the_rules(page, people, acme, password):
    build_purchases(acme)  # acme-p1 (FR, Person1, two purchases), acme-p2 (DE, Person2, one purchase)
    for n, (country, name) in enumerate([("FR", "Alice"), ("FR", "Bob"), ("ES", "Alba"), ("DE", "Bert")], start=3):
        profile_upsert(tenant=acme, values={"id": f"acme-p{n}", "country": country, "first_name": name}, by=None)

    sign_in(page, people["acme"]["marketer"].email, password)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Audiences").click()
    page.wait_for_url("**/audiences/")
    page.get_by_role("link", name="New audience").click()
    page.wait_for_url("**/audiences/new/")
    expect(_live_count(page)).to_have_text("6")  # no rule yet: every profile
    page.evaluate("window.__same_page = true")

    page.get_by_label("Name").fill("French or A-names")
    root = page.locator('[data-rule="r"]')
    root.locator(":scope > .rule__add").get_by_role("button", name="Add condition").click()
    condition = page.locator('[data-rule="r-0"]')
    expect(condition).to_be_visible()
    condition.get_by_label("Field").select_option("country")
    _settled(page)
    expect(condition.get_by_label("Operator")).to_have_value("eq")
    condition.get_by_label("Value").fill("FR")
    expect(_live_count(page)).to_have_text("3")  # acme-p1, acme-p3, acme-p4

    # One level down: a group of alternatives (any of) inside the root (all of).
    root.get_by_label("Match").first.select_option("any")
    _settled(page)
    expect(_live_count(page)).to_have_text("3")
    root.locator(":scope > .rule__add").get_by_role("button", name="Add group").click()
    group = page.locator('[data-rule="r-1"]')
    expect(group).to_be_visible()
    inner = page.locator('[data-rule="r-1-0"]')
    inner.get_by_label("Field").select_option("first_name")
    _settled(page)
    inner.get_by_label("Operator").select_option("starts_with")
    _settled(page)
    inner.get_by_label("Value").fill("Al")
    expect(_live_count(page)).to_have_text("4")  # FR (3) or a name starting with Al (Alba)
    group.locator(":scope > .rule__add").get_by_role("button", name="Add condition").click()
    second = page.locator('[data-rule="r-1-1"]')
    second.get_by_label("Field").select_option("country")
    _settled(page)
    second.get_by_label("Value").fill("DE")
    expect(_live_count(page)).to_have_text("6")  # any of: FR, or Al*, or DE
    group.get_by_label("Match").first.select_option("all")
    expect(_live_count(page)).to_have_text("3")  # FR, or (Al* and DE): nobody is both
    page.locator("details.live__json summary").click()
    expect(page.get_by_test_id("live-json")).to_contain_text('"any": [')
    expect(page.get_by_test_id("live-json")).to_contain_text('"starts_with"')
    page.screenshot(path=str(ARTIFACTS / "audience-builder.png"), full_page=True)

    # An invalid rule: the problem and its path, not an error page.
    second.get_by_label("Field").select_option("_created_at")
    _settled(page)
    second.get_by_label("Operator").select_option("gt")
    _settled(page)
    second.get_by_label("Value").fill("soon")
    expect(page.get_by_test_id("live-problems")).to_contain_text("any[1].all[1].value")
    expect(page.get_by_test_id("live-error")).to_contain_text('"soon" is not a valid value')
    expect(second.locator(".rule__problems")).to_contain_text('"soon" is not a valid value')  # on the rule too
    page.screenshot(path=str(ARTIFACTS / "audience-builder-invalid.png"), full_page=True)
    second.get_by_role("button", name="Remove this condition").click()
    expect(page.locator('[data-rule="r-1-1"]')).to_have_count(0)
    expect(_live_count(page)).to_have_text("4")  # FR, or a name starting with Al
    assert page.evaluate("window.__same_page") is True  # all of it without reloading the page

    page.get_by_role("button", name="Save as dynamic audience").click()
    page.wait_for_url(re.compile(r"/audiences/\d+/$"))
    expect(page.get_by_text("Audience “French or A-names” was saved as a saved query of 4 records.")).to_be_visible()
    expect(page.get_by_test_id("audience-count")).to_have_text("4")
    expect(page.get_by_test_id("audience-sample")).to_contain_text("acme-p4")
    expect(page.get_by_test_id("export-link")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "audience-detail.png"), full_page=True)
    with tenant_scope(acme):
        audience = Audience.objects.get(name="French or A-names")
    assert audience.filter == {"any": [{"field": "country", "op": "eq", "value": "FR"},
                                       {"all": [{"field": "first_name", "op": "starts_with", "value": "Al"}]}]}
    with page.expect_download() as download:
        page.get_by_test_id("export-link").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("key,id,email") and len(lines) == 5


@pytest.mark.worker
def test_import_progress_reaches_100_percent_while_a_worker_runs_it(page, people, acme, password, settings,
                                                                    monkeypatch, tmp_path):
    # The web process and the worker share the media directory the upload is written to.
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))
    from config.celery import app

    app.control.purge()  # nothing left in the queue from another run
    rows = ["id,email,first_name,country"] + [f"imp-{n},imp{n}@example.com,Name{n},FR" for n in range(500)]
    rows.insert(4, "imp-bad,not-an-email,Bad,FR")
    upload = tmp_path / "people.csv"
    upload.write_text("\n".join(rows) + "\n")

    sign_in(page, people["acme"]["marketer"].email, password)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Data").click()
    page.wait_for_url("**/data/")
    page.get_by_test_id("schema-table").get_by_role("link", name="Profiles").click()
    page.get_by_role("link", name="Import a file").click()
    page.wait_for_url("**/imports/")
    page.get_by_label("File", exact=True).set_input_files(str(upload))
    page.get_by_label("Mode", exact=True).select_option("upsert")
    page.screenshot(path=str(ARTIFACTS / "import-form.png"), full_page=True)
    page.get_by_role("button", name="Start import").click()
    page.wait_for_url(re.compile(r"/imports/\d+/$"))

    # No worker yet: the job waits, and the page polls.
    expect(page.get_by_test_id("import-percent")).to_have_text("0%")
    expect(page.locator("#import-progress")).to_contain_text("Waiting for a worker")
    page.screenshot(path=str(ARTIFACTS / "import-waiting.png"), full_page=True)
    page.evaluate("window.__same_page = true")

    worker = Worker()
    with worker.log.open("a") as log:
        log.write("\n--- start ---\n")
    worker.start(concurrency=1)
    try:
        expect(page.get_by_test_id("import-percent")).to_have_text("100%", timeout=60_000)
    finally:
        worker.stop()
    assert page.evaluate("window.__same_page") is True  # the bar moved by polling, not by reloading
    expect(page.locator("#import-progress")).to_have_attribute("data-status", "succeeded")
    expect(page.locator('[data-counter="rows_read"]')).to_have_text("501")
    expect(page.locator('[data-counter="rows_valid"]')).to_have_text("500")
    expect(page.locator('[data-counter="rows_rejected"]')).to_have_text("1")
    expect(page.locator("progress")).to_have_attribute("value", "100")
    page.screenshot(path=str(ARTIFACTS / "import-done.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_test_id("rejects-link").click()
    report = Path(download.value.path()).read_text().splitlines()
    assert report == ["line,column,value,reason", "5,email,not-an-email,not an e-mail address"]
    with tenant_scope(acme):
        assert Record.objects.filter(key__startswith="imp-").count() == 500
        assert ImportJob.objects.get().status == "succeeded"

    # The records are there: the browser searches and pages on the server.
    page.get_by_role("link", name="Browse records").click()
    expect(page.get_by_test_id("record-pager")).to_have_text("Page 1 of 20 · 500 records")
    # htmx (a deferred script) listens to the search box once the page has loaded: typing
    # earlier would be a plain form field until Enter.
    page.wait_for_load_state("load")
    page.get_by_label("Search records").fill("imp-42")
    expect(page.get_by_test_id("record-pager")).to_have_text("Page 1 of 1 · 11 records")  # imp-42, imp-420..429
    page.screenshot(path=str(ARTIFACTS / "records.png"), full_page=True)
    page.get_by_role("link", name="imp-42", exact=True).click()
    expect(page.get_by_test_id("record-values")).to_contain_text("imp42@example.com")
    page.screenshot(path=str(ARTIFACTS / "record.png"), full_page=True)
