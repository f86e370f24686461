"""Enrichment, run on hand-made populations (tests/activities/harness.py) and checked against a
plain-Python computation of the same columns; the property test draws random small shops
(profiles, households, purchases, a joined file) and random column lists with hypothesis.
Validation problems are checked through graph validation (node id and path), and one graph runs
through the engine in Celery's eager mode (tasks inline: these are logic tests, not broker tests)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from psycopg import sql

from apps.activities import enrichment, registry
from apps.activities.base import Column, NodeError, Population, Shape, ValidationContext
from apps.campaigns import services
from apps.campaigns.models import NodeState
from apps.campaigns.populations import table_ident
from apps.schemas.models import DataSchema, Field, Link, Record
from apps.tenants.scoping import tenant_scope
from tests.activities.harness import Harness
from tests.campaigns.conftest import make_campaign

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# -- the shop: profiles, households, purchases ----------------------------------------------------

def build_shop(tenant) -> dict[str, DataSchema]:
    """Schemas and links (no records): profile (+ household_id, score) → household (many to one),
    profile → purchases (one to many) and `a_purchase` (many to one on a field that is not the
    purchase's key: one of the profile's purchases), purchase → profile (many to one)."""
    with tenant_scope(tenant):
        profile = DataSchema.objects.get(name="profile")
        Field.objects.bulk_create([Field(tenant=tenant, schema=profile, name="household_id", type="string",
                                         position=100),
                                   Field(tenant=tenant, schema=profile, name="score", type="integer", position=101)])
        household = DataSchema.objects.create(name="household", label="Households", primary_key="code")
        purchase = DataSchema.objects.create(name="purchase", label="Purchases", primary_key="order_id")
        for schema, fields in ((household, [("code", "string"), ("city", "string"), ("size", "integer")]),
                               (purchase, [("order_id", "string"), ("profile_id", "string"), ("amount", "decimal"),
                                           ("purchased_at", "datetime"), ("channel", "string")])):
            Field.objects.bulk_create([Field(tenant=tenant, schema=schema, name=n, type=t, position=i)
                                       for i, (n, t) in enumerate(fields)])
        for schema, name, target, kind, source_field, target_field in (
                (profile, "household", household, "many_to_one", "household_id", "code"),
                (profile, "purchases", purchase, "one_to_many", "id", "profile_id"),
                (profile, "a_purchase", purchase, "many_to_one", "id", "profile_id"),
                (purchase, "profile", profile, "many_to_one", "profile_id", "id"),
                (household, "members", profile, "one_to_many", "code", "household_id")):
            Link.objects.create(schema=schema, name=name, target=target, kind=kind, source_field=source_field,
                                target_field=target_field)
    return {"profile": profile, "household": household, "purchase": purchase}


def store_records(tenant, schemas: dict[str, DataSchema], records: dict[str, dict[str, dict[str, Any]]]) -> None:
    """records[schema][key] = attributes (a None value is left out: the attribute is missing)."""
    Record.dangerously_unscoped.bulk_create([
        Record(tenant=tenant, schema=schemas[name], key=key,
               attributes={k: v for k, v in attributes.items() if v is not None})
        for name, by_key in records.items() for key, attributes in by_key.items()])


@pytest.fixture
def shop(acme) -> dict[str, DataSchema]:
    return build_shop(acme)


@pytest.fixture
def h(acme, shop) -> Harness:
    return Harness(acme, now=NOW, variables={"wave": "w1"},
                   declarations={"wave": {"name": "wave", "type": "string"}})


def table(population) -> list[tuple[Any, ...]]:
    """The rows of a population in key order (jsonb columns parsed: Django's cursor reads them as text)."""
    is_json = [False] + [c.type == "jsonb" for c in population.columns]
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {} ORDER BY key").format(table_ident(population.table))
                       .as_string(cursor.connection))
        return [tuple(json.loads(v) if j and isinstance(v, str) else v for v, j in zip(row, is_json, strict=True))
                for row in cursor.fetchall()]


def output_shape(h: Harness, config: dict[str, Any], inputs: list[Shape], sources: list[str]) -> Shape:
    with tenant_scope(h.tenant):
        ctx = ValidationContext(tenant=h.tenant, dimension="profile", variables=h.declarations,
                                schemas={s.name: s for s in DataSchema.objects.all()}, node_id="node",
                                inputs=inputs, input_sources=sources)
        return registry.get("enrichment").output_shapes(config, inputs, ctx)["out"]


# -- the oracle -----------------------------------------------------------------------------------

def parse_time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


