"""Targeting graphs through the engine (Celery eager mode: these tests are about what flows between
activities, not about the broker): populations, their columns and dimensions pass from node to
node, counts land on the transitions, and a test run computes everything but writes nothing."""

from __future__ import annotations

import pytest

from apps.audiences.models import Audience
from apps.campaigns import services
from apps.campaigns.models import NodeState
from apps.tenants.scoping import tenant_scope
from tests.activities.test_targeting import add_extra_fields, store
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}


def graph(*nodes, edges):
    return {"nodes": [START, *nodes], "edges": [{"from": a, "port": p, "to": b} for a, p, b in edges]}


def people(n: int) -> list[dict]:
    """n profiles: every third shares an email with the one before; every fifth opted out."""
    result = []
    for i in range(n):
        email = f"user{i - 1 if i % 3 == 2 else i}@x.test"
        result.append({"email": email, "country": ["FR", "DE"][i % 2], "age": 20 + i % 50,
                       "email_opt_in": i % 5 != 0})
    return result


TARGETING = graph(
    {"id": "everyone", "type": "build_audience", "config": {"filter": {"field": "country", "op": "eq",
                                                                       "value": "FR"}}},
    {"id": "opted_out", "type": "build_audience", "config": {"filter": {"field": "email_opt_in", "op": "eq",
                                                                        "value": False}}},
    {"id": "fork", "type": "fork", "config": {"branches": [{"port": "a"}, {"port": "b"}]}},
    {"id": "exclude", "type": "combine", "config": {"operation": "exclusion", "primary": "everyone"}},
    {"id": "dedup", "type": "dedup", "config": {"fields": ["email"], "rule": "smallest", "by": "age"}},
    {"id": "split", "type": "split", "config": {"subsets": [
        {"code": "young", "filter": {"field": "age", "op": "lt", "value": 30}},
        {"code": "sample", "limit": {"percent": 50}}], "complement": True}},
    {"id": "save", "type": "save_audience", "config": {"name": "Young French"}},
    {"id": "end", "type": "end"},
    edges=[("start", "out", "fork"), ("fork", "a", "everyone"), ("fork", "b", "opted_out"),
           ("everyone", "out", "exclude"), ("opted_out", "out", "exclude"), ("exclude", "out", "dedup"),
           ("dedup", "out", "split"), ("split", "young", "save"), ("save", "out", "end")],
)


def expected_counts(rows: list[dict]) -> dict[str, int]:
    kept = [(i, p) for i, p in enumerate(rows) if p["country"] == "FR" and p["email_opt_in"]]
    by_email: dict[str, tuple[int, dict]] = {}
    for i, p in kept:
        best = by_email.get(p["email"])
        if best is None or (p["age"], f"p{i}") < (best[1]["age"], f"p{best[0]}"):
            by_email[p["email"]] = (i, p)
    deduped = list(by_email.values())
    young = [p for _, p in deduped if p["age"] < 30]
    return {"everyone": sum(p["country"] == "FR" for p in rows), "exclude": len(kept), "dedup": len(deduped),
            "young": len(young), "rest": len(deduped) - len(young)}


@pytest.mark.parametrize("test_mode", [False, True])
def test_targeting_graph_through_the_engine(acme, people, eager, test_mode):
    add_extra_fields(acme)
    rows = globals()["people"](60)
    store(acme, rows)
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, TARGETING)
    with tenant_scope(acme), eager(execute=True):
        assert services.graph_problems(campaign, TARGETING) == []
        if test_mode:
            run = services.campaign_test(tenant=acme, campaign=campaign, by=marketer)
        else:
            services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
            run = services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
        assert run.status == "completed", run.error
        nodes = {n.node_id: n for n in NodeState.objects.filter(run=run)}
        saved = Audience.objects.filter(name="Young French").first()
    expected = expected_counts(rows)
    assert nodes["everyone"].outputs["out"]["count"] == expected["everyone"]
    assert nodes["exclude"].outputs["out"]["count"] == expected["exclude"]
    assert nodes["dedup"].outputs["out"]["count"] == expected["dedup"]
    split = nodes["split"].outputs
    assert split["young"]["count"] == expected["young"]
    assert split["sample"]["count"] + split["complement"]["count"] == expected["rest"]
    if test_mode:
        assert saved is None
        assert nodes["save"].summary["would_write"] == expected["young"]
    else:
        assert saved is not None and saved.count == expected["young"]


def test_validation_follows_columns_and_dimensions_through_the_graph(acme, people):
    add_extra_fields(acme)
    marketer = people["acme"]["marketer"].user
    g = graph(
        {"id": "build", "type": "build_audience", "config": {"filter": {}}},
        {"id": "split", "type": "split", "config": {"single_output": True, "subsets": [
            {"code": "a", "filter": {"field": "age", "op": "lt", "value": 30}}]}},
        {"id": "again", "type": "split", "config": {"subsets": [
            {"code": "coded", "filter": {"field": "segment_code", "op": "eq", "value": "a"}},
            {"code": "bad", "filter": {"field": "no_such_column", "op": "eq", "value": 1}}]}},
        edges=[("start", "out", "build"), ("build", "out", "split"), ("split", "out", "again")])
    campaign = make_campaign(acme, marketer, g)
    with tenant_scope(acme):
        problems = services.graph_problems(campaign, g)
    # segment_code, added by the first split, is known downstream; the unknown column is not
    assert [(p["node"], p["path"]) for p in problems] == [("again", "config.subsets[1].filter.field")]
