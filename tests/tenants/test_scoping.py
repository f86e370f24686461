"""Fail-closed tenant scoping: no tenant in scope, no query."""

from __future__ import annotations

import pytest

from apps.tenants.models import AuditEntry, Membership
from apps.tenants.scoping import TenantScopeError, current_tenant, tenant_scope, tenant_task
from tests.factories import MembershipFactory


def test_query_without_tenant_raises(people):
    with pytest.raises(TenantScopeError):
        list(Membership.objects.all())
    with pytest.raises(TenantScopeError):
        Membership.objects.filter(role="admin").count()
    with pytest.raises(TenantScopeError):
        AuditEntry.objects.create(action="x", object_type="y")


def test_scope_sees_only_its_tenant(acme, globex, people):
    with tenant_scope(acme):
        emails = set(Membership.objects.values_list("user__email", flat=True))
    assert emails == {f"{role}@acme.test" for role in ("admin", "marketer", "approver", "viewer")}
    with tenant_scope(globex):
        assert Membership.objects.filter(user__email="admin@acme.test").count() == 0


def test_scope_nests_and_restores(acme, globex):
    with tenant_scope(acme):
        with tenant_scope(globex):
            assert current_tenant() == globex
        assert current_tenant() == acme
    with pytest.raises(TenantScopeError):
        current_tenant()


def test_cannot_save_or_create_into_another_tenant(acme, globex, people):
    membership = MembershipFactory(tenant=globex)
    with tenant_scope(acme):
        membership.role = "viewer"
        with pytest.raises(TenantScopeError):
            membership.save()
        with pytest.raises(TenantScopeError):
            Membership.objects.create(tenant=globex, user=people["acme"]["admin"].user)


def test_create_in_scope_fills_the_tenant(acme, people):
    with tenant_scope(acme):
        entry = AuditEntry.objects.create(action="test.done", object_type="test")
    assert entry.tenant_id == acme.pk


def test_unscoped_manager_is_the_named_escape(acme, globex, people):
    assert Membership.dangerously_unscoped.filter(tenant__in=[acme, globex]).count() == 8


def test_tenant_task_requires_tenant_id(acme):
    seen = []

    @tenant_task
    def body(*, tenant_id):
        seen.append(current_tenant().slug)

    body(tenant_id=acme.pk)
    assert seen == ["acme"]
    with pytest.raises(TenantScopeError):
        body()
