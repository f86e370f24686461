"""Schemas, fields and links through the API, as a tenant admin would manage them."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.audiences.services import audience_create
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.schemas.world import build_purchases, purchase_schema_name

pytestmark = pytest.mark.django_db

SCHEMAS = "/api/v1/schemas/"


@pytest.fixture
def admin(api):
    return api("acme", "admin")


@pytest.fixture
def purchases(acme, people):
    return build_purchases(acme, by=people["acme"]["admin"].user)


def _records(client, schema):
    body = client.get(f"{SCHEMAS}{schema}/records/?page_size=500").json()
    return {row["key"]: row["values"] for row in body["results"]}


def _error(response):
    return response.json()["error"]


def test_admin_creates_a_schema_and_everyone_reads_it(admin, api):
    response = admin.post(SCHEMAS, {
        "name": "store", "label": "Stores", "primary_key": {"name": "code", "type": "string"},
        "fields": [{"name": "city", "type": "string", "indexed": True},
                   {"name": "size", "type": "enum", "enum_values": ["s", "m", "l"], "default": "m"}],
    })
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["primary_key"] == "code"
    assert [(f["name"], f["type"], f["is_primary_key"]) for f in body["fields"]] == [
        ("code", "string", True), ("city", "string", False), ("size", "enum", False)]
    assert body["fields"][0]["required"] is True

    viewer = api("acme", "viewer")
    names = [row["name"] for row in viewer.get(SCHEMAS).json()["results"]]
    assert names == ["profile", "store"]
    assert viewer.get(f"{SCHEMAS}store/fields/size/").json()["default"] == "m"


def test_only_tenant_admins_change_schemas(api):
    for role in ("marketer", "approver", "viewer"):
        response = api("acme", role).post(SCHEMAS, {"name": "x", "primary_key": {"name": "id", "type": "string"}})
        assert response.status_code == 403
    assert api("acme", "marketer").patch(f"{SCHEMAS}profile/fields/first_name/", {"label": "x"}).status_code == 403


def test_schema_definitions_are_validated(admin):
    response = admin.post(SCHEMAS, {"name": "Bad Name", "primary_key": {"name": "id", "type": "string"}})
    assert response.status_code == 400 and "name" in _error(response)["fields"]

    response = admin.post(SCHEMAS, {"name": "thing", "primary_key": {"name": "id", "type": "json"}})
    assert response.status_code == 400 and "primary_key" in _error(response)["fields"]

    response = admin.post(SCHEMAS, {"name": "thing", "primary_key": {"name": "id", "type": "string"},
                                    "fields": [{"name": "n", "type": "integer", "default": "many"}]})
    assert response.status_code == 400
    assert _error(response)["fields"] == {"fields.0.default": ["not an integer"]}

    response = admin.post(SCHEMAS, {"name": "profile", "primary_key": {"name": "id", "type": "string"}})
    assert response.status_code == 409 and _error(response)["code"] == "exists"


def test_built_in_profile_is_protected(admin):
    assert admin.delete(f"{SCHEMAS}profile/").status_code == 409
    response = admin.delete(f"{SCHEMAS}profile/fields/email/")
    assert response.status_code == 409 and _error(response)["code"] == "builtin"
    response = admin.patch(f"{SCHEMAS}profile/fields/email/", {"type": "string"})
    assert response.status_code == 409 and _error(response)["code"] == "builtin"
    # what the tenant may still do with a built-in field: relabel it
    response = admin.patch(f"{SCHEMAS}profile/fields/email/", {"label": "Courriel"})
    assert response.status_code == 200 and response.json()["label"] == "Courriel"
    # and add fields of its own to the profile schema, and remove them
    assert admin.post(f"{SCHEMAS}profile/fields/", {"name": "loyalty", "type": "integer"}).status_code == 201
    assert admin.delete(f"{SCHEMAS}profile/fields/loyalty/").status_code == 204


def test_primary_key_cannot_be_removed_retyped_or_made_optional(admin, purchases):
    name = purchases.name
    assert _error(admin.delete(f"{SCHEMAS}{name}/fields/order_id/"))["code"] == "primary_key"
    assert _error(admin.patch(f"{SCHEMAS}{name}/fields/order_id/", {"type": "integer"}))["code"] == "primary_key"
    assert admin.patch(f"{SCHEMAS}{name}/fields/order_id/", {"required": False}).status_code == 400


def test_deleting_a_schema_with_records_needs_force(admin, purchases, acme):
    name = purchases.name
    response = admin.delete(f"{SCHEMAS}{name}/")
    assert response.status_code == 409
    assert _error(response)["fields"]["count"] == 3
    assert _error(response)["fields"]["links"] == ["profile.purchases"]
    # profile.purchases points at it: force removes that link too
    assert admin.delete(f"{SCHEMAS}{name}/?force=true").status_code == 204
    assert admin.get(f"{SCHEMAS}{name}/").status_code == 404
    assert [link["name"] for link in admin.get(f"{SCHEMAS}profile/links/").json()["results"]] == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM schemas_record WHERE tenant_id = %s AND schema_id = %s",
                       [acme.pk, purchases.pk])
        assert cursor.fetchone()[0] == 0


def test_changing_a_type_converts_every_value_when_all_fit(admin, purchases):
    name = purchases.name
    admin.post(f"{SCHEMAS}{name}/fields/", {"name": "qty", "type": "string"})
    for key, qty in (("acme-o1", " 42 "), ("acme-o2", "+7"), ("acme-o3", "")):
        assert admin.patch(f"{SCHEMAS}{name}/records/{key}/", {"qty": qty}).status_code == 200

    response = admin.patch(f"{SCHEMAS}{name}/fields/qty/", {"type": "integer"})
    assert response.status_code == 200, response.content
    assert response.json()["type"] == "integer"
    records = _records(admin, name)
    assert records["acme-o1"]["qty"] == 42
    assert records["acme-o2"]["qty"] == 7
    assert "qty" not in records["acme-o3"]  # "" is no value for an integer


def test_changing_a_type_is_refused_with_count_and_examples_when_values_do_not_fit(admin, purchases):
    name = purchases.name
    admin.post(f"{SCHEMAS}{name}/fields/", {"name": "ref", "type": "string"})
    for key, ref in (("acme-o1", "12"), ("acme-o2", "twelve"), ("acme-o3", "1.5")):
        admin.patch(f"{SCHEMAS}{name}/records/{key}/", {"ref": ref})

    response = admin.patch(f"{SCHEMAS}{name}/fields/ref/", {"type": "integer"})
    assert response.status_code == 409
    error = _error(response)
    assert error["code"] == "values_do_not_fit"
    assert error["fields"]["count"] == 2
    assert error["fields"]["examples"] == [{"key": "acme-o2", "value": "twelve"}, {"key": "acme-o3", "value": "1.5"}]
    # nothing changed
    assert admin.get(f"{SCHEMAS}{name}/fields/ref/").json()["type"] == "string"
    assert _records(admin, name)["acme-o1"]["ref"] == "12"
    # to decimal, they all fit
    assert admin.patch(f"{SCHEMAS}{name}/fields/ref/", {"type": "decimal"}).status_code == 409  # "twelve"
    admin.patch(f"{SCHEMAS}{name}/records/acme-o2/", {"ref": None})
    assert admin.patch(f"{SCHEMAS}{name}/fields/ref/", {"type": "decimal"}).status_code == 200
    records = _records(admin, name)
    assert records["acme-o1"]["ref"] == 12 and records["acme-o3"]["ref"] == 1.5


def test_examples_are_limited_to_ten(admin, purchases):
    name = purchases.name
    wider = admin.patch(f"{SCHEMAS}{name}/fields/channel/", {"enum_values": ["web", "store"] + [f"shop{n}" for n in range(12)]})
    assert wider.status_code == 200
    for n in range(12):
        assert admin.post(f"{SCHEMAS}{name}/records/", {"order_id": f"bad-{n:02}", "channel": f"shop{n}"}).status_code == 201
    response = admin.patch(f"{SCHEMAS}{name}/fields/channel/", {"enum_values": ["web", "store"]})
    assert response.status_code == 409
    assert _error(response)["fields"]["count"] == 12
    assert len(_error(response)["fields"]["examples"]) == 10


def test_enum_values_of_a_new_enum_and_dates(admin, purchases):
    name = purchases.name
    admin.post(f"{SCHEMAS}{name}/fields/", {"name": "day", "type": "string"})
    admin.patch(f"{SCHEMAS}{name}/records/acme-o1/", {"day": "20260105"})
    admin.patch(f"{SCHEMAS}{name}/records/acme-o2/", {"day": "2026-02-30"})
    response = admin.patch(f"{SCHEMAS}{name}/fields/day/", {"type": "date"})
    assert response.status_code == 409 and _error(response)["fields"]["examples"] == [
        {"key": "acme-o2", "value": "2026-02-30"}]
    admin.patch(f"{SCHEMAS}{name}/records/acme-o2/", {"day": "2026-02-28"})
    assert admin.patch(f"{SCHEMAS}{name}/fields/day/", {"type": "date"}).status_code == 200
    assert _records(admin, name)["acme-o1"]["day"] == "2026-01-05"
    # datetime keeps its canonical UTC form
    assert admin.patch(f"{SCHEMAS}{name}/fields/day/", {"type": "datetime"}).status_code == 200
    assert _records(admin, name)["acme-o2"]["day"] == "2026-02-28T00:00:00Z"
    # a choice field needs its values
    response = admin.patch(f"{SCHEMAS}{name}/fields/day/", {"type": "enum"})
    assert response.status_code == 400 and "enum_values" in _error(response)["fields"]


def test_making_a_field_required(admin, purchases):
    name = purchases.name
    admin.patch(f"{SCHEMAS}{name}/records/acme-o2/", {"channel": None})
    response = admin.patch(f"{SCHEMAS}{name}/fields/channel/", {"required": True})
    assert response.status_code == 409
    assert _error(response)["fields"] == {"count": 1, "examples": [{"key": "acme-o2", "value": None}]}
    # with a default, the records lacking a value receive it
    response = admin.patch(f"{SCHEMAS}{name}/fields/channel/", {"required": True, "default": "store"})
    assert response.status_code == 200
    assert _records(admin, name)["acme-o2"]["channel"] == "store"


def test_adding_a_required_field_to_a_schema_with_records_needs_a_default(admin, purchases):
    name = purchases.name
    response = admin.post(f"{SCHEMAS}{name}/fields/", {"name": "currency", "type": "string", "required": True})
    assert response.status_code == 400 and "default" in _error(response)["fields"]
    response = admin.post(f"{SCHEMAS}{name}/fields/", {"name": "currency", "type": "string", "required": True,
                                                       "default": "EUR"})
    assert response.status_code == 201
    assert {values["currency"] for values in _records(admin, name).values()} == {"EUR"}
    assert admin.post(f"{SCHEMAS}{name}/fields/", {"name": "currency", "type": "string"}).status_code == 409


def test_removing_a_field_used_by_an_audience_is_refused_with_its_users(admin, acme, people, purchases):
    audience, _ = audience_create(tenant=acme, name="Big spenders", kind="dynamic", by=None, filter={
        "link": "purchases", "having": {"sum": {"field": "amount", "op": "gte", "value": 100}}})
    response = admin.delete(f"{SCHEMAS}{purchases.name}/fields/amount/")
    assert response.status_code == 409
    assert _error(response)["fields"]["users"] == [{"type": "audience", "id": audience.pk, "name": "Big spenders"}]
    response = admin.delete(f"{SCHEMAS}profile/links/purchases/")
    assert response.status_code == 409
    assert _error(response)["fields"]["users"][0]["name"] == "Big spenders"
    # a field a link joins on is in use by the link
    response = admin.delete(f"{SCHEMAS}{purchases.name}/fields/profile_id/")
    assert response.status_code == 409
    assert {u["name"] for u in _error(response)["fields"]["users"]} == {
        f"{purchases.name}.profile", "profile.purchases"}
    # an unused field goes, with its values
    assert admin.delete(f"{SCHEMAS}{purchases.name}/fields/channel/").status_code == 204
    assert all("channel" not in values for values in _records(admin, purchases.name).values())
    # once the audience is gone, so can the field be
    assert api_delete(admin, f"/api/v1/audiences/{audience.pk}/") == 204
    assert admin.delete(f"{SCHEMAS}profile/links/purchases/").status_code == 204
    assert admin.delete(f"{SCHEMAS}{purchases.name}/fields/amount/").status_code == 204


def api_delete(client, url):
    return client.delete(url).status_code


def test_links_join_on_keys(admin, purchases):
    name = purchases.name
    admin.post(SCHEMAS, {"name": "store", "primary_key": {"name": "code", "type": "string"}})
    admin.post(f"{SCHEMAS}{name}/fields/", {"name": "store_code", "type": "string"})
    response = admin.post(f"{SCHEMAS}{name}/links/", {"name": "store", "target": "store", "kind": "many_to_one",
                                                      "source_field": "store_code", "target_field": "code",
                                                      "reverse_name": "sales"})
    assert response.status_code == 201, response.content
    assert response.json()["reverse"]["schema"] == "store"
    store_links = admin.get(f"{SCHEMAS}store/links/").json()["results"]
    assert [(link["name"], link["kind"], link["target"], link["source_field"], link["target_field"])
            for link in store_links] == [("sales", "one_to_many", name, "code", "store_code")]

    bad = admin.post(f"{SCHEMAS}{name}/links/", {"name": "x", "target": "store", "kind": "many_to_one",
                                                 "source_field": "store_code", "target_field": "store_code"})
    assert bad.status_code == 400  # target has no such field
    bad = admin.post(f"{SCHEMAS}{name}/links/", {"name": "x", "target": "profile", "kind": "many_to_one",
                                                 "source_field": "profile_id", "target_field": "email"})
    assert bad.status_code == 400 and "target_field" in _error(bad)["fields"]  # not the target's key
    bad = admin.post(f"{SCHEMAS}{name}/links/", {"name": "amount", "target": "store", "kind": "many_to_one",
                                                 "source_field": "store_code", "target_field": "code"})
    assert bad.status_code == 409  # a field already has this name
    assert admin.get(f"{SCHEMAS}{name}/links/store/").json()["target"] == "store"
    assert admin.delete(f"{SCHEMAS}{name}/links/store/").status_code == 204
    assert admin.get(f"{SCHEMAS}{name}/links/store/").status_code == 404


def test_schema_changes_are_audited(admin, acme, purchases):
    admin.patch(f"{SCHEMAS}{purchases.name}/", {"label": "Orders"})
    admin.patch(f"{SCHEMAS}{purchases.name}/fields/amount/", {"indexed": False})
    with tenant_scope(acme):
        actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert {"schema.create", "link.create", "schema.update", "field.update"} <= set(actions)
    assert admin.get(f"{SCHEMAS}{purchases.name}/").json()["label"] == "Orders"


def test_retyping_an_indexed_number_drops_its_typed_index_first(admin, acme, purchases):
    """An index on `(...)::numeric` could not hold the new text values: it goes before the
    values are rewritten (in a transaction, as here, by a plain DROP INDEX)."""
    name = purchases.name
    from apps.schemas import indexes

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        index = next(i for i in indexes.wanted_indexes(tenant_id=acme.pk, schema_id=purchases.pk)
                     if "numeric" in i.expression.as_string(None))
        cursor.execute(index.create_sql(tenant_id=acme.pk, schema_id=purchases.pk).as_string(None).replace(
            "CONCURRENTLY ", ""))
    response = admin.patch(f"{SCHEMAS}{name}/fields/amount/", {"type": "boolean"})
    assert response.status_code == 409  # 19.9 is not yes/no: refused, in a transaction rolled back
    admin.patch(f"{SCHEMAS}{name}/fields/amount/", {"type": "string"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [index.name])
        assert cursor.fetchone()[0] == 0
    assert _records(admin, name)["acme-o1"]["amount"] == "19.9"


def test_names_route_to_the_tenants_own_objects(api, acme, globex, people):
    build_purchases(acme, by=None)
    build_purchases(globex, by=None)
    acme_admin, globex_admin = api("acme", "admin"), api("globex", "admin")
    assert globex_admin.get(f"{SCHEMAS}{purchase_schema_name(acme)}/").status_code == 404
    assert globex_admin.get(f"{SCHEMAS}profile/records/acme-p1/").status_code == 404
    assert acme_admin.get(f"{SCHEMAS}profile/records/acme-p1/").status_code == 200