TYPED = {"amount": lambda v: Decimal(str(v)), "purchased_at": parse_time, "score": int, "size": int,
         "points": int}


def typed(name: str, value: Any) -> Any:
    return None if value is None else TYPED.get(name, lambda v: v)(value)


def holds(tree: dict[str, Any] | None, row: dict[str, Any]) -> bool:
    """The few `where` filters the property test draws."""
    if not tree:
        return True
    value = typed(tree["field"], row.get(tree["field"]))
    if tree["op"] == "eq":
        return value == tree["value"]
    if tree["op"] == "gte":
        return value is not None and value >= Decimal(str(tree["value"]))
    if tree["op"] == "gt":
        return value is not None and value > tree["value"]
    if tree["op"] == "within_last":
        return value is not None and NOW - dt.timedelta(days=int(tree["value"][:-1])) <= value <= NOW
    raise AssertionError(tree)


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


def last_rows(rows: list[dict[str, Any]], order_by: str, direction: str, n: int, key: str) -> list[dict[str, Any]]:
    """Rows with a value by value then key (both in `direction`), then rows without one."""
    with_value = [r for r in rows if r.get(order_by) is not None]
    without = [r for r in rows if r.get(order_by) is None]
    reverse = direction == "desc"
    with_value.sort(key=lambda r: (typed(order_by, r[order_by]), r[key]), reverse=reverse)
    without.sort(key=lambda r: r[key], reverse=reverse)
    return (with_value + without)[:n]


def expected_columns(column: dict[str, Any], key: str, tier: str | None, world: dict[str, Any],
                     variables: dict[str, Any]) -> list[Any]:
    """What Enrichment should compute for one population row (`key`, its `tier` column)."""
    profile = world["profile"].get(key)
    households, purchases, file_rows = world["household"], world["purchase"], world["file"]

    def own(name: str) -> Any:
        if name == "tier":
            return tier
        if name == "_key":
            return key
        return typed(name, (profile or {}).get(name))

    if "constant" in column:
        return [column["constant"]]
    if "variable" in column:
        return [variables.get(column["variable"])]
    if "link" not in column:
        return [own(column["field"])]
    link = column["link"]
    if link == "household":
        code = (profile or {}).get("household_id")
        rows = [dict(households[code], _key=code)] if code in households else []
        row_key = "_key"
    elif link in ("purchases", "a_purchase"):
        rows = [dict(p, _key=k) for k, p in sorted(purchases.items()) if p.get("profile_id") == key]
        row_key = "_key"
    else:  # the joined file, on id or _key = pid
        on = own(world["join_on"])
        rows = [dict(r, key=k) for k, r in sorted(file_rows.items()) if on is not None and r.get("pid") == on]
        row_key = "key"
    if "aggregate" in column:
        rows = [r for r in rows if holds(column.get("where"), r)]
        return [aggregate(column["aggregate"], [typed(column.get("field", ""), r.get(column.get("field", "")))
                                                for r in rows])]
    if "collect" in column:
        rows = [r for r in rows if holds(column.get("where"), r)]
        kept = last_rows(rows, column["order_by"], column.get("direction", "desc"), column["collect"], row_key)
        if column.get("as") == "list":
            return [[{f: r.get(f) for f in column["fields"]} for r in kept]]
        return [typed(f, kept[n].get(f)) if n < len(kept) else None
                for n in range(column["collect"]) for f in column["fields"]]
    first = min(rows, key=lambda r: r[row_key]) if rows else {}
    return [typed(column["field"], first.get(column["field"])) if column["field"] != "_key" else first.get("_key")]


def normal(value: Any) -> Any:
    """Values compared across SQL and Python: decimals to 10 places, JSON text parsed."""
    if isinstance(value, Decimal):
        return value.quantize(Decimal("1e-10"))
    if isinstance(value, float):
        return Decimal(str(value)).quantize(Decimal("1e-10"))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value).quantize(Decimal("1e-10"))
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value


# -- strategies -----------------------------------------------------------------------------------

TIMES = [None, "2026-11-23T11:00:00Z", "2026-11-22T09:30:00Z", "2026-11-20T00:00:00Z", "2026-10-01T12:00:00Z"]
WHERES = [None, {"field": "channel", "op": "eq", "value": "web"}, {"field": "amount", "op": "gte", "value": 2},
          {"field": "purchased_at", "op": "within_last", "value": "2d"}]


