"""Build audience, Combine, Deduplication, Split and Save audience, each run on hand-made
populations (tests/activities/harness.py) and checked against a plain-Python computation of the
same operation; the property tests draw random small data sets with hypothesis."""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.activities.base import Column, NodeError, Shape
from apps.audiences.models import Audience
from apps.audiences.services import audience_create
from apps.schemas.models import DataSchema, Field
from apps.tenants.scoping import tenant_scope
from tests.activities.harness import Harness, keys, rows
from tests.schemas.evaluator import FieldSpec, Rec, SchemaSpec, World, evaluate, store_world

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
EXTRA = {"age": FieldSpec("integer"), "score": FieldSpec("decimal")}
PROFILE = SchemaSpec("profile", "id", {
    "id": FieldSpec("string"), "email": FieldSpec("email"), "country": FieldSpec("string"),
    "email_opt_in": FieldSpec("boolean"), **EXTRA})
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

profiles_strategy = st.lists(
    st.fixed_dictionaries({
        "email": st.sampled_from([None, "a@x.test", "b@x.test", "B@x.test ", "c@x.test"]),
        "country": st.sampled_from([None, "FR", "DE", "US"]),
        "age": st.one_of(st.none(), st.integers(18, 80)),
        "email_opt_in": st.booleans(),
    }), min_size=0, max_size=14)


def add_extra_fields(tenant) -> None:
    with tenant_scope(tenant):
        profile = DataSchema.objects.get(name="profile")
        if not Field.objects.filter(schema=profile, name="age").exists():
            Field.objects.bulk_create([Field(tenant=tenant, schema=profile, name=name, type=f.type, position=100 + i)
                                       for i, (name, f) in enumerate(EXTRA.items())])


def store(tenant, people: list[dict[str, Any]]) -> World:
    """Profiles p0, p1… with these attributes (None values left out), stored for `tenant`."""
    records = [Rec(f"p{i}", {"id": f"p{i}", **{k: v for k, v in person.items() if v is not None}}, NOW, NOW)
               for i, person in enumerate(people)]
    world = World({"profile": PROFILE}, {"profile": records}, NOW, zoneinfo.ZoneInfo("UTC"))
    with tenant_scope(tenant):
        store_world(tenant, world, existing={"profile": DataSchema.objects.get(name="profile")})
    return world


def rolled_back(func):
    """Run `func` in a savepoint that is rolled back: each hypothesis example starts clean."""
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with transaction.atomic():
            func(*args, **kwargs)
            transaction.set_rollback(True)
    return wrapper


@pytest.fixture
def h(acme) -> Harness:
    add_extra_fields(acme)
    return Harness(acme, declarations={"country": {"name": "country", "type": "string"}})


PEOPLE = [
    {"email": "ann@x.test", "country": "FR", "age": 40, "email_opt_in": True},
    {"email": "bob@x.test", "country": "DE", "age": 30, "email_opt_in": False},
    {"email": "ann@x.test", "country": "FR", "age": 22, "email_opt_in": True},
    {"email": None, "country": "US", "age": 50, "email_opt_in": True},
    {"email": None, "country": "FR", "age": None, "email_opt_in": True},
]


# -- Build audience ------------------------------------------------------------------------------

def test_build_audience_selects_the_filter_with_variables(h, acme):
    world = store(acme, PEOPLE)
    h.variables = {"country": "FR"}
    tree = {"all": [{"field": "country", "op": "eq", "value": {"var": "country"}},
                    {"field": "age", "op": "gte", "value": 25}]}
    done = h.run("build_audience", {"filter": tree}, [])
    assert keys(done.outputs["out"]) == sorted(evaluate(world, "profile", tree, {"country": "FR"})) == ["p0"]
    assert done.outputs["out"].dimension == "profile" and done.summary == {"count": 1}


