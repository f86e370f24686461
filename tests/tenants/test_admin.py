"""The Django admin: tenant admins manage their own tenant only; operators see every tenant."""

from __future__ import annotations

from django.contrib import admin
from django.test import Client

from apps.core.admin_site import ReadOnlyTenantOwnedAdmin
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


def test_rows_written_by_the_services_are_read_only_in_the_admin(people, operator):
    """Records, the consent history, the audit trail and schedules (ReadOnlyTenantOwnedAdmin):
    listed, never added, changed or deleted from the admin, not even by an operator."""
    for user in (people["acme"]["admin"].user, operator):
        client = login(user)
        for path in ("schemas/record", "profiles/profileconsentevent", "tenants/auditentry", "campaigns/schedule"):
            assert client.get(f"/admin/{path}/").status_code == 200, path
            assert client.get(f"/admin/{path}/add/").status_code == 403, path
    read_only = {model._meta.label for model, model_admin in admin.site._registry.items()
                 if isinstance(model_admin, ReadOnlyTenantOwnedAdmin)}
    assert {"schemas.Record", "profiles.ProfileConsentEvent", "tenants.AuditEntry", "campaigns.Schedule"} <= read_only
