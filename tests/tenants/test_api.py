"""The tenants API as a user meets it: tokens, tenant resolution, people and operators."""

from __future__ import annotations

from rest_framework.test import APIClient

from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.conftest import api_client_for
from tests.factories import PASSWORD, MembershipFactory


def test_token_for_valid_credentials(people):
    response = APIClient().post("/api/v1/auth/token", {"username": "admin@acme.test", "password": PASSWORD},
                                format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get("/api/v1/me").json()
    assert me["email"] == "admin@acme.test"
    assert me["memberships"] == [{"tenant": "acme", "tenant_name": "Acme Corporation", "role": "admin"}]


def test_token_refused_with_error_body(people):
    response = APIClient().post("/api/v1/auth/token", {"username": "admin@acme.test", "password": "nope"},
                                format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_token_missing_field_names_it(db):
    response = APIClient().post("/api/v1/auth/token", {"username": "x"}, format="json")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid"
    assert "password" in body["fields"]


def test_lockout_after_repeated_failures(people, settings):
    client = APIClient(REMOTE_ADDR="10.0.0.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/api/v1/auth/token", {"username": "marketer@acme.test", "password": "bad"}, format="json")
    response = client.post("/api/v1/auth/token", {"username": "marketer@acme.test", "password": PASSWORD},
                           format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"


def test_unauthenticated_is_401(db):
    response = APIClient().get("/api/v1/tenant")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_user_of_several_tenants_must_name_one(acme, globex, people):
    user = people["acme"]["marketer"].user
    MembershipFactory(tenant=globex, user=user, role="viewer")
    client = api_client_for(user)
    response = client.get("/api/v1/tenant")
    assert response.status_code == 400
    assert "X-Tenant" in response.json()["error"]["fields"]
    client.credentials(HTTP_AUTHORIZATION=client._credentials["HTTP_AUTHORIZATION"], HTTP_X_TENANT="globex")
    assert client.get("/api/v1/tenant").json()["slug"] == "globex"


def test_x_tenant_of_a_foreign_tenant_is_refused(people):
    client = api_client_for(people["globex"]["admin"].user, tenant=people["acme"]["admin"].tenant)
    response = client.get("/api/v1/tenant")
    assert response.status_code == 403


def test_admin_manages_people(api, acme):
    client = api("acme", "admin")
    created = client.post("/api/v1/users/", {"email": "New.Person@Acme.test", "role": "marketer"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["email"] == "new.person@acme.test" and body["role"] == "marketer"
    assert len(body["password"]) >= 12
    user_id = body["id"]

    login = APIClient().post("/api/v1/auth/token", {"username": "new.person@acme.test",
                                                     "password": body["password"]}, format="json")
    assert login.status_code == 200

    changed = client.patch(f"/api/v1/users/{user_id}/", {"role": "approver"}, format="json")
    assert changed.json()["role"] == "approver"
    deactivated = client.post(f"/api/v1/users/{user_id}/deactivate")
    assert deactivated.json()["is_active"] is False
    listed = client.get("/api/v1/users/?role=approver").json()
    assert {row["email"] for row in listed["results"]} == {"approver@acme.test", "new.person@acme.test"}
    with tenant_scope(acme):
        actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert actions.count("member.create") == 1 and actions.count("member.update") == 2


def test_deactivated_member_loses_access(api, people):
    person = people["acme"]["marketer"]
    api("acme", "admin").post(f"/api/v1/users/{person.user.id}/deactivate")
    response = api_client_for(person.user).get("/api/v1/tenant")
    assert response.status_code == 403


def test_adding_an_existing_member_is_a_conflict(api):
    response = api("acme", "admin").post("/api/v1/users/", {"email": "marketer@acme.test", "role": "viewer"},
                                         format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_member"


def test_bad_role_is_400_with_field(api):
    response = api("acme", "admin").post("/api/v1/users/", {"email": "x@acme.test", "role": "boss"}, format="json")
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]


def test_last_admin_cannot_leave(api, people):
    admin = people["acme"]["admin"].user
    response = api("acme", "admin").patch(f"/api/v1/users/{admin.id}/", {"role": "viewer"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_admin"


def test_admin_edits_tenant_settings_and_bad_time_zone_is_400(api):
    client = api("acme", "admin")
    assert client.patch("/api/v1/tenant", {"data_retention_days": 90}, format="json").json()[
        "data_retention_days"] == 90
    response = client.patch("/api/v1/tenant", {"time_zone": "Mars/Olympus"}, format="json")
    assert response.status_code == 400
    assert "time_zone" in response.json()["error"]["fields"]


def test_operator_manages_tenants(operator, db):
    client = api_client_for(operator)
    created = client.post("/api/v1/operator/tenants/", {"name": "Initech", "slug": "initech",
                                                        "time_zone": "Europe/Berlin"}, format="json")
    assert created.status_code == 201, created.content
    tenant_id = created.json()["id"]
    assert client.get(f"/api/v1/operator/tenants/{tenant_id}/").json()["slug"] == "initech"
    duplicate = client.post("/api/v1/operator/tenants/", {"name": "Again", "slug": "initech"}, format="json")
    assert duplicate.status_code == 400 and "slug" in duplicate.json()["error"]["fields"]
    paused = client.patch(f"/api/v1/operator/tenants/{tenant_id}/", {"is_active": False}, format="json")
    assert paused.json()["is_active"] is False


def test_operator_routes_do_not_exist_for_tenant_users(api, acme):
    client = api("acme", "admin")
    assert client.get("/api/v1/operator/tenants/").status_code == 404
    assert client.get(f"/api/v1/operator/tenants/{acme.id}/").status_code == 404


def test_pagination_shape(api):
    body = api("acme", "admin").get("/api/v1/users/?page_size=2").json()
    assert body["count"] == 4 and len(body["results"]) == 2 and body["next"]


def test_openapi_schema_and_docs(api):
    client = api("acme", "admin")
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    assert "/api/v1/users/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_audit_rows_are_immutable_in_the_database(acme, people):
    import pytest
    from django.db import connection, transaction
    from django.db.utils import DatabaseError

    with tenant_scope(acme):
        entry = AuditEntry.objects.create(action="x.y", object_type="t")
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM tenants_auditentry")
    with tenant_scope(acme):
        assert AuditEntry.objects.get(pk=entry.pk).action == "x.y"
