"""A campaign with a draft, a published version and a run, for every route-walking test."""

from __future__ import annotations

from apps.campaigns import services
from apps.tenants.scoping import tenant_scope
from tests.world import populator

GRAPH = {
    "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "api"}},
              {"id": "end", "type": "end"}],
    "edges": [{"from": "start", "port": "out", "to": "end"}],
}


@populator
def campaigns(tenant, people):
    marketer = people["marketer"].user
    with tenant_scope(tenant):
        campaign = services.campaign_create(tenant=tenant, by=marketer, name=f"{tenant.slug} welcome", graph=GRAPH)
        services.campaign_publish(tenant=tenant, campaign=campaign, by=marketer)
        services.campaign_test(tenant=tenant, campaign=campaign, by=marketer)
