"""Who may approve: the role matrix over every kind of assignment, and the per-campaign approvers
kept by django-guardian in this app's direct foreign-key models, scoped by tenant."""

from __future__ import annotations

import pytest
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from apps.approvals import permissions, services
from apps.approvals.models import CampaignGroupPermission, CampaignUserPermission, Task
from apps.tenants.scoping import TenantScopeError, tenant_scope
from tests.approvals.conftest import approval_graph, start_campaign
from tests.conftest import ROLES


def _task(acme, marketer, eager, config=None, kind="approval"):
    campaign, run = start_campaign(acme, marketer, approval_graph(config or {}, kind=kind), eager)
    with tenant_scope(acme):
        return Task.objects.select_related("run", "campaign").get(run=run)


# assignment -> the roles that may approve (marketer started the run: four eyes never bites here)
MATRIX = {
    "role": {"admin", "approver"},
    "user:approver": {"approver"},
    "group:admin+approver+viewer": {"admin", "approver"},   # the viewer is in the group, its role cannot
    "users:admin,approver": {"admin", "approver"},
}


@pytest.mark.parametrize("assignment", list(MATRIX))
def test_role_and_assignment_matrix(acme, people, marketer, eager, assignment):
    if assignment.startswith("group:"):
        with tenant_scope(acme):
            services.approver_group_create(tenant=acme, name="G", by=None, members=[
                f"{r}@acme.test" for r in ("admin", "approver", "viewer")])
        config = {"assign": {"group": "G"}}
    elif assignment.startswith("user:"):
        config = {"assign": {"user": "approver@acme.test"}}
    elif assignment.startswith("users:"):
        config = {"assign": {"users": ["admin@acme.test", "approver@acme.test"]}}
    else:
        config = {}
    task = _task(acme, marketer, eager, config)
    with tenant_scope(acme):
        allowed = {role for role in ROLES if permissions.decide_problem(task, people["acme"][role].user) is None}
        # another tenant's people never may
        assert all(permissions.decide_problem(task, people["globex"][role].user) for role in ROLES)
    assert allowed == MATRIX[assignment]


def test_guardian_uses_the_direct_foreign_key_models_scoped_by_tenant(acme, globex, people, marketer, eager):
    task = _task(acme, marketer, eager)
    campaign = task.campaign
    assert get_user_obj_perms_model(campaign) is CampaignUserPermission
    assert get_group_obj_perms_model(campaign) is CampaignGroupPermission
    admin = people["acme"]["admin"].user
    with tenant_scope(acme):
        services.campaign_approvers_set(tenant=acme, campaign=campaign, by=admin, users=["approver@acme.test"])
        row = CampaignUserPermission.objects.get(content_object=campaign)
        assert row.tenant_id == acme.pk and row.user == people["acme"]["approver"].user
        # django's auth backends (guardian's among them) answer the same
        assert people["acme"]["approver"].user.has_perm("campaigns.approve_campaign", campaign)
        assert not admin.has_perm("campaigns.approve_campaign", campaign)
    # The permission rows fail closed like every tenant-owned model.
    with pytest.raises(TenantScopeError):
        CampaignUserPermission.objects.count()
    with tenant_scope(globex):
        assert CampaignUserPermission.objects.count() == 0


def test_manual_tasks_are_completed_by_their_assignee_whatever_the_role(acme, people, marketer, eager):
    task = _task(acme, marketer, eager, {"title": "Print", "assign": {"user": "viewer@acme.test"}},
                 kind="manual_task")
    with tenant_scope(acme):
        allowed = {role for role in ROLES if permissions.decide_problem(task, people["acme"][role].user) is None}
    assert allowed == {"viewer"}