def test_build_audience_from_saved_audiences_narrowed_by_a_filter(h, acme, people):
    store(acme, PEOPLE)
    admin = people["acme"]["admin"].user
    with tenant_scope(acme):
        static, _ = audience_create(tenant=acme, name="Static", kind="static", keys=["p0", "p1", "p3"], by=admin)
        dynamic, _ = audience_create(tenant=acme, name="Dynamic", kind="dynamic",
                                     filter={"field": "country", "op": "eq", "value": "FR"}, by=admin)
    assert keys(h.run("build_audience", {"audience": static.pk}, []).outputs["out"]) == ["p0", "p1", "p3"]
    assert keys(h.run("build_audience", {"audience": dynamic.pk}, []).outputs["out"]) == ["p0", "p2", "p4"]
    narrowed = h.run("build_audience", {"audience": static.pk,
                                        "filter": {"field": "email_opt_in", "op": "eq", "value": True}}, [])
    assert keys(narrowed.outputs["out"]) == ["p0", "p3"]


def test_build_audience_can_emit_nothing_when_empty(h, acme):
    store(acme, PEOPLE)
    tree = {"field": "country", "op": "eq", "value": "JP"}
    assert h.run("build_audience", {"filter": tree, "skip_if_empty": True}, []).outputs == {}
    assert h.run("build_audience", {"filter": tree}, []).outputs["out"].count == 0


def test_build_audience_problems_name_the_node_and_path(h, globex, people):
    other = Audience.dangerously_unscoped.create(tenant=globex, name="Theirs", kind="static",
                                                 schema=DataSchema.dangerously_unscoped.get(tenant=globex,
                                                                                            name="profile"))
    cases = [
        ({}, "config", "Choose a saved audience or give a filter"),
        ({"filter": {"field": "shoe_size", "op": "eq", "value": 1}}, "config.filter.field", "Unknown field"),
        ({"filter": {"field": "age", "op": "gte", "value": {"var": "nope"}}}, "config.filter", "Unknown variable"),
        ({"audience": other.pk}, "config.audience", "No audience"),
        ({"dimension": "nothing", "filter": {}}, "config.dimension", "Unknown schema"),
        ({"filter": {}, "colour": 1}, "config", "Additional properties"),
    ]
    for config, path, message in cases:
        problems = h.problems("build_audience", config, [Shape(None)])
        assert [(p.node, p.path) for p in problems][:1] == [("node", path)], (config, problems)
        assert message in problems[0].message


# -- Combine -------------------------------------------------------------------------------------

key_sets = st.lists(st.sets(st.sampled_from([f"p{i}" for i in range(8)])), min_size=2, max_size=4)


@PROPERTY
@given(sets=key_sets, primary=st.integers(0, 3))
def test_combine_matches_set_algebra(h, acme, sets, primary):
    @rolled_back
    def check() -> None:
        store(acme, [{"email": f"{i}@x.test"} for i in range(8)])
        inputs = [h.population([(k, f"{k}:{n}") for k in sorted(s)], columns=[Column("tag", "text")])
                  for n, s in enumerate(sets)]
        sources = [f"in{i}" for i in range(len(sets))]
        union = h.run("combine", {"operation": "union"}, inputs, sources=sources).outputs["out"]
        expected_union = {}
        for n, s in enumerate(sets):
            for k in s:
                expected_union.setdefault(k, f"{k}:{n}")  # the first input's row wins
        assert rows(union) == sorted(expected_union.items())

        both = h.run("combine", {"operation": "intersection", "complement": True}, inputs, sources=sources).outputs
        common = set.intersection(*sets)
        assert keys(both["out"]) == sorted(common)
        assert keys(both["complement"]) == sorted(set.union(*sets) - common)

        chosen = primary % len(sets)
        excluded = h.run("combine", {"operation": "exclusion", "primary": sources[chosen], "complement": True},
                         inputs, sources=sources).outputs
        others = set().union(*(s for i, s in enumerate(sets) if i != chosen))
        assert rows(excluded["out"]) == sorted((k, f"{k}:{chosen}") for k in sets[chosen] - others)
        assert keys(excluded["complement"]) == sorted(sets[chosen] & others)
    check()


