"""Fixtures of the approvals tests: a campaign that waits on an approval, started by acme's
marketer, and helpers to read its run."""

from __future__ import annotations

import pytest

from apps.campaigns import services as campaign_services
from apps.campaigns.models import NodeState, Run
from apps.tenants.scoping import tenant_scope
from tests.approvals import rows_activity  # noqa: F401  (registers the test_rows activity)
from tests.campaigns.conftest import eager, make_campaign, worker  # noqa: F401

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}


def approval_graph(approval_config=None, *, keys=("k1", "k2", "k3"), kind="approval"):
    """scheduler → rows → approval (or manual task) → end(s)."""
    node = {"id": "approve", "type": kind, "config": approval_config if approval_config is not None else {}}
    nodes = [START, {"id": "rows", "type": "test_rows", "config": {"keys": list(keys)}}, node]
    edges = [("start", "out", "rows"), ("rows", "out", "approve")]
    if kind == "approval":
        nodes += [{"id": "sent", "type": "end"}, {"id": "dropped", "type": "end"}]
        edges += [("approve", "approved", "sent"), ("approve", "rejected", "dropped")]
    else:
        nodes += [{"id": "sent", "type": "end"}]
        edges += [("approve", "out", "sent")]
    return {"nodes": nodes, "edges": [{"from": a, "port": p, "to": b} for a, p, b in edges]}


def start_campaign(tenant, by, graph, capture, *, settings=None):
    """Create, publish and start as `by` (`capture`: the `eager` fixture); returns (campaign, run)."""
    campaign = make_campaign(tenant, by, graph, settings=settings or {})
    with tenant_scope(tenant), capture(execute=True):
        campaign_services.campaign_publish(tenant=tenant, campaign=campaign, by=by)
        run = campaign_services.campaign_start(tenant=tenant, campaign=campaign, by=by)
    return campaign, run


def nodes_of(run: Run) -> dict[str, NodeState]:
    with tenant_scope(run.tenant):
        return {n.node_id: n for n in NodeState.objects.filter(run=run)}


def refreshed(obj):
    with tenant_scope(obj.tenant):
        obj.refresh_from_db()
    return obj


@pytest.fixture
def marketer(people):
    return people["acme"]["marketer"].user


@pytest.fixture
def approver(people):
    return people["acme"]["approver"].user