@st.composite
def worlds(draw: Any) -> dict[str, Any]:
    households = {f"h{i}": {"code": f"h{i}", "city": draw(st.sampled_from([None, "Paris", "Lyon"])),
                            "size": draw(st.sampled_from([None, 1, 4]))} for i in range(3)}
    profiles = {f"p{i}": {"id": f"p{i}", "household_id": draw(st.sampled_from([None, "h0", "h1", "h2", "hx"])),
                          "score": draw(st.sampled_from([None, -1, 0, 7])),
                          "country": draw(st.sampled_from([None, "FR", "DE"]))}
                for i in range(draw(st.integers(0, 5)))}
    references = [*profiles, *profiles, *profiles, "px", None]  # mostly purchases of known profiles
    purchases = {f"o{i:02d}": {"order_id": f"o{i:02d}", "profile_id": draw(st.sampled_from(references)),
                               "amount": draw(st.sampled_from([None, 0, 1.5, 2, 10.25])),
                               "purchased_at": draw(st.sampled_from(TIMES)),
                               "channel": draw(st.sampled_from([None, "web", "store"]))}
                 for i in range(draw(st.integers(0, 14)))}
    # most profiles (and maybe a key whose record is gone) are in the population
    population = {key: draw(st.sampled_from([None, "gold", "silver"]))
                  for key in [*profiles, "pz"] if draw(st.sampled_from([True, True, True, False]))}
    file_rows = {f"f{i}": {"pid": draw(st.sampled_from([*profiles, "pz", "nobody", None])),
                           "points": draw(st.sampled_from([None, 1, 5, 5, 20]))}
                 for i in range(draw(st.integers(0, 6)))}
    return {"household": households, "profile": profiles, "purchase": purchases, "population": population,
            "file": file_rows, "join_on": draw(st.sampled_from(["id", "_key"]))}


def column_specs() -> st.SearchStrategy[dict[str, Any]]:
    collect = st.fixed_dictionaries({
        "link": st.just("purchases"), "collect": st.integers(1, 3),
        "order_by": st.sampled_from(["purchased_at", "amount", "order_id"]),
        "fields": st.sampled_from([["amount"], ["order_id", "channel"], ["purchased_at", "amount"]]),
    }, optional={"direction": st.sampled_from(["asc", "desc"]), "as": st.sampled_from(["columns", "list"]),
                 "where": st.sampled_from(WHERES[1:])})
    return st.one_of(
        st.builds(lambda f: {"field": f}, st.sampled_from(["country", "score", "_key", "tier", "household_id"])),
        st.builds(lambda f: {"link": "household", "field": f}, st.sampled_from(["city", "size", "_key"])),
        st.builds(lambda f: {"link": "a_purchase", "field": f}, st.sampled_from(["amount", "_key", "channel"])),
        st.just({"link": "purchases", "aggregate": "count"}),
        st.builds(lambda a, f: {"link": "purchases", "aggregate": a, "field": f},
                  st.sampled_from(["sum", "avg", "min", "max"]), st.just("amount")),
        st.builds(lambda a: {"link": "purchases", "aggregate": a, "field": "purchased_at"},
                  st.sampled_from(["min", "max"])),
        st.builds(lambda spec, w: {**spec, **({"where": w} if w else {})},
                  st.sampled_from([{"link": "purchases", "aggregate": "count"},
                                   {"link": "purchases", "aggregate": "sum", "field": "amount"}]),
                  st.sampled_from(WHERES)),
        collect,
        st.builds(lambda v: {"constant": v}, st.sampled_from(["A", 3, True])),
        st.just({"variable": "wave"}),
        st.builds(lambda f: {"link": "file", "field": f}, st.sampled_from(["points", "pid"])),
        st.builds(lambda a, w: {"link": "file", "aggregate": a, **({"field": "points"} if a != "count" else {}),
                                **({"where": {"field": "points", "op": "gt", "value": 1}} if w else {})},
                  st.sampled_from(["count", "sum", "max"]), st.booleans()),
        st.builds(lambda a: {"link": "file", "collect": 2, "order_by": "points", "fields": ["points"], "as": a},
                  st.sampled_from(["columns", "list"])),
    )


@PROPERTY
@given(world=worlds(), specs=st.lists(column_specs(), min_size=1, max_size=6), restricted=st.booleans())
def test_enrichment_computes_what_python_computes(h, acme, shop, world, specs, restricted):
    """Both ways of grouping aggregates are drawn: over the population's linked rows only (a small
    population) and over every linked row (a big one)."""
    threshold = enrichment.RESTRICT_BELOW
    enrichment.RESTRICT_BELOW = 50_000 if restricted else -1
    try:
        check_enrichment(h, acme, shop, world, specs)
    finally:
        enrichment.RESTRICT_BELOW = threshold