def test_combine_on_a_field_reconciles_records_with_equal_values(h, acme):
    store(acme, PEOPLE)  # p0 and p2 share an email
    a = h.population([("p0",), ("p1",)])
    b = h.population([("p2",), ("p3",)])
    done = h.run("combine", {"operation": "intersection", "match_on": ["email"]}, [a, b])
    assert keys(done.outputs["out"]) == ["p0"]
    union = h.run("combine", {"operation": "union", "match_on": ["email"]}, [a, b])
    assert keys(union.outputs["out"]) == ["p0", "p1", "p3"]  # p2 is p0 by email; p3 has none: no match


def test_combine_keeps_only_columns_every_input_carries_in_a_union(h, acme):
    store(acme, PEOPLE)
    a = h.population([("p0", "x", 1)], columns=[Column("tag", "text"), Column("n", "bigint")])
    b = h.population([("p1", "y")], columns=[Column("tag", "text")])
    union = h.run("combine", {"operation": "union"}, [a, b]).outputs["out"]
    assert [c.name for c in union.columns] == ["tag"] and rows(union) == [("p0", "x"), ("p1", "y")]


def test_combine_refuses_inputs_of_different_dimensions(h, acme):
    problems = h.problems("combine", {"operation": "union"}, [Shape("profile"), Shape("purchase")],
                          sources=["build", "orders"])
    assert problems and "same dimension" in problems[0].message and "'purchase' from orders" in problems[0].message
    a = h.population([("p0",)])
    b = h.population([("o1",)], dimension="purchase")
    with pytest.raises(NodeError, match="different dimensions"):
        ctx = h.context()
        ctx.input_sources = ["a", "b"]
        from apps.activities import registry

        registry.get("combine").execute({"operation": "union"}, ctx, [a, b])


def test_combine_options_are_checked(h):
    shapes = [Shape("profile"), Shape("profile")]
    assert "no complement" in h.problems("combine", {"operation": "union", "complement": True}, shapes)[0].message
    assert h.problems("combine", {"operation": "exclusion", "primary": "ghost"}, shapes)[0].path == "config.primary"
    assert h.problems("combine", {"operation": "union", "match_on": ["shoe"]}, shapes)[0].path == "config.match_on[0]"


# -- Deduplication -------------------------------------------------------------------------------

def python_dedup(world: World, fields: list[str], keep: int, rank, ignore_case: bool = False):
    groups: dict[Any, list[Rec]] = defaultdict(list)
    for rec in world.records["profile"]:
        values = tuple(_norm(rec.attributes.get(f), ignore_case) for f in fields)
        group = ("__alone__", rec.key) if all(v is None for v in values) else values
        groups[group].append(rec)
    kept, removed = set(), set()
    for members in groups.values():
        ordered = sorted(members, key=rank)
        kept |= {r.key for r in ordered[:keep]}
        removed |= {r.key for r in ordered[keep:]}
    return kept, removed


def _norm(value: Any, ignore_case: bool) -> Any:
    if ignore_case and isinstance(value, str):
        return value.strip().lower()
    return value


