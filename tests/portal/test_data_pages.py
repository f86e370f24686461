"""Data pages of the portal with Django's test client: schemas and their editor, the record
browser, imports and their progress, audiences and the rule builder. Every page for every role,
another tenant's objects (404), bad input (a message, nothing stored)."""

from __future__ import annotations

import csv
import io
import json
import re
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.audiences import services as audience_services
from apps.audiences.models import Audience, AudienceMember
from apps.portal import rule_builder as rb
from apps.profiles.services import profile_upsert
from apps.schemas import imports
from apps.schemas import services as schema_services
from apps.schemas.models import DataSchema, Field, ImportJob, Link, Record
from apps.tenants.scoping import tenant_scope
from config.celery import app as celery_app
from tests.schemas.world import build_purchases

ROLES = ["admin", "marketer", "approver", "viewer"]
CSV = (b"id,email,first_name,country\n"
       b"n1,ann@example.com,Ann,FR\n"
       b"n2,=cmd|' /C calc'!A0,Bob,DE\n"
       b"n3,cy@example.com,Cy,FR\n")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def eager(django_capture_on_commit_callbacks):
    """Celery tasks run inline, and the import's on-commit kick is executed."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield django_capture_on_commit_callbacks
    finally:
        celery_app.conf.task_always_eager = previous


@pytest.fixture
def world(acme, globex, people):
    """acme: `acme_purchase` linked to profiles (profiles acme-p1 FR with 2 purchases, acme-p2 DE with
    1), a dynamic and a static audience, a pending import. globex: the same shape under its names."""
    admin = people["acme"]["admin"].user
    purchase = build_purchases(acme, by=admin)
    build_purchases(globex, by=people["globex"]["admin"].user)
    dynamic, _ = audience_services.audience_create(
        tenant=acme, name="French profiles", kind="dynamic", filter={"field": "country", "op": "eq", "value": "FR"},
        by=admin)
    static, _ = audience_services.audience_create(tenant=acme, name="Best customers", kind="static",
                                                  keys=["acme-p1", "acme-p2"], by=admin)
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
    job = imports.import_create(tenant=acme, schema=profile, file=SimpleUploadedFile("people.csv", CSV), by=admin)
    return SimpleNamespace(purchase=purchase, profile=profile, dynamic=dynamic, static=static, job=job)


def url(name, **kwargs):
    return reverse(f"portal:{name}", kwargs=kwargs)


def html_of(response) -> str:
    return response.content.decode()


def count(tenant, model, **filters):
    with tenant_scope(tenant):
        return model.objects.filter(**filters).count()


def read_pages(w):
    return {
        "data": url("data"),
        "schema": url("schema-detail", schema_name="acme_purchase"),
        "profile schema": url("schema-detail", schema_name="profile"),
        "records": url("record-list", schema_name="acme_purchase"),
        "record": url("record-detail", schema_name="profile", key="acme-p1"),
        "imports": url("import-list", schema_name="profile"),
        "import": url("import-detail", schema_name="profile", import_id=w.job.pk),
        "import progress": url("import-progress", schema_name="profile", import_id=w.job.pk),
        "rejects": url("import-rejects", schema_name="profile", import_id=w.job.pk),
        "audiences": url("audiences"),
        "dynamic audience": url("audience-detail", audience_id=w.dynamic.pk),
        "static audience": url("audience-detail", audience_id=w.static.pk),
        "export": url("audience-export", audience_id=w.dynamic.pk),
    }


# --- Every page, every role ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_read_page_renders_for_every_role(world, portal, role):
    client = portal("acme", role)
    for name, address in read_pages(world).items():
        response = client.get(address)
        assert response.status_code == 200, f"{name}: {response.status_code}"
    html = html_of(client.get(url("data")))
    assert 'aria-current="page"' in html and "acme_purchase" in html


@pytest.mark.parametrize("role", ROLES)
def test_what_each_role_is_offered(world, portal, role):
    client = portal("acme", role)
    schema_html = html_of(client.get(url("schema-detail", schema_name="acme_purchase")))
    data_html = html_of(client.get(url("data")))
    imports_html = html_of(client.get(url("import-list", schema_name="profile")))
    audiences_html = html_of(client.get(url("audiences")))
    detail_html = html_of(client.get(url("audience-detail", audience_id=world.dynamic.pk)))
    manages, writes = role == "admin", role in ("admin", "marketer")
    assert ("Add a field" in schema_html) is manages
    assert ("Add a link" in schema_html) is manages
    assert ("New schema" in data_html) is manages
    assert ("read this schema; changing it is for admins" in schema_html) is not manages
    assert ('data-testid="import-form"' in imports_html) is writes
    assert ("New audience" in audiences_html) is writes
    assert ("Edit rules" in detail_html) is writes
    assert "Export CSV" in detail_html
    for name in ("audience-new",):
        assert client.get(url(name)).status_code == (200 if writes else 404)
    assert client.get(url("audience-edit", audience_id=world.dynamic.pk)).status_code == (200 if writes else 404)


@pytest.mark.parametrize("role", ["marketer", "approver", "viewer"])
def test_schema_changes_are_refused_to_other_roles_and_change_nothing(world, portal, role):
    client = portal("acme", role)
    posts = {
        url("schema-new"): {"name": "store", "key_name": "id", "key_type": "string"},
        url("schema-edit", schema_name="acme_purchase"): {"label": "Changed"},
        url("schema-delete", schema_name="acme_purchase"): {"force": "on"},
        url("field-add", schema_name="acme_purchase"): {"name": "note", "type": "string"},
        url("field-edit", schema_name="acme_purchase", field_name="amount"): {"edit-amount-type": "string"},
        url("field-remove", schema_name="acme_purchase", field_name="channel"): {},
        url("link-add", schema_name="acme_purchase"): {"name": "buyer", "kind": "many_to_one", "target": "profile",
                                                       "source_field": "profile_id", "target_field": "id"},
        url("link-remove", schema_name="acme_purchase", link_name="profile"): {},
    }
    for address, data in posts.items():
        assert client.post(address, data).status_code == 404, address
    acme = world.purchase.tenant
    assert count(acme, DataSchema, name="store") == 0
    assert count(acme, Field, schema=world.purchase, name="note") == 0
    assert count(acme, Field, schema=world.purchase, name="channel") == 1
    assert count(acme, Link, schema=world.purchase) == 1
    with tenant_scope(acme):
        assert DataSchema.objects.get(name="acme_purchase").label == "Purchases"
        assert Field.objects.get(schema=world.purchase, name="amount").type == "decimal"


@pytest.mark.parametrize("role", ["approver", "viewer"])
def test_imports_and_audience_changes_are_refused_to_readers(world, portal, role, eager):
    client = portal("acme", role)
    acme = world.purchase.tenant
    response = client.post(url("import-upload", schema_name="profile"),
                           {"file": SimpleUploadedFile("x.csv", CSV), "mode": "upsert"})
    assert response.status_code == 404
    assert count(acme, ImportJob) == 1
    rules = {"schema": "profile", "r-0.kind": "cond", "r-0.field": "country", "r-0.op": "eq", "r-0.value": "FR"}
    for address, data in {
        url("audience-new"): {"name": "Mine", "action": "save-dynamic", **rules},
        url("audience-builder"): {"action": "add-cond:r", **rules},
        url("audience-count"): rules,
        url("audience-edit", audience_id=world.dynamic.pk): {"name": "Renamed", "action": "save-dynamic", **rules},
        url("audience-refresh", audience_id=world.dynamic.pk): {},
        url("audience-delete", audience_id=world.static.pk): {},
    }.items():
        assert client.post(address, data).status_code == 404, address
    assert count(acme, Audience) == 2
    assert count(acme, Audience, name="Renamed") == 0


# --- Another tenant's objects --------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_another_tenants_objects_are_404_on_every_page(world, portal, role):
    client = portal("globex", role)
    pages = read_pages(world)
    for name in ("data", "audiences", "profile schema", "imports"):  # globex has these too
        pages.pop(name)
    for name, address in pages.items():
        assert client.get(address).status_code == 404, name
    # globex sees its own data, never acme's
    html = html_of(client.get(url("data")))
    assert "globex_purchase" in html and "acme_purchase" not in html
    html = html_of(client.get(url("audiences")))
    assert "French profiles" not in html
    assert "acme-p1" not in html_of(client.get(url("record-list", schema_name="profile")))


def test_another_tenants_objects_cannot_be_changed(world, portal):
    client = portal("globex", "admin")  # every capability, in the other tenant
    acme = world.purchase.tenant
    posts = {
        url("schema-edit", schema_name="acme_purchase"): {"label": "Mine"},
        url("schema-delete", schema_name="acme_purchase"): {"force": "on"},
        url("field-add", schema_name="acme_purchase"): {"name": "note", "type": "string"},
        url("field-edit", schema_name="acme_purchase", field_name="amount"): {"edit-amount-label": "Mine",
                                                                              "edit-amount-type": "decimal"},
        url("field-remove", schema_name="acme_purchase", field_name="channel"): {},
        url("link-add", schema_name="acme_purchase"): {"name": "x", "kind": "many_to_one", "target": "profile",
                                                       "source_field": "profile_id", "target_field": "id"},
        url("link-remove", schema_name="acme_purchase", link_name="profile"): {},
        url("import-upload", schema_name="acme_purchase"): {"file": SimpleUploadedFile("x.csv", b"order_id\n1\n")},
        url("audience-edit", audience_id=world.dynamic.pk): {"name": "Mine", "action": "save-dynamic",
                                                             "schema": "profile"},
        url("audience-refresh", audience_id=world.dynamic.pk): {},
        url("audience-delete", audience_id=world.static.pk): {},
        url("audience-builder"): {"audience": world.dynamic.pk, "schema": "profile"},
        url("audience-count"): {"audience": world.dynamic.pk, "schema": "profile"},
    }
    for address, data in posts.items():
        assert client.post(address, data).status_code == 404, address
    with tenant_scope(acme):
        assert DataSchema.objects.get(name="acme_purchase").label == "Purchases"
        assert Field.objects.filter(schema=world.purchase).count() == 5
        assert Link.objects.filter(schema=world.purchase).count() == 1
        assert Audience.objects.filter(name__in=["French profiles", "Best customers"]).count() == 2
        assert ImportJob.objects.count() == 1
    # The audience builder only offers the user's own schemas.
    html = html_of(client.get(url("audience-new")))
    assert "acme_purchase" not in html and "globex_purchase" in html


# --- Schemas and their editor ----------------------------------------------------------------------


def test_admin_creates_a_schema_and_edits_its_fields_and_links(world, portal):
    client, acme = portal("acme", "admin"), world.purchase.tenant
    response = client.post(url("schema-new"), {"name": "store", "label": "Stores", "key_name": "code",
                                               "key_type": "string"})
    assert response.status_code == 302 and response["Location"] == url("schema-detail", schema_name="store")
    with tenant_scope(acme):
        store = DataSchema.objects.get(name="store")
        assert store.primary_key == "code"
    response = client.post(url("field-add", schema_name="store"), {
        "name": "size", "type": "enum", "enum_values": "small\nlarge", "default": "small", "indexed": "on"})
    assert response.status_code == 302, html_of(response)
    response = client.post(url("field-add", schema_name="store"), {"name": "opened", "type": "date"})
    assert response.status_code == 302
    with tenant_scope(acme):
        size = Field.objects.get(schema=store, name="size")
        assert (size.type, size.enum_values, size.default, size.indexed) == ("enum", ["small", "large"], "small", True)
    response = client.post(url("field-edit", schema_name="store", field_name="size"), {
        "edit-size-label": "Store size", "edit-size-type": "enum", "edit-size-enum_values": "small\nlarge\nhuge",
        "edit-size-default": "", "edit-size-required": "on"})
    assert response.status_code == 302, html_of(response)
    with tenant_scope(acme):
        size.refresh_from_db()
        assert (size.label, size.enum_values, size.default, size.required) == (
            "Store size", ["small", "large", "huge"], None, True)
    response = client.post(url("link-add", schema_name="acme_purchase"), {
        "name": "store", "kind": "many_to_one", "target": "store", "source_field": "channel",
        "target_field": "code", "reverse_name": "purchases", "reverse_label": "Purchases"})
    assert response.status_code == 302, html_of(response)
    assert count(acme, Link, schema=store, name="purchases") == 1
    html = html_of(client.get(url("schema-detail", schema_name="store")))
    assert 'data-field="size"' in html and "Store size" in html and "huge" in html
    assert "from" in html and "acme_purchase" in html  # the link to it
    assert client.post(url("link-remove", schema_name="acme_purchase", link_name="store")).status_code == 302
    assert client.post(url("field-remove", schema_name="store", field_name="opened")).status_code == 302
    assert count(acme, Field, schema=store, name="opened") == 0
    response = client.post(url("schema-edit", schema_name="store"), {"label": "Shops", "description": "Ours"})
    assert response.status_code == 302
    # Deleting a schema with records needs `force`; the service says why.
    schema_services.record_create(tenant=acme, schema=store, values={"code": "s1", "size": "large"}, by=None)
    response = client.post(url("schema-delete", schema_name="store"), {})
    assert response.status_code == 409
    assert "This schema has records" in html_of(response) and count(acme, DataSchema, name="store") == 1
    assert client.post(url("schema-delete", schema_name="store"), {"force": "on"}).status_code == 302
    assert count(acme, DataSchema, name="store") == 0


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"name": "Bad Name", "key_name": "id", "key_type": "string"}, "name", "Start with a lower-case letter"),
    ({"name": "profile", "key_name": "id", "key_type": "string"}, "name", "Already taken."),
    ({"name": "store", "key_name": "9x", "key_type": "string"}, "key_name", "Start with a lower-case letter"),
    ({"name": "store", "key_name": "id", "key_type": "json"}, "key_type", "Select a valid choice"),
])
def test_bad_schema_input_is_shown_next_to_its_field_and_stores_nothing(world, portal, data, field, message):
    before = count(world.purchase.tenant, DataSchema)
    response = portal("acme", "admin").post(url("schema-new"), data)
    assert response.status_code in (400, 409)
    html = html_of(response)
    assert re.search(rf'id="id_{field}"[^>]*>.*?class="field__errors"[^>]*><li>{re.escape(message)}', html, re.S) \
        or (message in html and f'id_{field}_error' in html), html
    assert count(world.purchase.tenant, DataSchema) == before


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"name": "size", "type": "enum"}, "enum_values", "Give a non-empty list of values."),
    ({"name": "visits", "type": "integer", "default": "many"}, "default", "not an integer"),
    ({"name": "notes", "type": "json", "indexed": "on"}, "indexed", "JSON fields cannot be indexed."),
    ({"name": "amount", "type": "string"}, "name", "Already taken."),
    ({"name": "tier", "type": "string", "enum_values": "a\nb"}, "enum_values", "Only for enum fields."),
    ({"name": "due", "type": "date", "required": "on"}, "default", "Give the value existing records receive."),
])
def test_bad_field_input_is_shown_next_to_its_field_and_stores_nothing(world, portal, data, field, message):
    acme = world.purchase.tenant
    before = count(acme, Field, schema=world.purchase)
    response = portal("acme", "admin").post(url("field-add", schema_name="acme_purchase"), data)
    assert response.status_code in (400, 409)
    html = html_of(response)
    assert f'id="id_{field}_error"><li>{message}' in html.replace("&#x27;", "'"), html
    assert count(acme, Field, schema=world.purchase) == before


def test_a_type_change_that_values_do_not_fit_is_refused_with_examples_next_to_the_type(world, portal):
    response = portal("acme", "admin").post(url("field-edit", schema_name="acme_purchase", field_name="amount"), {
        "edit-amount-label": "Amount", "edit-amount-type": "integer"})
    assert response.status_code == 409
    html = html_of(response)
    errors = re.search(r'id="id_edit-amount-type_error">(.*?)</ul>', html, re.S).group(1)
    assert "stored values do not fit the new type" in errors and "acme-o1" in errors
    assert re.search(r'<li class="field-item" data-field="amount">\s*<details open>', html)  # the row stays open
    with tenant_scope(world.purchase.tenant):
        assert Field.objects.get(schema=world.purchase, name="amount").type == "decimal"


def test_removing_a_field_or_link_in_use_says_who_uses_it(world, portal):
    acme, admin = world.purchase.tenant, world.dynamic.created_by
    audience_services.audience_create(tenant=acme, name="Web buyers", kind="dynamic", schema=world.purchase,
                                      filter={"field": "channel", "op": "eq", "value": "web"}, by=admin)
    client = portal("acme", "admin")
    response = client.post(url("field-remove", schema_name="acme_purchase", field_name="channel"))
    assert response.status_code == 409
    assert "This field is in use. Used by audience “Web buyers”." in html_of(response)
    assert count(acme, Field, schema=world.purchase, name="channel") == 1
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
    audience_services.audience_create(tenant=acme, name="Buyers", kind="dynamic", filter={"link": "purchases"},
                                      by=admin)
    response = client.post(url("link-remove", schema_name="profile", link_name="purchases"))
    assert response.status_code == 409 and "Used by audience “Buyers”" in html_of(response)
    assert count(acme, Link, schema=profile, name="purchases") == 1
    response = client.post(url("field-remove", schema_name="profile", field_name="email"))
    assert response.status_code == 409 and "A built-in field cannot be removed." in html_of(response)


def test_bad_link_input_is_shown_next_to_its_field(world, portal):
    response = portal("acme", "admin").post(url("link-add", schema_name="acme_purchase"), {
        "name": "buyer", "kind": "many_to_one", "target": "profile", "source_field": "nope", "target_field": "id"})
    assert response.status_code == 400
    assert 'id="id_source_field_error"><li>acme_purchase has no such field.' in html_of(response)
    assert count(world.purchase.tenant, Link, schema=world.purchase) == 1


# --- Records -------------------------------------------------------------------------------------


def test_record_browser_searches_and_pages_on_the_server(world, portal):
    acme = world.purchase.tenant
    for n in range(30):
        profile_upsert(tenant=acme, values={"id": f"bulk-{n:02d}", "first_name": f"Bulk{n:02d}", "country": "IT"},
                       by=None)
    client = portal("acme", "viewer")
    html = html_of(client.get(url("record-list", schema_name="profile")))
    assert "Page 1 of 2 · 32 records" in html and "acme-p1" in html and "bulk-22" in html and "bulk-23" not in html
    html = html_of(client.get(url("record-list", schema_name="profile"), {"page": 2}))
    assert "bulk-23" in html and "bulk-29" in html and "bulk-00" not in html
    response = client.get(url("record-list", schema_name="profile"), {"q": "person1"}, HTTP_HX_REQUEST="true")
    html = html_of(response)
    assert html.lstrip().startswith('<div id="records"')  # the fragment htmx swaps
    assert "acme-p1" in html and "acme-p2" not in html and "1 record" in html
    html = html_of(client.get(url("record-list", schema_name="profile"),
                              {"filter": json.dumps({"field": "country", "op": "eq", "value": "DE"})}))
    assert "acme-p2" in html and "acme-p1" not in html


@pytest.mark.parametrize(("text", "shown"), [
    ('{"field": "contry", "op": "eq", "value": "FR"}', "<code>field</code> Unknown field"),
    ('{"all": [{"field": "birth_date", "op": "gt", "value": "soon"}]}', "<code>all[0].value</code>"),
    ("{not json", "The filter is not valid JSON."),
])
def test_a_bad_filter_in_the_browser_is_a_message(world, portal, text, shown):
    client = portal("acme", "viewer")
    response = client.get(url("record-list", schema_name="profile"), {"filter": text})
    assert response.status_code == 400
    assert shown in html_of(response).replace("&quot;", '"')
    response = client.get(url("record-list", schema_name="profile"), {"filter": text}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # htmx swaps only 2xx answers: the message is shown in place
    assert shown in html_of(response).replace("&quot;", '"')


def test_record_detail_shows_values_links_and_consent(world, portal):
    acme = world.purchase.tenant
    profile_upsert(tenant=acme, values={"id": "acme-p1", "email_opt_in": False}, by=None, source="unsubscribe link")
    client = portal("acme", "viewer")
    html = html_of(client.get(url("record-detail", schema_name="profile", key="acme-p1")))
    assert "p1@acme.test" in html and "Person1" in html and "FR" in html
    assert "2 Purchases records" in html  # one-to-many: the count and a filtered browser
    assert "Consent history" in html and "opted out" in html and "unsubscribe link" in html
    html = html_of(client.get(url("record-detail", schema_name="acme_purchase", key="acme-o1")))
    assert f'href="{url("record-detail", schema_name="profile", key="acme-p1")}"' in html  # many-to-one
    assert "2026-01-01 11:00:00 CET" in html  # the purchase time, in the workspace's time zone
    assert client.get(url("record-detail", schema_name="profile", key="nobody")).status_code == 404
    assert client.get(url("record-detail", schema_name="nope", key="acme-p1")).status_code == 404


# --- Imports -------------------------------------------------------------------------------------


def upload(client, content=CSV, name="people.csv", schema="profile", **fields):
    data = {"file": SimpleUploadedFile(name, content), "mode": "upsert", **fields}
    return client.post(url("import-upload", schema_name=schema), data)


def test_upload_starts_an_import_and_its_page_shows_progress_and_rejects(world, portal, eager, media):
    client, acme = portal("acme", "marketer"), world.purchase.tenant
    with eager(execute=True):
        response = upload(client)
    with tenant_scope(acme):
        job = ImportJob.objects.select_related("created_by").order_by("-id").first()
    assert response.status_code == 302
    assert response["Location"] == url("import-detail", schema_name="profile", import_id=job.pk)
    assert job.created_by.email == "marketer@acme.test"
    html = html_of(client.get(response["Location"]))
    assert 'data-testid="import-percent">100%' in html and 'data-status="succeeded"' in html
    assert 'data-counter="rows_read">3<' in html and 'data-counter="rows_rejected">1<' in html
    assert "hx-trigger" not in html.split('id="import-progress"')[1].split(">")[0]  # finished: no more polling
    assert "Download the rejected rows (1)" in html
    response = client.get(url("import-rejects", schema_name="profile", import_id=job.pk))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [["line", "column", "value", "reason"], ["3", "email", "'=cmd|' /C calc'!A0", "not an e-mail address"]]
    with tenant_scope(acme):
        assert set(Record.objects.filter(key__in=["n1", "n2", "n3"]).values_list("key", flat=True)) == {"n1", "n3"}
    assert not (media / job.file).exists()  # the upload, streamed to disk, is gone once imported


def test_a_pending_import_polls_until_it_has_finished(world, portal):
    client = portal("acme", "viewer")
    response = client.get(url("import-progress", schema_name="profile", import_id=world.job.pk))
    html = html_of(response)
    assert html.lstrip().startswith('<div id="import-progress"')
    assert 'hx-trigger="every 1s"' in html and 'data-testid="import-percent">0%' in html
    assert "Waiting for a worker" in html and response["Cache-Control"] == "no-store"


def test_all_or_nothing_with_a_bad_line_writes_nothing_and_says_why(world, portal, eager):
    client, acme = portal("acme", "admin"), world.purchase.tenant
    with eager(execute=True):
        response = upload(client, mode="all_or_nothing")
    assert response.status_code == 302
    html = html_of(client.get(response["Location"]))
    assert 'data-status="failed"' in html and "100%" in html and "line 3" in html
    assert count(acme, Record, key__in=["n1", "n3"]) == 0


def test_a_jsonl_file_with_options(world, portal, eager):
    client, acme = portal("acme", "marketer"), world.purchase.tenant
    content = b'{"order_id": "j1", "profile_id": "acme-p1", "amount": "3.5", "channel": "store"}\n'
    with eager(execute=True):
        response = upload(client, content=content, name="orders.txt", schema="acme_purchase", format="jsonl")
    assert response.status_code == 302
    with tenant_scope(acme):
        assert Record.objects.get(schema=world.purchase, key="j1").attributes["amount"] == 3.5


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "upsert"}, "Choose the file to import."),
    ({"mode": "sometimes", "file": "x"}, "Select a valid choice. sometimes is not one of the available choices."),
    ({"mode": "upsert", "file": "x", "encoding": "ebcdic"}, "Select a valid choice."),
])
def test_bad_upload_input_is_a_message_and_stores_nothing(world, portal, eager, media, data, message):
    client, acme = portal("acme", "marketer"), world.purchase.tenant
    if data.get("file"):
        data = {**data, "file": SimpleUploadedFile("people.csv", CSV)}
    files_before = sorted(p.name for p in media.rglob("*") if p.is_file())
    with eager(execute=True):
        response = client.post(url("import-upload", schema_name="profile"), data)
    assert response.status_code == 400
    assert message in html_of(response)
    assert count(acme, ImportJob) == 1
    assert sorted(p.name for p in media.rglob("*") if p.is_file()) == files_before  # the upload was discarded


def test_upload_checks_csrf_once_its_handler_is_in_place(world, people, media):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people["acme"]["marketer"].user)
    response = client.post(url("import-upload", schema_name="profile"), {"file": SimpleUploadedFile("a.csv", CSV)})
    assert response.status_code == 403
    assert count(world.purchase.tenant, ImportJob) == 1
    assert [p for p in media.rglob("*") if p.is_file() and p.parent.name != str(world.purchase.tenant_id)] == []


# --- Audiences -----------------------------------------------------------------------------------


def rules(*conditions, match="all", **extra):
    """Form data of a builder whose root group holds `conditions` (dicts of cond attributes)."""
    data = {"schema": "profile", "previous_schema": "profile", "r.match": match, **extra}
    for index, condition in enumerate(conditions):
        for key, value in condition.items():
            data[f"r-{index}.{key}"] = value
    return data


FR = {"kind": "cond", "field": "country", "op": "eq", "value": "FR"}


def test_audience_list_filters_with_htmx(world, portal):
    client = portal("acme", "viewer")
    html = html_of(client.get(url("audiences")))
    assert "French profiles" in html and "Best customers" in html and "Static list" in html
    response = client.get(url("audiences"), {"kind": "static"}, HTTP_HX_REQUEST="true")
    html = html_of(response)
    assert html.lstrip().startswith('<div id="audience-list"')
    assert "Best customers" in html and "French profiles" not in html
    assert "French profiles" in html_of(client.get(url("audiences"), {"search": "french"}))


def test_builder_adds_groups_conditions_and_removes_them(world, portal):
    client = portal("acme", "marketer")
    html = html_of(client.get(url("audience-new")))
    assert 'data-testid="live-count" data-count="2"' in html  # no rule: every profile
    response = client.post(url("audience-builder"), rules(action="add-cond:r"))
    html = html_of(response)
    assert html.lstrip().startswith('<div id="rule-builder"')
    assert 'name="r-0.field"' in html and 'hx-swap-oob="true"' in html
    response = client.post(url("audience-builder"), rules(FR, action="add-group:r"))
    html = html_of(response)
    assert 'name="r-1.kind" value="group"' in html and 'name="r-1-0.kind" value="cond"' in html
    assert '<option value="any" selected>' in html  # a new group: any of
    response = client.post(url("audience-builder"), rules(FR, {"kind": "group", "match": "any"}, action="remove:r-0"))
    html = html_of(response)
    assert 'name="r-0.kind" value="group"' in html and 'name="r-1.kind"' not in html
    # A field of another type: the operators follow, and an operator it does not take is replaced.
    response = client.post(url("audience-builder"), rules({"kind": "cond", "field": "email_opt_in", "op": "contains"}))
    html = html_of(response)
    assert '<option value="eq" selected>is</option>' in html and "contains" not in html.split('name="r-0.op"')[1][:800]
    assert '<option value="true" selected>Yes</option>' in html


def test_live_count_follows_the_rules_and_shows_problems_with_their_path(world, portal):
    client = portal("acme", "marketer")
    response = client.post(url("audience-count"), rules(FR))
    assert response.status_code == 200
    assert 'data-testid="live-count" data-count="1"' in html_of(response) and "acme-p1" in html_of(response)
    nested = rules(FR, {"kind": "group", "match": "any"}, **{
        "r-1-0.kind": "cond", "r-1-0.field": "first_name", "r-1-0.op": "starts_with", "r-1-0.value": "per",
        "r-1-0.ci": "on", "r-1-1.kind": "link", "r-1-1.link": "purchases", "r-1-1.having": "count",
        "r-1-1.count_op": "gte", "r-1-1.count_value": "2"})
    html = html_of(client.post(url("audience-count"), nested))
    assert 'data-count="1"' in html
    tree = json.loads(re.search(r'data-testid="live-json">(.*?)</pre>', html, re.S).group(1).replace("&quot;", '"'))
    assert tree == {"all": [
        {"field": "country", "op": "eq", "value": "FR"},
        {"any": [{"field": "first_name", "op": "starts_with", "value": "per", "case_insensitive": True},
                 {"link": "purchases", "having": {"count": {"op": "gte", "value": 2}}}]}]}
    bad = rules(FR, {"kind": "cond", "field": "birth_date", "op": "gt", "value": "soon"})
    response = client.post(url("audience-count"), bad)
    assert response.status_code == 200
    html = html_of(response)
    assert "Invalid rules" in html and "<code>all[1].value</code>" in html and "not a date" in html
    # The builder pins the problem on the rule it is about.
    html = html_of(client.post(url("audience-builder"), bad))
    rule = html.split('data-rule="r-1"')[1].split('data-rule=')[0]
    assert "rule__problems" in rule and "not a date" in rule


@pytest.mark.parametrize("value", ["", "abc", "1e999999", "[1,2", '{"var": "x"}'])
def test_hostile_values_are_problems_never_500(world, portal, value):
    client = portal("acme", "marketer")
    for field, op in (("birth_date", "between"), ("country", "in"), ("email_opt_in", "eq"), ("_created_at", "within_last")):
        response = client.post(url("audience-count"), rules({"kind": "cond", "field": field, "op": op, "value": value}))
        assert response.status_code == 200
    response = client.post(url("audience-count"), rules(mode="json", filter_json=value or "{"))
    assert response.status_code == 200 and "Invalid rules" in html_of(response)


def test_rules_and_json_convert_both_ways(world, portal):
    client = portal("acme", "marketer")
    html = html_of(client.post(url("audience-builder"), rules(FR, action="to-json")))
    assert 'name="filter_json"' in html and "&quot;country&quot;" in html and 'name="mode" value="json"' in html
    tree = {"any": [{"field": "country", "op": "in", "value": ["FR", "DE"]}, {"not": {"field": "email", "op": "is_null"}}]}
    html = html_of(client.post(url("audience-builder"), rules(mode="json", filter_json=json.dumps(tree),
                                                               action="to-rules")))
    assert 'name="mode" value="rules"' in html and 'value="FR, DE"' in html and '<option value="none" selected>' in html
    # What the builder cannot show stays JSON, with a message.
    variable = {"field": "country", "op": "eq", "value": {"var": "c"}}
    html = html_of(client.post(url("audience-builder"), rules(mode="json", filter_json=json.dumps(variable),
                                                               action="to-rules")))
    assert 'name="mode" value="json"' in html and "cannot show this filter" in html


def test_save_as_dynamic_audience_then_edit_it(world, portal):
    client, acme = portal("acme", "marketer"), world.purchase.tenant
    response = client.post(url("audience-new"), rules(FR, name="French buyers", description="FR",
                                                       action="save-dynamic"))
    assert response.status_code == 302
    with tenant_scope(acme):
        audience = Audience.objects.get(name="French buyers")
    assert response["Location"] == url("audience-detail", audience_id=audience.pk)
    assert (audience.kind, audience.filter, audience.count) == (
        "dynamic", {"all": [{"field": "country", "op": "eq", "value": "FR"}]}, 1)
    html = html_of(client.get(url("audience-edit", audience_id=audience.pk)))
    assert 'value="FR"' in html and "French buyers" in html and 'name="schema" value="profile"' in html
    response = client.post(url("audience-edit", audience_id=audience.pk), rules(
        {"kind": "cond", "field": "country", "op": "in", "value": "FR, DE"}, name="Europeans",
        audience=audience.pk, action="save-dynamic"))
    assert response.status_code == 302
    audience.refresh_from_db()
    assert (audience.name, audience.count) == ("Europeans", 2)
    assert audience.filter == {"all": [{"field": "country", "op": "in", "value": ["FR", "DE"]}]}


def test_freeze_as_static_list(world, portal):
    client, acme = portal("acme", "admin"), world.purchase.tenant
    response = client.post(url("audience-new"), rules({"kind": "link", "link": "purchases", "having": "exists"},
                                                      name="Buyers now", action="save-static"))
    assert response.status_code == 302
    with tenant_scope(acme):
        audience = Audience.objects.get(name="Buyers now")
        members = set(AudienceMember.objects.filter(audience=audience).values_list("record_key", flat=True))
    assert audience.kind == "static" and members == {"acme-p1", "acme-p2"}
    assert client.get(url("audience-edit", audience_id=audience.pk)).status_code == 302  # frozen


@pytest.mark.parametrize(("data", "shown"), [
    (rules(FR, name="", action="save-dynamic"), "Give a name."),
    (rules(FR, name="French profiles", action="save-dynamic"), "Already taken."),
    (rules({"kind": "cond", "field": "birth_date", "op": "gt", "value": "soon"}, name="X", action="save-static"),
     "not a date"),
    (rules(name="X", mode="json", filter_json="{oops", action="save-dynamic"), "The filter is not valid JSON"),
])
def test_bad_audience_input_is_a_message_and_stores_nothing(world, portal, data, shown):
    acme = world.purchase.tenant
    response = portal("acme", "marketer").post(url("audience-new"), data)
    assert response.status_code in (400, 409)
    assert shown in html_of(response)
    assert count(acme, Audience) == 2 and count(acme, AudienceMember) == 2


def test_audience_detail_count_sample_export_refresh_delete(world, portal):
    client, acme = portal("acme", "marketer"), world.purchase.tenant
    profile_upsert(tenant=acme, values={"id": "acme-p3", "country": "FR", "first_name": "=HYPERLINK()"}, by=None)
    html = html_of(client.get(url("audience-detail", audience_id=world.dynamic.pk)))
    assert 'data-testid="audience-count">2<' in html and "acme-p3" in html and "Country is FR" in html
    assert f'href="{url("audience-export", audience_id=world.dynamic.pk)}"' in html
    response = client.get(url("audience-export", audience_id=world.dynamic.pk))
    assert response["Content-Disposition"] == 'attachment; filename="french-profiles.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["key", "id", "email"] and [r[0] for r in rows[1:]] == ["acme-p1", "acme-p3"]
    assert "'=HYPERLINK()" in rows[2]
    assert client.post(url("audience-refresh", audience_id=world.dynamic.pk)).status_code == 302
    world.dynamic.refresh_from_db()
    assert world.dynamic.count == 2
    assert client.post(url("audience-delete", audience_id=world.static.pk)).status_code == 302
    assert count(acme, Audience, pk=world.static.pk) == 0 and count(acme, AudienceMember) == 0


# --- The rule builder's translation ----------------------------------------------------------------


def test_rule_paths_map_the_compilers_problems_to_rules():
    root = rb.from_form({"r.match": "none", "r-0.kind": "cond", "r-0.field": "a", "r-0.op": "eq", "r-0.value": "1",
                         "r-1.kind": "link", "r-1.link": "l", "r-1.match": "any", "r-1-0.kind": "cond",
                         "r-1-0.field": "b", "r-1-0.op": "is_null", "r-5.kind": "cond", "r-9-0.kind": "cond",
                         "x.kind": "cond"})
    assert [rule.path for rule in root.walk()] == ["r", "r-0", "r-1", "r-1-0", "r-2"]  # compacted, orphans out
    tree, paths = rb.to_filter(root)
    assert tree == {"not": {"any": [{"field": "a", "op": "eq", "value": "1"},
                                    {"link": "l", "where": {"any": [{"field": "b", "op": "is_null"}]}},
                                    {"field": "", "op": "", "value": ""}]}}
    rb.place_problems(root, [{"path": "not.any[1].where.any[0].field", "message": "m1"},
                             {"path": "not.any[1].having", "message": "m2"}, {"path": "", "message": "m3"}], paths)
    assert root.find("r-1-0").problems == ["m1"] and root.find("r-1").problems == ["m2"] and root.problems == ["m3"]


def test_filters_the_builder_can_show_come_back_the_same():
    tree = {"all": [{"field": "country", "op": "in", "value": ["FR", "a,b"]},
                    {"any": [{"field": "age", "op": "between", "value": [18, 30]},
                             {"link": "purchases", "where": {"all": [{"field": "amount", "op": "gt", "value": 10}]},
                              "having": {"count": {"op": "gte", "value": 2}}}]},
                    {"not": {"any": [{"field": "email", "op": "ends_with", "value": "@x.org",
                                      "case_insensitive": True}]}}]}
    again, _ = rb.to_filter(rb.from_filter(tree))
    assert again == {"all": [{"field": "country", "op": "in", "value": ["FR", "a,b"]},
                             {"any": [{"field": "age", "op": "between", "value": ["18", "30"]},
                                      {"link": "purchases", "where": {"all": [{"field": "amount", "op": "gt",
                                                                              "value": "10"}]},
                                       "having": {"count": {"op": "gte", "value": 2}}}]},
                             {"not": {"any": [{"field": "email", "op": "ends_with", "value": "@x.org",
                                               "case_insensitive": True}]}}]}
    for unsupported in ({"field": "a", "op": "eq", "value": {"var": "x"}},
                        {"link": "p", "having": {"sum": {"field": "x", "op": "gt", "value": 1}}}, [1], "x"):
        with pytest.raises(rb.NotRepresentable):
            rb.from_filter(unsupported)


def test_a_file_over_the_size_limit_is_refused_while_it_arrives(world, portal, media, monkeypatch):
    from apps.schemas.api import imports as import_api

    monkeypatch.setattr(import_api, "MAX_UPLOAD_BYTES", 10)
    response = upload(portal("acme", "marketer"))
    assert response.status_code == 400
    assert "The file is larger than 0 MiB." in html_of(response)
    assert count(world.purchase.tenant, ImportJob) == 1
    assert [p.name for p in media.rglob("*") if p.is_file()] == [world.job.file.rsplit("/", 1)[-1]]


def test_a_schema_may_be_named_like_a_page(world, portal):
    client = portal("acme", "admin")
    for name in ("new", "edit", "schemas"):
        response = client.post(url("schema-new"), {"name": name, "key_name": "id", "key_type": "string"})
        assert response.status_code == 302, name
        assert client.get(response["Location"]).status_code == 200
        assert client.get(url("record-list", schema_name=name)).status_code == 200


def test_the_builder_works_without_javascript(world, portal):
    """Every button of the builder also posts the whole form to the page, which answers the page."""
    client = portal("acme", "marketer")
    response = client.post(url("audience-new"), rules(FR, name="Draft", action="add-cond:r"))
    html = html_of(response)
    assert response.status_code == 200 and "<!doctype html>" in html
    assert 'name="r-1.kind" value="cond"' in html and 'value="Draft"' in html
    assert 'data-testid="live-count" data-count="1"' not in html  # the new, empty condition is a problem now
    response = client.post(url("audience-new"), rules(FR, name="Draft", action="refresh"))
    assert 'data-testid="live-count" data-count="1"' in html_of(response)
    assert count(world.purchase.tenant, Audience, name="Draft") == 0
