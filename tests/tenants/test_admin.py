"""The Django admin: tenant admins manage their own tenant only; operators see every tenant."""

from __future__ import annotations

from django.test import Client

from apps.tenants.models import Membership


def login(user):
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_tenant_admin_sees_only_their_tenant(people):
    client = login(people["acme"]["admin"].user)
    page = client.get("/admin/tenants/membership/")
    assert page.status_code == 200
    shown = {m.tenant.slug for m in page.context["cl"].result_list}
    assert shown == {"acme"} and page.context["cl"].result_count == 4
    foreign = Membership.dangerously_unscoped.get(user=people["globex"]["admin"].user)
    assert client.get(f"/admin/tenants/membership/{foreign.pk}/change/").status_code in (302, 404)
    assert "Globex" not in client.get("/admin/tenants/tenant/").content.decode()


def test_other_roles_cannot_use_the_admin(people):
    for role in ("marketer", "approver", "viewer"):
        response = login(people["acme"][role].user).get("/admin/tenants/membership/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operator_sees_every_tenant(people, operator):
    page = login(operator).get("/admin/tenants/membership/")
    assert {m.tenant.slug for m in page.context["cl"].result_list} == {"acme", "globex"}