def sticky(seed: str, key: str) -> float:
    return int(hashlib.md5(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 4294967296


@PROPERTY
@given(people=profiles_strategy, keep=st.integers(1, 2), ignore_case=st.booleans(),
       rule=st.sampled_from(["random", "smallest", "largest", "non_empty", "priority"]))
def test_dedup_matches_a_python_dedup(h, acme, people, keep, ignore_case, rule):
    @rolled_back
    def check() -> None:
        world = store(acme, people)
        population = h.population([(r.key,) for r in world.records["profile"]])
        config: dict[str, Any] = {"fields": ["email"], "keep": keep, "ignore_case": ignore_case, "rule": rule,
                                  "complement": True, "seed": "s"}
        if rule != "random":
            config["by"] = "age" if rule != "priority" else "country"
        if rule == "priority":
            config["values"] = ["DE", "FR"]
        done = h.run("dedup", config, [population])

        def age(r: Rec) -> Any:
            return r.attributes.get("age")

        tie = lambda r: (sticky("s", r.key), r.key)  # noqa: E731
        rank = {
            "random": tie,
            "smallest": lambda r: (age(r) is None, age(r) or 0, *tie(r)),
            "largest": lambda r: (age(r) is None, -(age(r) or 0), *tie(r)),
            "non_empty": lambda r: (age(r) is None, *tie(r)),
            "priority": lambda r: ({"DE": 1, "FR": 2}.get(r.attributes.get("country"), 10**9), *tie(r)),
        }[rule]
        kept, removed = python_dedup(world, ["email"], keep, rank, ignore_case)
        assert set(keys(done.outputs["out"])) == kept
        assert set(keys(done.outputs["complement"])) == removed
        assert done.summary == {"in": len(people), "kept": len(kept), "removed": len(removed)}
    check()


def test_dedup_carries_columns_and_reads_them(h, acme):
    store(acme, PEOPLE)
    population = h.population([("p0", Decimal(5)), ("p1", Decimal(1)), ("p2", Decimal(9))],
                              columns=[Column("spent", "numeric")])
    done = h.run("dedup", {"fields": ["email"], "rule": "largest", "by": "spent"}, [population])
    assert rows(done.outputs["out"]) == [("p1", Decimal(1)), ("p2", Decimal(9))]


def test_dedup_problems(h):
    shape = [Shape("profile")]
    assert h.problems("dedup", {"fields": ["shoe"]}, shape)[0].path == "config.fields[0]"
    assert h.problems("dedup", {"fields": ["email"], "rule": "smallest"}, shape)[0].path == "config.by"
    assert h.problems("dedup", {"fields": ["email"], "rule": "priority", "by": "country"},
                      shape)[0].path == "config.values"
    assert "needs a population" in h.problems("dedup", {"fields": ["email"]}, [Shape(None)])[0].message
    assert h.problems("dedup", {"fields": []}, shape)[0].path == "config.fields"


# -- Split ---------------------------------------------------------------------------------------

SUBSET_FILTERS = [
    {"field": "country", "op": "eq", "value": "FR"},
    {"field": "age", "op": "gte", "value": 40},
    {"field": "email_opt_in", "op": "eq", "value": True},
    {"field": "email", "op": "is_null"},
]


@PROPERTY
@given(people=profiles_strategy, picks=st.lists(st.integers(0, 3), min_size=1, max_size=3),
       overlapping=st.booleans())
def test_split_by_filters_matches_python(h, acme, people, picks, overlapping):
    @rolled_back
    def check() -> None:
        world = store(acme, people)
        population = h.population([(r.key,) for r in world.records["profile"]])
        subsets = [{"code": f"s{i}", "filter": SUBSET_FILTERS[p]} for i, p in enumerate(picks)]
        done = h.run("split", {"subsets": subsets, "overlapping": overlapping, "complement": True}, [population])
        taken: set[str] = set()
        for i, p in enumerate(picks):
            matches = evaluate(world, "profile", SUBSET_FILTERS[p])
            expected = matches if overlapping else matches - taken
            assert set(keys(done.outputs[f"s{i}"])) == expected
            taken |= expected
        assert set(keys(done.outputs["complement"])) == {r.key for r in world.records["profile"]} - taken
    check()


def test_split_limits_with_a_sort_take_the_top(h, acme):
    store(acme, PEOPLE)
    population = h.population([(f"p{i}",) for i in range(5)])
    done = h.run("split", {"subsets": [
        {"code": "top2", "limit": {"count": 2}, "sort": {"by": "age", "direction": "desc"}},
        {"code": "youngest", "limit": {"percent": 50}, "sort": {"by": "age", "direction": "asc"}},
    ], "complement": True}, [population])
    assert keys(done.outputs["top2"]) == ["p0", "p3"]          # 50 and 40
    # 50 % of the 3 left (ceil → 2), youngest first: p2 (22), p1 (30); p4 has no age
    assert keys(done.outputs["youngest"]) == ["p1", "p2"]
    assert keys(done.outputs["complement"]) == ["p4"]


def test_random_split_is_sticky_and_reproducible(h, acme):
    store(acme, [{"email": f"{i}@x.test"} for i in range(400)])
    config = {"holdout": {"percent": 10}, "subsets": [{"code": "a", "limit": {"percent": 30}},
                                                      {"code": "b", "limit": {"percent": 30}}],
              "complement": True, "seed": "fixed"}
    everyone = h.population([(f"p{i}",) for i in range(400)])
    first = h.run("split", config, [everyone]).outputs
    again = h.run("split", config, [everyone]).outputs
    half = h.population([(f"p{i}",) for i in range(0, 400, 2)])
    subset_run = h.run("split", config, [half]).outputs
    sizes = {port: first[port].count for port in ("holdout", "a", "b", "complement")}
    assert sum(sizes.values()) == 400 and 20 <= sizes["holdout"] <= 60 and 80 <= sizes["a"] <= 160, sizes
    for port in ("holdout", "a", "b", "complement"):
        assert keys(first[port]) == keys(again[port])
        # the same profile lands in the same subset whatever else the population holds
        assert set(keys(subset_run[port])) == {k for k in keys(first[port]) if int(k[1:]) % 2 == 0}
        expected = {f"p{i}" for i in range(400)
                    if _slice(sticky("fixed", f"p{i}"), [0.1, 0.4, 0.7]) == port}
        assert set(keys(first[port])) == expected


def _slice(value: float, bounds: list[float]) -> str:
    for port, bound in zip(["holdout", "a", "b"], bounds, strict=True):
        if value < bound:
            return port
    return "complement"


def test_random_count_is_the_smallest_hashes(h, acme):
    store(acme, [{} for _ in range(30)])
    population = h.population([(f"p{i}",) for i in range(30)])
    done = h.run("split", {"subsets": [{"code": "ten", "limit": {"count": 10}}], "seed": "z"}, [population])
    assert set(keys(done.outputs["ten"])) == set(sorted((f"p{i}" for i in range(30)),
                                                        key=lambda k: sticky("z", k))[:10])


def test_split_single_output_carries_the_segment_code(h, acme):
    store(acme, PEOPLE)
    population = h.population([(f"p{i}", i) for i in range(5)], columns=[Column("n", "bigint")])
    done = h.run("split", {"subsets": [{"code": "fr", "filter": SUBSET_FILTERS[0]},
                                       {"code": "old", "filter": {"field": "n", "op": "gte", "value": 3}}],
                           "single_output": True, "complement": True}, [population])
    assert rows(done.outputs["out"]) == [("p0", 0, "fr"), ("p2", 2, "fr"), ("p3", 3, "old"), ("p4", 4, "fr")]
    assert [c.name for c in done.outputs["out"].columns] == ["n", "segment_code"]
    assert keys(done.outputs["complement"]) == ["p1"]


def test_split_skips_empty_subsets_when_asked(h, acme):
    store(acme, PEOPLE)
    population = h.population([(f"p{i}",) for i in range(5)])
    done = h.run("split", {"subsets": [{"code": "jp", "filter": {"field": "country", "op": "eq", "value": "JP"},
                                        "skip_if_empty": True},
                                       {"code": "us", "filter": {"field": "country", "op": "eq", "value": "US"}}]},
                 [population])
    assert set(done.outputs) == {"us"} and done.summary["jp"] == 0


def test_split_problems(h):
    shape = [Shape("profile", (Column("spent", "numeric"),))]
    assert h.problems("split", {"subsets": [{"code": "a"}, {"code": "a"}]}, shape)[0].path == "config.subsets[1].code"
    assert h.problems("split", {"subsets": [{"code": "a", "filter": {"field": "spent", "op": "gt", "value": "x"}}]},
                      shape)[0].path.startswith("config.subsets[0].filter")
    assert not h.problems("split", {"subsets": [{"code": "a", "filter": {"field": "spent", "op": "gt", "value": 3}}]},
                          shape)
    assert "more than 100" in h.problems("split", {"subsets": [{"code": "a", "limit": {"percent": 60}},
                                                               {"code": "b", "limit": {"percent": 50}}]},
                                         shape)[0].message
    assert h.problems("split", {"subsets": [{"code": "complement"}]}, shape)[0].path == "config.subsets[0].code"
    assert h.problems("split", {"subsets": [{"code": "a", "sort": {"by": "age"}}]}, shape)[0].path == \
        "config.subsets[0].sort"


# -- Save audience -------------------------------------------------------------------------------

def test_save_audience_replaces_or_appends_and_writes_nothing_in_a_test_run(h, acme):
    store(acme, PEOPLE)
    first = h.population([("p0",), ("p1",), ("ghost",)])
    done = h.run("save_audience", {"name": "Winners"}, [first])
    with tenant_scope(acme):
        audience = Audience.objects.get(name="Winners")
    assert audience.is_static and audience.count == 2 and done.summary["members"] == 2
    assert done.outputs["out"] is first
    second = h.population([("p3",)])
    h.run("save_audience", {"audience": audience.pk, "mode": "append"}, [second])
    with tenant_scope(acme):
        audience.refresh_from_db()
    assert audience.count == 3
    tested = h.run("save_audience", {"audience": audience.pk}, [second], is_test=True)
    with tenant_scope(acme):
        audience.refresh_from_db()
    assert audience.count == 3 and tested.summary == {"would_write": 1, "mode": "replace"}
    h.run("save_audience", {"audience": audience.pk}, [second])
    with tenant_scope(acme):
        audience.refresh_from_db()
    assert audience.count == 1


def test_save_audience_problems(h, acme, people):
    admin = people["acme"]["admin"].user
    with tenant_scope(acme):
        dynamic, _ = audience_create(tenant=acme, name="Query", kind="dynamic", filter={}, by=admin)
    shape = [Shape("profile")]
    assert h.problems("save_audience", {}, shape)[0].path == "config"
    assert "saved query" in h.problems("save_audience", {"audience": dynamic.pk}, shape)[0].message
    assert h.problems("save_audience", {"audience": 10**9}, shape)[0].path == "config.audience"


def test_random_subsets_read_one_hash_per_row_and_leave_only_their_outputs(h, acme):
    """Several subsets read the sticky hash: it is computed once per row into a copy of the input,
    dropped when the node is done; the subsets are those of the hash, as without the copy."""
    store(acme, [{"email": f"{i}@x.test"} for i in range(200)])
    population = h.population([(f"p{i}", i) for i in range(200)], columns=[Column("n", "bigint")])
    config = {"holdout": {"percent": 10}, "subsets": [{"code": "first", "limit": {"count": 15}},
                                                      {"code": "a", "limit": {"percent": 20}}],
              "complement": True, "seed": "once"}
    before = set(_work_tables())
    done = h.run("split", config, [population])
    ranked = sorted((f"p{i}" for i in range(200)), key=lambda k: (sticky("once", k), k))
    holdout = {k for k in ranked if sticky("once", k) < 0.1}
    first = [k for k in ranked if k not in holdout][:15]
    a = {k for k in ranked if 0.1 <= sticky("once", k) < 0.3} - set(first)
    assert set(keys(done.outputs["holdout"])) == holdout
    assert set(keys(done.outputs["first"])) == set(first)
    assert set(keys(done.outputs["a"])) == a
    assert set(keys(done.outputs["complement"])) == {f"p{i}" for i in range(200)} - holdout - set(first) - a
    assert rows(done.outputs["first"])[0][1] == int(sorted(first)[0][1:])  # columns carried, not the hash
    assert [c.name for c in done.outputs["a"].columns] == ["n"]
    new = set(_work_tables()) - before
    assert new == {p.table for p in done.outputs.values()}


def _work_tables() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'campaign_work'")
        return [row[0] for row in cursor.fetchall()]
