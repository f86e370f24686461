"""Populator for the isolation suite: a live campaign whose run waits on an approval task
(assigned to any approver, started by the marketer so that the admin and the approver may answer
it), and an approver group."""

from __future__ import annotations

from typing import Any

from apps.approvals import services
from apps.campaigns import services as campaign_services
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.world import populator

GRAPH = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
              {"id": "approve", "type": "approval", "config": {"due": "2d"}},
              {"id": "sent", "type": "end"}, {"id": "dropped", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "approve"},
              {"from": "approve", "port": "approved", "to": "sent"},
              {"from": "approve", "port": "rejected", "to": "dropped"}],
}


@populator
def approvals_world(tenant: Tenant, people: dict[str, Any]) -> None:
    marketer = people["marketer"].user
    with tenant_scope(tenant):
        services.approver_group_create(tenant=tenant, name="Reviewers", members=[people["approver"].user.email],
                                       by=people["admin"].user)
        campaign = campaign_services.campaign_create(tenant=tenant, by=marketer, name=f"{tenant.slug} approval",
                                                     graph=GRAPH)
        campaign_services.campaign_publish(tenant=tenant, campaign=campaign, by=marketer)
        run = campaign_services.campaign_start(tenant=tenant, campaign=campaign, by=marketer)
        # The engine's kicks never run inside the world's transaction: raise the task the
        # approval node would raise.
        services.task_raise(tenant=tenant, campaign=campaign, run=run, node_id="approve", kind="approval",
                            title="Approve the launch", snapshot={"count": 0, "sample": {"columns": [], "rows": []}})