def check_enrichment(h, acme, shop, world, specs):
    columns = [{"alias": f"c{i}", **spec} for i, spec in enumerate(specs)]
    config: dict[str, Any] = {"columns": columns}
    uses_file = any(c.get("link") == "file" for c in columns)
    if uses_file:
        config["joins"] = [{"name": "file", "input": "load", "on": [{"field": world["join_on"], "column": "pid"}]}]
    note(json.dumps(config))
    with transaction.atomic():
        store_records(acme, shop, {name: world[name] for name in ("household", "profile", "purchase")})
        population = h.population(sorted(world["population"].items()), columns=[Column("tier", "text")])
        inputs, sources = [population], ["build"]
        if uses_file:
            inputs.append(h.population([(k, r["pid"], r["points"]) for k, r in sorted(world["file"].items())],
                                       columns=[Column("pid", "text"), Column("points", "bigint")],
                                       dimension="file"))
            sources.append("load")
        done = h.run("enrichment", config, inputs, sources=sources)
        out = done.outputs["out"]
        assert out.shape == output_shape(h, config, [p.shape for p in inputs], sources)
        assert out.count == len(world["population"]) == done.summary["count"]
        got = {row[0]: [normal(v) for v in row[2:]] for row in table(out)}  # key, tier, then the new columns
        expected = {key: normal([v for c in columns for v in expected_columns(c, key, tier, world, h.variables)])
                    for key, tier in world["population"].items()}
        assert got == expected
        assert [row[1] for row in table(out)] == [world["population"][k] for k in sorted(world["population"])]
        transaction.set_rollback(True)


# -- examples -------------------------------------------------------------------------------------

SHOP = {
    "household": {"h1": {"code": "h1", "city": "Paris", "size": 3}},
    "profile": {"p1": {"id": "p1", "household_id": "h1", "score": 5, "country": "FR"},
                "p2": {"id": "p2", "country": "DE"}},
    "purchase": {
        "o1": {"order_id": "o1", "profile_id": "p1", "amount": 10, "purchased_at": "2026-11-20T10:00:00Z",
               "channel": "web"},
        "o2": {"order_id": "o2", "profile_id": "p1", "amount": 2.5, "purchased_at": "2026-11-22T10:00:00Z",
               "channel": "store"},
        "o3": {"order_id": "o3", "profile_id": "p1", "amount": 7, "purchased_at": "2026-09-01T10:00:00Z",
               "channel": "web"},
        "o4": {"order_id": "o4", "profile_id": "p2", "amount": 1, "purchased_at": "2026-11-23T08:00:00Z"},
    },
}


def test_last_purchases_as_columns_and_as_a_list_with_thirty_day_aggregates(h, acme, shop):
    store_records(acme, shop, SHOP)
    population = h.population([("p1",), ("p2",)])
    config = {"columns": [
        {"alias": "city", "link": "household", "field": "city"},
        {"alias": "any_order", "link": "a_purchase", "field": "_key"},
        {"alias": "orders_30d", "link": "purchases", "aggregate": "count",
         "where": {"field": "purchased_at", "op": "within_last", "value": "30d"}},
        {"alias": "spent_30d", "link": "purchases", "aggregate": "sum", "field": "amount",
         "where": {"field": "purchased_at", "op": "within_last", "value": "30d"}},
        {"alias": "last", "link": "purchases", "collect": 2, "order_by": "purchased_at", "fields": ["order_id"]},
        {"alias": "recent", "link": "purchases", "collect": 2, "order_by": "purchased_at", "as": "list",
         "fields": ["order_id", "amount"]},
        {"alias": "wave", "variable": "wave"},
        {"alias": "source", "constant": "crm"},
    ]}
    done = h.run("enrichment", config, [population])
    out = done.outputs["out"]
    assert [c.name for c in out.columns] == ["city", "any_order", "orders_30d", "spent_30d", "last_1_order_id", "last_2_order_id",
                                             "recent", "wave", "source"]
    assert [c.type for c in out.columns] == ["text", "text", "bigint", "numeric", "text", "text", "jsonb", "text", "text"]
    assert table(out) == [
        ("p1", "Paris", "o1", 2, Decimal("12.5"), "o2", "o1",
         [{"order_id": "o2", "amount": 2.5}, {"order_id": "o1", "amount": 10}], "w1", "crm"),
        ("p2", None, "o4", 1, Decimal("1"), "o4", None, [{"order_id": "o4", "amount": 1}], "w1", "crm"),
    ]


