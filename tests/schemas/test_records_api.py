"""Records of any schema through the API, and filter queries."""

from __future__ import annotations

import json

import pytest

from tests.schemas.world import build_purchases

pytestmark = pytest.mark.django_db

SCHEMAS = "/api/v1/schemas/"


@pytest.fixture
def purchases(acme, people):
    return build_purchases(acme, by=None)


@pytest.fixture
def marketer(api):
    return api("acme", "marketer")


def records_url(schema, key=None):
    return f"{SCHEMAS}{schema}/records/" + (f"{key}/" if key else "")


def test_create_validates_every_value_and_names_each_field_in_error(marketer, purchases):
    response = marketer.post(records_url(purchases.name), {
        "amount": "a lot", "purchased_at": "yesterday", "channel": "phone", "colour": "red"})
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert fields == {
        "amount": ["not a number"],
        "purchased_at": ["not a date and time (ISO 8601)"],
        "channel": ["not one of web, store"],
        "colour": ["Unknown field."],
        "order_id": ["This field is required."],
    }


def test_create_stores_canonical_values_and_defaults(marketer, api):
    response = marketer.post(records_url("profile"), {"id": "p-9", "email": " Ann@Example.COM ",
                                                      "phone": "+33 6 12 34 56 78", "birth_date": "1990-02-03"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["key"] == "p-9"
    assert body["values"] == {"id": "p-9", "email": "ann@example.com", "phone": "+33612345678",
                              "birth_date": "1990-02-03", "email_opt_in": True, "sms_opt_in": False,
                              "push_tokens": []}
    assert api("acme", "viewer").get(records_url("profile", "p-9")).json()["values"]["email"] == "ann@example.com"
    again = marketer.post(records_url("profile"), {"id": "p-9"})
    assert again.status_code == 409 and again.json()["error"]["fields"] == {
        "id": ["A record with this key already exists."]}


def test_integer_keys_are_their_text(admin_api_acme):
    admin = admin_api_acme
    admin.post(SCHEMAS, {"name": "ticket", "primary_key": {"name": "number", "type": "integer"}})
    response = admin.post(records_url("ticket"), {"number": "0042"})
    assert response.status_code == 201 and response.json()["key"] == "42"
    assert admin.get(records_url("ticket", "42")).json()["values"] == {"number": 42}


@pytest.fixture
def admin_api_acme(api):
    return api("acme", "admin")


def test_patch_merges_put_replaces_and_the_key_stays(marketer, purchases):
    url = records_url(purchases.name, "acme-o1")
    response = marketer.patch(url, {"channel": "store"})
    assert response.status_code == 200
    assert response.json()["values"]["amount"] == 19.9 and response.json()["values"]["channel"] == "store"

    response = marketer.patch(url, {"amount": None})
    assert "amount" not in response.json()["values"]

    response = marketer.put(url, {"profile_id": "acme-p2"})
    assert response.status_code == 200
    assert response.json()["values"] == {"order_id": "acme-o1", "profile_id": "acme-p2"}

    response = marketer.patch(url, {"order_id": "acme-o9"})
    assert response.status_code == 400 and "order_id" in response.json()["error"]["fields"]
    response = marketer.patch(url, {"amount": "x"})
    assert response.status_code == 400 and response.json()["error"]["fields"] == {"amount": ["not a number"]}


def test_required_fields_cannot_be_emptied(admin_api_acme, purchases):
    admin_api_acme.patch(f"{SCHEMAS}{purchases.name}/fields/channel/", {"required": True})
    response = admin_api_acme.patch(records_url(purchases.name, "acme-o1"), {"channel": None})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"channel": ["This field is required."]}


def test_delete(marketer, purchases):
    assert marketer.delete(records_url(purchases.name, "acme-o1")).status_code == 204
    assert marketer.get(records_url(purchases.name, "acme-o1")).status_code == 404
    assert marketer.delete(records_url(purchases.name, "acme-o1")).status_code == 404


def test_list_pages_searches_and_filters(marketer, purchases):
    body = marketer.get(records_url(purchases.name) + "?page_size=2").json()
    assert body["count"] == 3 and [r["key"] for r in body["results"]] == ["acme-o1", "acme-o2"]
    assert body["next"]

    body = marketer.get(records_url("profile") + "?search=P2@ACME").json()
    assert [r["key"] for r in body["results"]] == ["acme-p2"]
    body = marketer.get(records_url("profile") + "?search=acme-p1").json()
    assert [r["key"] for r in body["results"]] == ["acme-p1"]

    tree = {"all": [{"field": "amount", "op": "gte", "value": 10}, {"field": "channel", "op": "eq", "value": "web"}]}
    body = marketer.get(records_url(purchases.name), {"filter": json.dumps(tree)}).json()
    assert [r["key"] for r in body["results"]] == ["acme-o1", "acme-o3"]

    linked = {"link": "purchases", "having": {"count": {"op": "gte", "value": 2}}}
    body = marketer.get(records_url("profile"), {"filter": json.dumps(linked)}).json()
    assert [r["key"] for r in body["results"]] == ["acme-p1"]


def test_a_bad_filter_is_a_400_with_the_path(marketer, purchases):
    tree = {"all": [{"field": "amount", "op": "gte", "value": 10}, {"field": "nope", "op": "eq", "value": 1}]}
    response = marketer.get(records_url(purchases.name), {"filter": json.dumps(tree)})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["filter"][0]["path"] == "all[1].field"
    response = marketer.get(records_url(purchases.name), {"filter": "{not json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_filter"


def test_roles(api, purchases):
    viewer = api("acme", "viewer")
    assert viewer.get(records_url(purchases.name)).status_code == 200
    assert viewer.post(records_url(purchases.name), {"order_id": "x"}).status_code == 403
    assert viewer.patch(records_url(purchases.name, "acme-o1"), {"channel": "web"}).status_code == 403
    assert viewer.delete(records_url(purchases.name, "acme-o1")).status_code == 403
    assert api("acme", "approver").post(records_url(purchases.name), {"order_id": "x"}).status_code == 403
    assert api("acme", "admin").post(records_url(purchases.name), {"order_id": "x"}).status_code == 201


def test_query_counts_and_samples(api, purchases):
    viewer = api("acme", "viewer")
    url = f"{SCHEMAS}profile/query"
    response = viewer.post(url, {"filter": {"link": "purchases", "having": {"sum": {
        "field": "amount", "op": "gte", "value": {"var": "minTotal"}}}}, "variables": {"minTotal": 100},
        "sample_size": 5})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    assert body["sample"][0]["key"] == "acme-p2" and body["sample"][0]["values"]["country"] == "DE"

    everything = viewer.post(url, {}).json()
    assert everything["count"] == 2 and len(everything["sample"]) == 2
    assert viewer.post(url, {"sample_size": 0}).json()["sample"] == []


def test_query_errors_name_the_path(api, purchases):
    viewer = api("acme", "viewer")
    response = viewer.post(f"{SCHEMAS}profile/query", {"filter": {"any": [
        {"field": "country", "op": "eq", "value": "FR"}, {"field": "age", "op": "gte", "value": {"var": "minAge"}}]}})
    assert response.status_code == 400
    paths = [p["path"] for p in response.json()["error"]["fields"]["filter"]]
    assert paths and all(p.startswith("any[1]") for p in paths)
    missing_var = viewer.post(f"{SCHEMAS}profile/query", {"filter": {
        "field": "country", "op": "eq", "value": {"var": "land"}}})
    assert missing_var.status_code == 400
    assert viewer.post(f"{SCHEMAS}nope/query", {}).status_code == 404
