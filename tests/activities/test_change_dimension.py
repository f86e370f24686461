"""Change dimension, run on hand-made populations (tests/activities/harness.py) and checked against
a plain-Python computation of the same move; the property test draws random small shops and
random rules with hypothesis. Validation problems are checked through graph validation (node id
and path), and one graph runs through the engine in Celery's eager mode (tasks inline: these are
logic tests, not broker tests)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from apps.activities import registry
from apps.activities.base import Column, NodeError, Population, Shape, ValidationContext
from apps.campaigns import services
from apps.campaigns.models import NodeState
from apps.schemas.models import DataSchema, Link
from apps.tenants.scoping import tenant_scope
from tests.activities.harness import Harness
from tests.activities.test_enrichment import SHOP, START, build_shop, normal, store_records, table, typed
from tests.campaigns.conftest import make_campaign

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def shop(acme) -> dict[str, DataSchema]:
    return build_shop(acme)


@pytest.fixture
def h(acme, shop) -> Harness:
    return Harness(acme, now=NOW)


def output_shape(h: Harness, config: dict[str, Any], shape: Shape) -> Shape:
    with tenant_scope(h.tenant):
        ctx = ValidationContext(tenant=h.tenant, dimension="profile", variables={}, schemas={}, node_id="node",
                                inputs=[shape], input_sources=["in0"])
        return registry.get("change_dimension").output_shapes(config, [shape], ctx)["out"]


# -- the oracle -----------------------------------------------------------------------------------

def chosen(rows: list[dict[str, Any]], keep: str, order_by: str | None) -> dict[str, Any]:
    """The row kept among those reaching one record: by (value, key), ascending for first,
    descending for last; rows without a value come last either way."""
    reverse = keep == "last"
    if order_by is None:
        return sorted(rows, key=lambda r: r["key"], reverse=reverse)[0]
    with_value = sorted((r for r in rows if r[order_by] is not None), key=lambda r: (r[order_by], r["key"]),
                        reverse=reverse)
    without = sorted((r for r in rows if r[order_by] is None), key=lambda r: r["key"], reverse=reverse)
    return (with_value + without)[0]


def aggregate(name: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if name == "count":
        return len(values)
    if name == "sum":
        return sum(present, Decimal(0))
    if not present:
        return None
    if name == "avg":
        return sum(present, Decimal(0)) / len(present)
    return min(present) if name == "min" else max(present)


def expected_move(world: dict[str, Any], config: dict[str, Any]) -> dict[str, list[Any]]:
    """{target key: [carried columns…, aggregates…]} of the population moved as `config` says."""
    purchases, profiles = world["purchase"], world["profile"]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, (note_value, tag) in world["population"].items():
        if world["from"] == "purchase":
            record = purchases.get(key)
            if record is None:  # its record is gone: its link leads nowhere
                continue
            row = {"key": key, "note": note_value, "tag": tag, **{f: typed(f, record.get(f)) for f in record}}
            targets = [record["profile_id"]] if record.get("profile_id") in profiles else []
        else:
            record = profiles.get(key) or {}
            row = {"key": key, "note": note_value, "tag": tag, "score": typed("score", record.get("score"))}
            targets = [k for k, p in purchases.items() if p.get("profile_id") == key]
        row["_key"] = key
        for target in targets:
            groups[target].append(row)
    keep = config.get("keep", "first")
    result = {}
    for target, rows in groups.items():
        values = []
        if keep != "aggregate":
            kept = chosen(rows, keep, config.get("order_by"))
            values += [kept["note"], kept["tag"]]
        for item in config.get("aggregates") or []:
            values.append(aggregate(item["aggregate"], [r.get(item.get("field", "")) for r in rows]))
        result[target] = normal(values)
    return result


# -- strategies -----------------------------------------------------------------------------------

TIMES = [None, "2026-11-23T11:00:00Z", "2026-11-22T09:30:00Z", "2026-10-01T12:00:00Z"]


@st.composite
def worlds(draw: Any) -> dict[str, Any]:
    profiles = {f"p{i}": {"id": f"p{i}", "score": draw(st.sampled_from([None, 1, 3]))}
                for i in range(draw(st.sampled_from([2, 3, 1, 0])))}
    references = [*profiles, *profiles, *profiles, "px", None]  # mostly purchases of known profiles
    purchases = {f"o{i:02d}": {"order_id": f"o{i:02d}", "profile_id": draw(st.sampled_from(references)),
                               "amount": draw(st.sampled_from([None, 0, 1.5, 2, 2, 10.25])),
                               "purchased_at": draw(st.sampled_from(TIMES))}
                 for i in range(draw(st.sampled_from([5, 10, 2, 0])))}
    origin = draw(st.sampled_from(["purchase", "profile"]))
    keys = [*(purchases if origin == "purchase" else profiles), "oz" if origin == "purchase" else "px"]
    population = {key: (draw(st.sampled_from([None, 1, 5, 5, 9])), draw(st.sampled_from([None, "a", "b"])))
                  for key in keys if draw(st.sampled_from([True, True, True, False]))}
    return {"profile": profiles, "purchase": purchases, "from": origin, "population": population}


@st.composite
def rules(draw: Any, origin: str) -> dict[str, Any]:
    fields = ["amount", "purchased_at", "note", "_key"] if origin == "purchase" else ["score", "note", "_key"]
    numbers = ["amount", "note"] if origin == "purchase" else ["score", "note"]
    config: dict[str, Any] = {"link": "profile" if origin == "purchase" else "purchases",
                              "keep": draw(st.sampled_from(["first", "last", "aggregate"]))}
    if config["keep"] != "aggregate" and draw(st.booleans()):
        config["order_by"] = draw(st.sampled_from(fields))
    specs = draw(st.lists(st.one_of(
        st.just({"aggregate": "count"}),
        st.builds(lambda a, f: {"aggregate": a, "field": f}, st.sampled_from(["sum", "avg", "min", "max"]),
                  st.sampled_from(numbers)),
        st.builds(lambda a: {"aggregate": a, "field": "purchased_at"}, st.sampled_from(["min", "max"]))
        if origin == "purchase" else st.just({"aggregate": "count"}),
    ), min_size=1 if config["keep"] == "aggregate" else 0, max_size=4))
    if specs:
        config["aggregates"] = [{"alias": f"a{i}", **spec} for i, spec in enumerate(specs)]
    return config


@PROPERTY
@given(world=worlds(), data=st.data())
def test_change_dimension_moves_what_python_moves(h, acme, shop, world, data):
    config = data.draw(rules(world["from"]))
    note(json.dumps(config))
    with transaction.atomic():
        store_records(acme, shop, {"profile": world["profile"], "purchase": world["purchase"]})
        population = h.population([(k, n, t) for k, (n, t) in sorted(world["population"].items())],
                                  columns=[Column("note", "bigint"), Column("tag", "text")],
                                  dimension=world["from"])
        done = h.run("change_dimension", config, [population])
        out = done.outputs["out"]
        assert out.dimension == ("profile" if world["from"] == "purchase" else "purchase")
        assert out.shape == output_shape(h, config, population.shape)
        expected = expected_move(world, config)
        assert {row[0]: normal(list(row[1:])) for row in table(out)} == expected
        assert out.count == len(expected) == done.summary["count"]
        transaction.set_rollback(True)


# -- examples -------------------------------------------------------------------------------------

def purchases_population(h: Harness) -> Population:
    return h.population([("o1", "x"), ("o2", "y"), ("o3", "z"), ("o4", "w"), ("o9", "gone")],
                        columns=[Column("tag", "text")], dimension="purchase")


def test_purchases_to_their_profiles_keeping_the_last_purchase(h, acme, shop):
    store_records(acme, shop, SHOP)
    config = {"link": "profile", "keep": "last", "order_by": "purchased_at",
              "aggregates": [{"alias": "purchases", "aggregate": "count"},
                             {"alias": "spent", "aggregate": "sum", "field": "amount"},
                             {"alias": "first_at", "aggregate": "min", "field": "purchased_at"}]}
    done = h.run("change_dimension", config, [purchases_population(h)])
    out = done.outputs["out"]
    assert out.dimension == "profile"
    assert [(c.name, c.type) for c in out.columns] == [("tag", "text"), ("purchases", "bigint"),
                                                      ("spent", "numeric"), ("first_at", "timestamptz")]
    assert table(out) == [
        ("p1", "y", 3, Decimal("19.5"), dt.datetime(2026, 9, 1, 10, tzinfo=dt.UTC)),
        ("p2", "w", 1, Decimal("1"), dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC)),
    ]
    assert done.summary == {"count": 2, "rows_in": 5, "dimension": "profile", "link": "profile"}


def test_the_target_dimension_alone_finds_the_link_and_aggregate_keeps_no_row(h, acme, shop):
    store_records(acme, shop, SHOP)
    config = {"dimension": "profile", "keep": "aggregate", "aggregates": [{"alias": "n", "aggregate": "count"}]}
    out = h.run("change_dimension", config, [purchases_population(h)]).outputs["out"]
    assert table(out) == [("p1", 3), ("p2", 1)]
    assert out.shape == Shape("profile", (Column("n", "bigint"),))


def test_profiles_to_their_purchases_carry_the_profile_columns(h, acme, shop):
    store_records(acme, shop, SHOP)
    population = h.population([("p1", "gold"), ("p2", "silver")], columns=[Column("tier", "text")])
    out = h.run("change_dimension", {"link": "purchases"}, [population]).outputs["out"]
    assert out.dimension == "purchase"
    assert table(out) == [("o1", "gold"), ("o2", "gold"), ("o3", "gold"), ("o4", "silver")]


def test_a_link_removed_after_publishing_is_a_node_error(h, acme, shop):
    population = purchases_population(h)
    with tenant_scope(acme):
        Link.objects.filter(name="profile").delete()
    ctx = h.context()
    ctx.config = {"link": "profile"}
    with tenant_scope(acme), pytest.raises(NodeError, match="Unknown link 'profile'"):
        registry.get("change_dimension").execute(ctx.config, ctx, [population])


# -- validation through the graph -----------------------------------------------------------------

def problems_after_build(acme, people, config, dimension="purchase"):
    graph = {"nodes": [START, {"id": "build", "type": "build_audience", "config": {"dimension": dimension,
                                                                                   "filter": {}}},
                       {"id": "move", "type": "change_dimension", "config": config}],
             "edges": [{"from": "start", "port": "out", "to": "build"}, {"from": "build", "port": "out", "to": "move"}]}
    campaign = make_campaign(acme, people["acme"]["marketer"].user, graph)
    with tenant_scope(acme):
        return services.graph_problems(campaign, graph)


@pytest.mark.parametrize("config,dimension,path,message", [
    ({"link": "nope"}, "purchase", "config.link", "Unknown link 'nope': not a link of 'purchase'"),
    ({"link": "household"}, "purchase", "config.link", "Unknown link 'household'"),
    ({"link": "profile", "dimension": "household"}, "purchase", "config.dimension",
     "leads to 'profile', not to 'household'"),
    ({"dimension": "household"}, "purchase", "config.link", "No link of 'purchase' leads to 'household'"),
    ({}, "purchase", "config.link", "Name the `link`"),
    ({"link": "profile", "order_by": "colour"}, "purchase", "config.order_by", "Unknown field 'colour'"),
    ({"link": "profile", "keep": "aggregate", "order_by": "amount", "aggregates": [{"alias": "n", "aggregate": "count"}]},
     "purchase", "config.order_by", "no row is kept"),
    ({"link": "profile", "keep": "aggregate"}, "purchase", "config.aggregates", "list them"),
    ({"link": "profile", "aggregates": [{"alias": "Total!", "aggregate": "count"}]}, "purchase",
     "config.aggregates[0].alias", "Invalid alias"),
    ({"link": "profile", "aggregates": [{"alias": "n", "aggregate": "count"}, {"alias": "n", "aggregate": "count"}]},
     "purchase", "config.aggregates[1].alias", "used twice"),
    ({"link": "profile", "aggregates": [{"alias": "s", "aggregate": "sum", "field": "channel"}]}, "purchase",
     "config.aggregates[0].field", "sum needs a number"),
    ({"link": "profile", "aggregates": [{"alias": "s", "aggregate": "max", "field": "size"}]}, "purchase",
     "config.aggregates[0].field", "Unknown field 'size'"),
    ({"link": "household"}, "profile", "config.aggregates", None),  # valid: profile → household
])
def test_problems_name_the_node_and_the_path(acme, people, shop, config, dimension, path, message):
    problems = problems_after_build(acme, people, config, dimension)
    if message is None:
        assert problems == []
        return
    assert any(p["node"] == "move" and p["path"] == path and message in p["message"] for p in problems), problems


def test_what_follows_sees_the_new_dimension(acme, people, shop):
    """After purchases → profiles, an enrichment names profile fields and the aggregate's alias;
    a purchase field is unknown there."""
    def problems_of(columns):
        graph = {"nodes": [
            START, {"id": "build", "type": "build_audience", "config": {"dimension": "purchase", "filter": {}}},
            {"id": "move", "type": "change_dimension", "config": {
                "link": "profile", "keep": "aggregate", "aggregates": [{"alias": "n", "aggregate": "count"}]}},
            {"id": "enrich", "type": "enrichment", "config": {"columns": columns}}],
            "edges": [{"from": "start", "port": "out", "to": "build"}, {"from": "build", "port": "out", "to": "move"},
                      {"from": "move", "port": "out", "to": "enrich"}]}
        campaign = make_campaign(acme, people["acme"]["marketer"].user, graph)
        with tenant_scope(acme):
            return services.graph_problems(campaign, graph)

    assert problems_of([{"alias": "c", "field": "country"}, {"alias": "twice", "field": "n"}]) == []
    assert [(p["node"], p["path"]) for p in problems_of([{"alias": "a", "field": "amount"}])] == [
        ("enrich", "config.columns[0].field")]


# -- through the engine ---------------------------------------------------------------------------

def test_change_dimension_in_a_test_run(acme, people, shop, eager):
    store_records(acme, shop, SHOP)
    marketer = people["acme"]["marketer"].user
    graph = {"nodes": [START,
                       {"id": "build", "type": "build_audience", "config": {
                           "dimension": "purchase", "filter": {"field": "channel", "op": "eq", "value": "web"}}},
                       {"id": "move", "type": "change_dimension", "config": {
                           "dimension": "profile", "keep": "first", "order_by": "amount",
                           "aggregates": [{"alias": "web_orders", "aggregate": "count"}]}},
                       {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "build"}, {"from": "build", "port": "out", "to": "move"},
                       {"from": "move", "port": "out", "to": "end"}]}
    campaign = make_campaign(acme, marketer, graph)
    with tenant_scope(acme), eager(execute=True):
        run = services.campaign_test(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
        assert run.status == "completed", run.error
        node = NodeState.objects.get(run=run, node_id="move")
    assert node.status == "done" and node.count_in == 2 and node.count_out == 1
    out = Population.from_dict(node.outputs["out"])
    assert out.dimension == "profile"
    assert table(out) == [("p1", 2)]