def test_constants_and_variables_are_typed(h, acme, shop):
    h.variables = {"since": "2026-11-01", "budget": 12.5, "tags": ["a", "b"]}
    h.declarations = {"since": {"name": "since", "type": "date"}, "budget": {"name": "budget", "type": "decimal"},
                      "tags": {"name": "tags", "type": "json"}, "unset": {"name": "unset", "type": "integer"}}
    config = {"columns": [
        {"alias": "since", "variable": "since"}, {"alias": "budget", "variable": "budget"},
        {"alias": "tags", "variable": "tags"}, {"alias": "unset", "variable": "unset"},
        {"alias": "at", "constant": "2026-11-23T10:00:00+01:00", "type": "datetime"},
        {"alias": "ratio", "constant": 0.1}, {"alias": "flag", "constant": False},
        {"alias": "nothing", "constant": None, "type": "date"}, {"alias": "doc", "constant": {"k": [1, 2]}}]}
    population = h.population([("p1",)])
    assert h.problems("enrichment", config, [population.shape], sources=["build"]) == []
    ctx = h.context()
    ctx.config, ctx.input_sources = config, ["build"]
    ctx.campaign.variables = list(h.declarations.values())  # the engine's context carries the campaign
    with tenant_scope(acme):
        out = registry.get("enrichment").execute(config, ctx, [population]).outputs["out"]
    assert [c.type for c in out.columns] == ["date", "numeric", "jsonb", "bigint", "timestamptz", "numeric",
                                             "boolean", "date", "jsonb"]
    assert table(out) == [("p1", dt.date(2026, 11, 1), Decimal("12.5"), ["a", "b"], None,
                           dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC), Decimal("0.1"), False, None, {"k": [1, 2]})]


def test_later_filters_can_name_the_aliases(h, acme, shop):
    """The output shape carries the aliases with their types, so a filter downstream (a split, a
    dedup) validates and compiles against them."""
    from apps.activities.targeting import condition, filter_problems

    store_records(acme, shop, SHOP)
    config = {"columns": [{"alias": "spent", "link": "purchases", "aggregate": "sum", "field": "amount"}]}
    population = h.population([("p1",), ("p2",)])
    shape = output_shape(h, config, [population.shape], ["build"])
    assert shape == Shape("profile", (Column("spent", "numeric"),))
    tree = {"all": [{"field": "spent", "op": "gt", "value": 5}, {"field": "country", "op": "eq", "value": "FR"}]}
    with tenant_scope(acme):
        ctx = ValidationContext(tenant=acme, dimension="profile", variables={}, schemas={}, node_id="split")
        assert filter_problems(ctx, tree, path="config.filter", shape=shape) == []
        assert filter_problems(ctx, {"field": "spent", "op": "contains", "value": "x"}, path="config.filter",
                               shape=shape)
    out = h.run("enrichment", config, [population]).outputs["out"]
    ctx = h.context()
    with tenant_scope(acme):
        where = condition(ctx, out, tree)
    with connection.cursor() as cursor:
        statement = sql.SQL("SELECT p.key FROM {} AS p JOIN schemas_record r ON r.key = p.key WHERE ").format(
            table_ident(out.table)) + where.sql
        cursor.execute(statement.as_string(cursor.connection), where.params)
        assert [row[0] for row in cursor.fetchall()] == ["p1"]


def test_a_joined_file_is_read_on_the_chosen_keys(h, acme, shop):
    store_records(acme, shop, SHOP)
    population = h.population([("p1", "p1@x.test"), ("p2", "p2@x.test")], columns=[Column("email", "text")])
    loaded = h.population([("1", "p1@x.test", 10), ("2", "P2@x.test", 3), ("3", "p1@x.test", 4)],
                          columns=[Column("mail", "text"), Column("points", "bigint")], dimension="file")
    config = {"joins": [{"name": "file", "input": "load", "on": [{"field": "email", "column": "mail"}]}],
              "columns": [{"alias": "points", "link": "file", "field": "points"},
                          {"alias": "total", "link": "file", "aggregate": "sum", "field": "points"},
                          {"alias": "lines", "link": "file", "aggregate": "count"}]}
    out = h.run("enrichment", config, [population, loaded], sources=["build", "load"]).outputs["out"]
    assert table(out) == [("p1", "p1@x.test", 10, Decimal(14), 2), ("p2", "p2@x.test", None, Decimal(0), 0)]


