"""Audiences through the API: static lists (frozen), dynamic saved queries, preview, export."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from psycopg import sql

from apps.audiences.models import AudienceMember
from apps.audiences.selectors import audience_get, audience_keys_sql
from apps.profiles.services import profile_upsert
from apps.tenants.scoping import tenant_scope
from tests.schemas.world import build_purchases

pytestmark = pytest.mark.django_db

AUDIENCES = "/api/v1/audiences/"


@pytest.fixture
def marketer(api):
    return api("acme", "marketer")


@pytest.fixture
def world(acme, people):
    build_purchases(acme, by=None)  # profiles acme-p1 (FR, 2 purchases) and acme-p2 (DE, 1 purchase)
    return acme


def keys_of(tenant, audience_id):
    audience = audience_get(tenant=tenant, id=audience_id)
    statement, params = audience_keys_sql(tenant=tenant, audience=audience)
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT key FROM ({}) a ORDER BY key").format(sql.SQL(statement)).as_string(cursor.connection),
                       params)
        return [row[0] for row in cursor.fetchall()]


def export(client, audience_id, query=""):
    response = client.get(f"{AUDIENCES}{audience_id}/export{query}")
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_static_audience_from_keys_reports_unknown_keys(marketer, world):
    response = marketer.post(AUDIENCES, {"name": "Picked", "kind": "static",
                                         "keys": ["acme-p2", "ghost", "acme-p1", "acme-p1"]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["count"] == 2 and body["schema"] == "profile"
    assert body["keys_not_found"] == 1 and body["examples_not_found"] == ["ghost"]
    assert body["created_by"] == "marketer@acme.test"
    assert keys_of(world, body["id"]) == ["acme-p1", "acme-p2"]


def test_static_audience_from_a_filter_is_frozen_and_a_dynamic_one_is_not(marketer, world):
    tree = {"field": "country", "op": "eq", "value": "FR"}
    static = marketer.post(AUDIENCES, {"name": "FR then", "kind": "static", "filter": tree}).json()
    dynamic = marketer.post(AUDIENCES, {"name": "FR now", "kind": "dynamic", "filter": tree}).json()
    assert static["count"] == dynamic["count"] == 1

    profile_upsert(tenant=world, values={"id": "acme-p3", "country": "FR"}, by=None)
    assert keys_of(world, static["id"]) == ["acme-p1"]
    assert keys_of(world, dynamic["id"]) == ["acme-p1", "acme-p3"]
    assert marketer.get(f"{AUDIENCES}{dynamic['id']}/preview").json()["count"] == 2

    refreshed = marketer.post(f"{AUDIENCES}{dynamic['id']}/refresh")
    assert refreshed.status_code == 200 and refreshed.json()["count"] == 2
    assert marketer.post(f"{AUDIENCES}{static['id']}/refresh").status_code == 409
    frozen = marketer.patch(f"{AUDIENCES}{static['id']}/", {"filter": {"field": "country", "op": "eq", "value": "DE"}})
    assert frozen.status_code == 409

    changed = marketer.patch(f"{AUDIENCES}{dynamic['id']}/", {"filter": {"field": "country", "op": "eq", "value": "DE"},
                                                               "name": "DE now"})
    assert changed.status_code == 200 and changed.json()["count"] == 1 and changed.json()["name"] == "DE now"


def test_dynamic_audiences_over_links_and_other_schemas(marketer, world):
    buyers = marketer.post(AUDIENCES, {"name": "Repeat buyers", "kind": "dynamic", "filter": {
        "link": "purchases", "having": {"count": {"op": "gte", "value": 2}}}}).json()
    assert keys_of(world, buyers["id"]) == ["acme-p1"]
    big = marketer.post(AUDIENCES, {"name": "Big orders", "kind": "static", "schema": "acme_purchase",
                                    "filter": {"field": "amount", "op": "gt", "value": 10}}).json()
    assert big["schema"] == "acme_purchase" and keys_of(world, big["id"]) == ["acme-o1", "acme-o3"]


def test_filters_are_validated_with_paths(marketer, world):
    response = marketer.post(AUDIENCES, {"name": "Bad", "kind": "dynamic", "filter": {
        "all": [{"field": "country", "op": "eq", "value": "FR"}, {"field": "age", "op": "gt", "value": 3}]}})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["filter"][0]["path"] == "all[1].field"
    # a saved audience has no event variables to read
    response = marketer.post(AUDIENCES, {"name": "Var", "kind": "dynamic", "filter": {
        "field": "country", "op": "eq", "value": {"var": "land"}}})
    assert response.status_code == 400
    assert marketer.post(AUDIENCES, {"name": "Both", "kind": "static", "keys": ["a"],
                                     "filter": {"all": []}}).status_code == 400
    assert marketer.post(AUDIENCES, {"name": "None", "kind": "dynamic"}).status_code == 400
    assert marketer.post(AUDIENCES, {"name": "X", "kind": "static", "keys": ["a"], "schema": "nope"}).status_code == 400
    marketer.post(AUDIENCES, {"name": "Dup", "kind": "static", "keys": ["acme-p1"]})
    assert marketer.post(AUDIENCES, {"name": "Dup", "kind": "static", "keys": ["acme-p1"]}).status_code == 409


def test_preview_counts_and_samples(marketer, world):
    audience = marketer.post(AUDIENCES, {"name": "All", "kind": "dynamic", "filter": {}}).json()
    preview = marketer.get(f"{AUDIENCES}{audience['id']}/preview?sample_size=1").json()
    assert preview["count"] == 2
    assert preview["sample"] == [{"key": "acme-p1", "values": preview["sample"][0]["values"]}]
    assert preview["sample"][0]["values"]["country"] == "FR"


def test_export_streams_csv_with_formulas_neutralised(marketer, world):
    profile_upsert(tenant=world, values={"id": "=cmd|' /C calc'!A0", "first_name": "=HYPERLINK(\"http://x\")",
                                         "last_name": "+1+1", "language": "-2", "country": "@SUM(A1)"}, by=None)
    profile_upsert(tenant=world, values={"id": "acme-p1", "first_name": "\tTab", "last_name": "\rReturn"}, by=None)
    audience = marketer.post(AUDIENCES, {"name": "Everyone", "kind": "dynamic", "filter": {}}).json()

    rows = export(marketer, audience["id"], "?fields=first_name,last_name,language,country,email_opt_in")
    assert rows[0] == ["key", "first_name", "last_name", "language", "country", "email_opt_in"]
    by_key = {row[0]: row for row in rows[1:]}
    assert by_key["'=cmd|' /C calc'!A0"] == ["'=cmd|' /C calc'!A0", "'=HYPERLINK(\"http://x\")", "'+1+1", "'-2",
                                             "'@SUM(A1)", "true"]
    assert by_key["acme-p1"][1:3] == ["'\tTab", "'\rReturn"]
    assert by_key["acme-p2"] == ["acme-p2", "Person2", "", "", "DE", "true"]

    everything = export(marketer, audience["id"])
    assert everything[0][:3] == ["key", "id", "email"] and len(everything) == 4

    response = marketer.get(f"{AUDIENCES}{audience['id']}/export?fields=nope")
    assert response.status_code == 400


def test_export_of_a_static_audience_lists_its_members_in_key_order(api, world):
    viewer = api("acme", "viewer")
    audience = api("acme", "marketer").post(AUDIENCES, {"name": "Two", "kind": "static",
                                                        "keys": ["acme-p2", "acme-p1"]}).json()
    rows = export(viewer, audience["id"], "?fields=email")
    assert rows == [["key", "email"], ["acme-p1", "p1@acme.test"], ["acme-p2", "p2@acme.test"]]


def test_delete_removes_members(marketer, world, acme):
    audience = marketer.post(AUDIENCES, {"name": "Gone", "kind": "static", "keys": ["acme-p1"]}).json()
    assert marketer.delete(f"{AUDIENCES}{audience['id']}/").status_code == 204
    assert marketer.get(f"{AUDIENCES}{audience['id']}/").status_code == 404
    with tenant_scope(acme):
        assert not AudienceMember.objects.filter(audience_id=audience["id"]).exists()


def test_roles_and_tenants(api, world):
    viewer = api("acme", "viewer")
    audience = api("acme", "marketer").post(AUDIENCES, {"name": "Mine", "kind": "static", "keys": ["acme-p1"]}).json()
    assert viewer.get(AUDIENCES).json()["count"] == 1
    assert viewer.get(f"{AUDIENCES}{audience['id']}/preview").status_code == 200
    assert viewer.post(AUDIENCES, {"name": "No", "kind": "static", "keys": ["acme-p1"]}).status_code == 403
    assert viewer.delete(f"{AUDIENCES}{audience['id']}/").status_code == 403
    assert api("acme", "approver").post(f"{AUDIENCES}{audience['id']}/refresh").status_code == 403
    stranger = api("globex", "admin")
    for suffix in ("", "preview", "export"):
        assert stranger.get(f"{AUDIENCES}{audience['id']}/{suffix}").status_code == 404
    assert stranger.get(AUDIENCES).json()["count"] == 0


def test_a_schema_with_audiences_cannot_be_deleted(api, world):
    api("acme", "marketer").post(AUDIENCES, {"name": "Orders", "kind": "static", "schema": "acme_purchase",
                                             "keys": ["acme-o1"]})
    response = api("acme", "admin").delete("/api/v1/schemas/acme_purchase/?force=true")
    assert response.status_code == 409
    assert response.json()["error"]["fields"]["users"][0]["name"] == "Orders"