def test_the_population_may_arrive_second(h, acme, shop):
    store_records(acme, shop, SHOP)
    population = h.population([("p1",)])
    loaded = h.population([("p1", 10)], columns=[Column("points", "bigint")], dimension="file")
    config = {"joins": [{"name": "file", "input": "load", "on": [{"field": "_key", "column": "key"}]}],
              "columns": [{"alias": "pts", "link": "file", "field": "points"}]}
    out = h.run("enrichment", config, [loaded, population], sources=["load", "build"]).outputs["out"]
    assert table(out) == [("p1", 10)]
    assert out.dimension == "profile"


def test_a_join_whose_population_did_not_arrive_is_a_node_error(h, acme, shop):
    population = h.population([("p1",)])
    config = {"joins": [{"name": "file", "input": "load", "on": [{"field": "_key", "column": "key"}]}],
              "columns": [{"alias": "n", "link": "file", "aggregate": "count"}]}
    ctx = h.context()
    ctx.config, ctx.input_sources = config, ["build"]
    with tenant_scope(acme), pytest.raises(NodeError, match="did not arrive"):
        registry.get("enrichment").execute(config, ctx, [population])


def test_a_field_removed_after_publishing_is_a_node_error(h, acme, shop):
    population = h.population([("p1",)])
    config = {"columns": [{"alias": "s", "field": "score"}]}
    with tenant_scope(acme):
        Field.objects.filter(name="score").delete()
    ctx = h.context()
    ctx.config, ctx.input_sources = config, ["build"]
    with tenant_scope(acme), pytest.raises(NodeError, match="Unknown field 'score'"):
        registry.get("enrichment").execute(config, ctx, [population])


# -- validation through the graph -----------------------------------------------------------------

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}


def graph_problems(acme, people, *nodes, edges, variables=None):
    graph = {"nodes": [START, *nodes], "edges": [{"from": a, "port": "out", "to": b} for a, b in edges]}
    campaign = make_campaign(acme, people["acme"]["marketer"].user, graph, variables=variables or [])
    with tenant_scope(acme):
        return services.graph_problems(campaign, graph)


def enrich_after_build(acme, people, config, dimension="profile"):
    return graph_problems(
        acme, people,
        {"id": "build", "type": "build_audience", "config": {"dimension": dimension, "filter": {}}},
        {"id": "enrich", "type": "enrichment", "config": config},
        edges=[("start", "build"), ("build", "enrich")],
        variables=[{"name": "wave", "type": "string"}])


@pytest.mark.parametrize("columns,path,message", [
    ([{"alias": "x", "link": "nope", "field": "city"}], "config.columns[0].link", "Unknown link 'nope'"),
    ([{"alias": "x", "field": "shoe_size"}], "config.columns[0].field", "Unknown field 'shoe_size'"),
    ([{"alias": "a", "constant": 1}, {"alias": "x", "link": "household", "field": "town"}],
     "config.columns[1].field", "Unknown field 'town' of 'household'"),
    ([{"alias": "Bad-Name", "field": "country"}], "config.columns[0].alias", "Invalid alias"),
    ([{"alias": "key", "field": "country"}], "config.columns[0].alias", "Invalid alias"),
    ([{"alias": "a", "field": "country"}, {"alias": "a", "field": "score"}], "config.columns[1].alias", "used twice"),
    ([{"alias": "x", "link": "purchases", "field": "amount"}], "config.columns[0].link", "one-to-many"),
    ([{"alias": "x", "link": "purchases", "aggregate": "sum", "field": "channel"}], "config.columns[0].field",
     "sum needs a number"),
    ([{"alias": "x", "link": "purchases", "aggregate": "avg"}], "config.columns[0].field", "avg needs a field"),
    ([{"alias": "x", "link": "purchases", "aggregate": "count",
       "where": {"field": "colour", "op": "eq", "value": "red"}}], "config.columns[0].where.field",
     "Unknown field \"colour\" in schema 'purchase'"),
    ([{"alias": "x", "link": "purchases", "collect": 3, "fields": ["amount"]}], "config.columns[0].order_by",
     "order_by"),
    ([{"alias": "x", "link": "purchases", "collect": 3, "order_by": "purchased_at", "fields": ["amount", "size"]}],
     "config.columns[0].fields[1]", "Unknown field 'size' of 'purchase'"),
    ([{"alias": "x", "variable": "nope"}], "config.columns[0].variable", "Unknown variable 'nope'"),
    ([{"alias": "x", "constant": "soon", "type": "date"}], "config.columns[0].constant", "not a valid date"),
    ([{"alias": "x", "constant": 1, "field": "country"}], "config.columns[0].field", "does not apply"),
    ([{"alias": "x", "field": "country", "aggregate": "count"}], "config.columns[0].aggregate",
     "name a `link`"),
])
def test_problems_name_the_node_and_the_path(acme, people, shop, columns, path, message):
    problems = enrich_after_build(acme, people, {"columns": columns})
    assert any(p["node"] == "enrich" and p["path"] == path and message in p["message"] for p in problems), problems


def test_a_population_of_another_dimension_has_other_fields_and_links(acme, people, shop):
    """Purchases have no `household` link and no `country` field: the enrichment written for
    profiles is refused on a population of purchases."""
    config = {"columns": [{"alias": "c", "field": "country"}, {"alias": "h", "link": "household", "field": "city"}]}
    assert enrich_after_build(acme, people, config, dimension="profile") == []
    problems = enrich_after_build(acme, people, config, dimension="purchase")
    assert {(p["node"], p["path"]) for p in problems} == {("enrich", "config.columns[0].field"),
                                                         ("enrich", "config.columns[1].link")}
    assert "'household'" in problems[1]["message"] and "'purchase'" in problems[1]["message"]


def test_join_problems_and_the_shape_downstream(acme, people, shop):
    build = {"id": "build", "type": "build_audience", "config": {"filter": {}}}
    other = {"id": "other", "type": "build_audience", "config": {"filter": {}}}
    scored = {"id": "scored", "type": "enrichment", "config": {"columns": [{"alias": "pts", "field": "score"}]}}

    def problems_of(config):
        return graph_problems(acme, people, build, other, scored, {"id": "enrich", "type": "enrichment",
                                                                   "config": config},
                              edges=[("start", "build"), ("start", "other"), ("other", "scored"),
                                     ("build", "enrich"), ("scored", "enrich")])

    join = {"name": "extra", "input": "scored", "on": [{"field": "_key", "column": "key"}]}
    good = {"joins": [join], "columns": [{"alias": "p", "link": "extra", "field": "pts"}]}
    assert problems_of(good) == []
    bad_column = {"joins": [{**join, "on": [{"field": "_key", "column": "points"}]}],
                  "columns": [{"alias": "p", "link": "extra", "aggregate": "count"}]}
    assert [(p["path"], "no column 'points'" in p["message"]) for p in problems_of(bad_column)] == [
        ("config.joins[0].on[0].column", True)]
    unjoined = {"columns": [{"alias": "c", "field": "country"}]}
    assert [p["path"] for p in problems_of(unjoined)] == ["config.joins"]
    wrong_input = {"joins": [{**join, "input": "nowhere"}], "columns": [{"alias": "c", "field": "country"}]}
    assert "config.joins[0].input" in [p["path"] for p in problems_of(wrong_input)]
    unknown_column = {"joins": [join], "columns": [{"alias": "p", "link": "extra", "field": "score"}]}
    assert [p["path"] for p in problems_of(unknown_column)] == ["config.columns[0].field"]


# -- through the engine ---------------------------------------------------------------------------

def test_enrichment_in_a_test_run_computes_real_columns(acme, people, shop, eager):
    store_records(acme, shop, SHOP)
    marketer = people["acme"]["marketer"].user
    graph = {"nodes": [START,
                       {"id": "build", "type": "build_audience", "config": {"filter": {}}},
                       {"id": "enrich", "type": "enrichment", "config": {"columns": [
                           {"alias": "orders", "link": "purchases", "aggregate": "count"},
                           {"alias": "city", "link": "household", "field": "city"}]}},
                       {"id": "end", "type": "end"}],
             "edges": [{"from": "start", "port": "out", "to": "build"},
                       {"from": "build", "port": "out", "to": "enrich"},
                       {"from": "enrich", "port": "out", "to": "end"}]}
    campaign = make_campaign(acme, marketer, graph)
    with tenant_scope(acme), eager(execute=True):
        run = services.campaign_test(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
        assert run.status == "completed", run.error
        node = NodeState.objects.get(run=run, node_id="enrich")
    assert node.status == "done" and node.count_in == 2 and node.count_out == 2
    assert node.summary == {"count": 2, "columns": ["orders", "city"]}
    assert table(Population.from_dict(node.outputs["out"])) == [("p1", 3, "Paris"), ("p2", 1, None)]


def test_a_loaded_file_joined_in_a_graph(acme, people, shop, django_capture_on_commit_callbacks):
    """Load file → Enrichment's second input, joined on e-mail; through the engine in test mode."""
    from tests.activities.datafiles import graph, new_campaign, run_campaign, upload

    store_records(acme, shop, {"profile": {"p1": {"id": "p1", "email": "ann@x.test"},
                                           "p2": {"id": "p2", "email": "bob@x.test"}}})
    marketer = people["acme"]["marketer"].user
    campaign = new_campaign(acme, marketer)
    file = upload(acme, campaign, "mail,points\nann@x.test,10\nann@x.test,5\nzoe@x.test,1\n")
    g = graph({"id": "load", "type": "load_file", "config": {"file": {"upload": file.pk}, "columns": [
                  {"name": "mail", "type": "email"}, {"name": "points", "type": "integer"}]}},
              {"id": "build", "type": "build_audience", "config": {"filter": {}}},
              {"id": "enrich", "type": "enrichment", "config": {
                  "joins": [{"name": "file", "input": "load", "on": [{"field": "email", "column": "mail"}]}],
                  "columns": [{"alias": "points", "link": "file", "aggregate": "sum", "field": "points"},
                              {"alias": "lines", "link": "file", "collect": 2, "order_by": "points",
                               "fields": ["points"], "as": "list"}]}},
              {"id": "end", "type": "end"},
              edges=[("start", "out", "load"), ("start", "out", "build"), ("build", "out", "enrich"),
                     ("load", "out", "enrich"), ("enrich", "out", "end")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks, test=True)
    assert run.status == "completed", run.error
    out = Population.from_dict(nodes["enrich"].outputs["out"])
    assert out.dimension == "profile"
    assert table(out) == [("p1", Decimal(15), [{"points": 10}, {"points": 5}]), ("p2", Decimal(0), [])]


def test_without_known_inputs_only_the_config_itself_is_checked(h, shop):
    """Downstream of an invalid node the inputs are unknown: aliases, constants and the form of
    linked columns are still checked; fields and links wait for the inputs."""
    config = {"joins": [{"name": "file", "input": "load", "on": [{"field": "email", "column": "mail"}]}],
              "columns": [{"alias": "Bad", "field": "country"}, {"alias": "c", "field": "no_such_field"},
                          {"alias": "d", "link": "file", "order_by": "points"},
                          {"alias": "e", "constant": "x", "type": "integer"},
                          {"alias": "f", "link": "nope", "aggregate": "count"}]}
    problems = h.problems("enrichment", config, None)
    assert [(p.node, p.path) for p in problems] == [
        ("node", "config.columns[0].alias"), ("node", "config.columns[2].order_by"),
        ("node", "config.columns[3].constant")]


def test_a_big_population_groups_every_linked_row_with_bitmap_scans_and_the_settings_come_back(h, acme, shop,
                                                                                               monkeypatch):
    """Over a big population the aggregates group every linked row, in a statement planned without
    plain index scans (its estimates of indexed filters are not trusted) and with parallel workers
    that only read; the node's later statements get the planner's settings back."""
    monkeypatch.setattr(enrichment, "RESTRICT_BELOW", -1)
    store_records(acme, shop, SHOP)
    population = h.population([("p1",), ("p2",), ("p3",)])
    config = {"columns": [
        {"alias": "orders_30d", "link": "purchases", "aggregate": "count",
         "where": {"field": "purchased_at", "op": "within_last", "value": "30d"}},
        {"alias": "spent", "link": "purchases", "aggregate": "sum", "field": "amount"}]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('parallel_leader_participation')")
        before = cursor.fetchone()
        done = h.run("enrichment", config, [population])
        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('parallel_leader_participation')")
        assert cursor.fetchone() == before
    assert [row[:3] for row in table(done.outputs["out"])] == [("p1", 2, Decimal("19.5")), ("p2", 1, Decimal("1")),
                                                              ("p3", 0, Decimal("0"))]
    validation = ValidationContext(tenant=acme, dimension="profile", variables={}, schemas={}, node_id="node",
                                   input_sources=["in0"])
    planned = enrichment.Planner(validation, config, enrichment.load_catalog(acme), population.shape, {}, {})
    statement = enrichment._Statement(h.context(), population, {}, planned)
    statement.build(planned.plan())
    assert statement.planner_settings() == {"enable_indexscan": "off", "parallel_leader_participation": "off"}
    # a LATERAL subquery per row (collected purchases) keeps the planner's own choice
    collect = {"columns": [*config["columns"], {"alias": "last", "link": "purchases", "collect": 1,
                                                "order_by": "purchased_at", "fields": ["order_id"]}]}
    planned = enrichment.Planner(validation, collect, enrichment.load_catalog(acme), population.shape, {}, {})
    statement = enrichment._Statement(h.context(), population, {}, planned)
    statement.build(planned.plan())
    assert statement.planner_settings() is None
