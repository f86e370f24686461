"""The filter language, operator by operator and error by error, on a small known world: acme's
built-in profile schema (with a few fields added) and a `purchase` schema linked to it."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.db import connection
from psycopg import sql

from apps.core.errors import ApplicationError
from apps.schemas.models import DataSchema, Field, FieldType, Record
from apps.schemas.query import (
    Compiled,
    FilterError,
    compile_filter,
    count_records,
    query_records,
    select_keys_sql,
    validate_filter,
)
from apps.schemas.query.validation import MAX_DEPTH, MAX_NODES, ops_for
from apps.schemas.types import value_sql
from apps.tenants.scoping import TenantScopeError, tenant_scope
from tests.schemas.evaluator import OPS_BY_TYPE, FieldSpec, LinkSpec, Rec, SchemaSpec, World, evaluate, store_world

UTC = dt.UTC
NOW = dt.datetime(2025, 6, 15, 10, 0, tzinfo=UTC)


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    return NOW - dt.timedelta(days=days, hours=hours)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


PROFILE_EXTRA = {
    "age": FieldSpec("integer"), "score": FieldSpec("decimal"), "tier": FieldSpec("enum", ["gold", "silver"]),
    "last_seen": FieldSpec("datetime"), "prefs": FieldSpec("json"),
}
PROFILE = SchemaSpec("profile", "id", {
    "id": FieldSpec("string"), "email": FieldSpec("email"), "phone": FieldSpec("phone"),
    "first_name": FieldSpec("string"), "country": FieldSpec("string"), "birth_date": FieldSpec("date"),
    "email_opt_in": FieldSpec("boolean"), **PROFILE_EXTRA,
}, {"purchases": LinkSpec("purchase", "id", "profile_id", "one_to_many")})
PURCHASE = SchemaSpec("purchase", "id", {
    "id": FieldSpec("string"), "profile_id": FieldSpec("string"), "amount": FieldSpec("decimal"),
    "quantity": FieldSpec("integer"), "purchased_at": FieldSpec("datetime"),
}, {"profile": LinkSpec("profile", "profile_id", "id", "many_to_one")})

PROFILES = [
    Rec("p1", {"id": "p1", "email": "ann@example.org", "first_name": "Ann", "country": "FR", "birth_date": "1985-06-20",
               "email_opt_in": True, "age": 40, "score": 12.5, "tier": "gold", "last_seen": iso(at(hours=3)),
               "prefs": {"color": "red"}, "phone": "+33612345678"},
        at(100), at(1)),
    Rec("p2", {"id": "p2", "email": "bob@shop.test", "first_name": "Bob", "country": "DE", "birth_date": "1990-01-01",
               "email_opt_in": False, "age": 35, "score": 3, "tier": "silver", "last_seen": iso(at(40)),
               "prefs": [1, 2]},
        at(50), at(20)),
    Rec("p3", {"id": "p3", "email": "cy@example.org", "first_name": "100%_sure\\", "country": None,
               "birth_date": "2000-12-31", "age": 25, "last_seen": iso(at(400))},
        at(10), at(10)),
    Rec("p4", {"id": "p4", "first_name": "ann-marie", "country": "fr"}, at(2), at(2)),
]
PURCHASES = [
    Rec("o1", {"id": "o1", "profile_id": "p1", "amount": 10, "quantity": 1, "purchased_at": iso(at(5))}, at(5), at(5)),
    Rec("o2", {"id": "o2", "profile_id": "p1", "amount": 25.5, "quantity": 2, "purchased_at": iso(at(20))},
        at(20), at(20)),
    Rec("o3", {"id": "o3", "profile_id": "p1", "amount": 300, "quantity": 1, "purchased_at": iso(at(90))},
        at(90), at(90)),
    Rec("o4", {"id": "o4", "profile_id": "p2", "amount": 99.99, "quantity": None, "purchased_at": iso(at(1))},
        at(1), at(1)),
    Rec("o5", {"id": "o5", "profile_id": "nobody", "amount": 1, "purchased_at": iso(at(1))}, at(1), at(1)),
    Rec("o6", {"id": "o6", "amount": 7}, at(1), at(1)),
]


@pytest.fixture
def world(acme) -> World:
    built = World({"profile": PROFILE, "purchase": PURCHASE}, {"profile": PROFILES, "purchase": PURCHASES}, NOW,
                  zoneinfo.ZoneInfo("Europe/Paris"))
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
        Field.objects.bulk_create([
            Field(tenant=acme, schema=profile, name=name, type=f.type, enum_values=f.enum_values, position=100 + i)
            for i, (name, f) in enumerate(PROFILE_EXTRA.items())
        ])
    store_world(acme, built, existing={"profile": profile})
    return built


def keys(tenant, tree, schema="profile", variables=None) -> set[str]:
    statement = select_keys_sql(tenant=tenant, schema=schema, tree=tree, variables=variables, now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(), statement.params)
        return {row[0] for row in cursor.fetchall()}


def check(tenant, world, tree, expected, schema="profile", variables=None) -> None:
    """The compiler and the evaluator agree, and both say `expected`."""
    assert keys(tenant, tree, schema, variables) == set(expected)
    assert evaluate(world, schema, tree, variables) == set(expected)


def problems(tenant, tree, schema="profile", variables=None) -> list[dict[str, str]]:
    with pytest.raises(FilterError) as caught:
        compile_filter(tenant=tenant, schema=schema, tree=tree, variables=variables, now=NOW)
    return caught.value.problems


# Operators ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "expected"), [
    ({"field": "country", "op": "eq", "value": "FR"}, {"p1"}),
    ({"field": "country", "op": "ne", "value": "FR"}, {"p2", "p3", "p4"}),
    ({"field": "country", "op": "in", "value": ["FR", "DE"]}, {"p1", "p2"}),
    ({"field": "country", "op": "not_in", "value": ["FR", "DE"]}, {"p3", "p4"}),
    ({"field": "country", "op": "in", "value": []}, set()),
    ({"field": "country", "op": "not_in", "value": []}, {"p1", "p2", "p3", "p4"}),
    ({"field": "country", "op": "is_null"}, {"p3"}),
    ({"field": "country", "op": "is_not_null"}, {"p1", "p2", "p4"}),
    ({"field": "age", "op": "lt", "value": 35}, {"p3"}),
    ({"field": "age", "op": "lte", "value": 35}, {"p2", "p3"}),
    ({"field": "age", "op": "gt", "value": "35"}, {"p1"}),
    ({"field": "age", "op": "gte", "value": 35.0}, {"p1", "p2"}),
    ({"field": "age", "op": "between", "value": [25, 35]}, {"p2", "p3"}),
    ({"field": "age", "op": "ne", "value": 40}, {"p2", "p3", "p4"}),
    ({"field": "score", "op": "eq", "value": "12.50"}, {"p1"}),
    ({"field": "score", "op": "gt", "value": 3}, {"p1"}),
    ({"field": "score", "op": "in", "value": [3, 12.5]}, {"p1", "p2"}),
    ({"field": "email_opt_in", "op": "eq", "value": True}, {"p1"}),
    ({"field": "email_opt_in", "op": "eq", "value": "no"}, {"p2"}),
    ({"field": "email_opt_in", "op": "ne", "value": True}, {"p2", "p3", "p4"}),
    ({"field": "tier", "op": "in", "value": ["gold"]}, {"p1"}),
    ({"field": "email", "op": "eq", "value": "ANN@Example.org"}, {"p1"}),
    ({"field": "email", "op": "ends_with", "value": "@example.org"}, {"p1", "p3"}),
    ({"field": "phone", "op": "eq", "value": "+33 6 12 34 56 78"}, {"p1"}),
    ({"field": "first_name", "op": "starts_with", "value": "Ann"}, {"p1"}),
    ({"field": "first_name", "op": "starts_with", "value": "ann", "case_insensitive": True}, {"p1", "p4"}),
    ({"field": "first_name", "op": "contains", "value": "n"}, {"p1", "p4"}),
    ({"field": "first_name", "op": "ends_with", "value": "MARIE", "case_insensitive": True}, {"p4"}),
    ({"field": "birth_date", "op": "before", "value": "1990-01-01"}, {"p1"}),
    ({"field": "birth_date", "op": "after", "value": "1990-01-01"}, {"p3"}),
    ({"field": "birth_date", "op": "eq", "value": "1990-01-01"}, {"p2"}),
    ({"field": "birth_date", "op": "between", "value": ["1985-01-01", "1995-01-01"]}, {"p1", "p2"}),
    ({"field": "last_seen", "op": "after", "value": iso(at(10))}, {"p1"}),
    ({"field": "last_seen", "op": "before", "value": "2025-06-01"}, {"p2", "p3"}),
    ({"field": "prefs", "op": "eq", "value": {"color": "red"}}, {"p1"}),
    ({"field": "prefs", "op": "eq", "value": [1, 2.0]}, {"p2"}),
    ({"field": "prefs", "op": "ne", "value": [1, 2]}, {"p1", "p3", "p4"}),
    ({"field": "prefs", "op": "is_null"}, {"p3", "p4"}),
])
def test_operator(acme, world, tree, expected):
    check(acme, world, tree, expected)


@pytest.mark.parametrize(("duration", "expected"), [
    ("15m", set()), ("4h", {"p1"}), ("1d", {"p1"}), ("2w", {"p1"}), ("6w", {"p1", "p2"}),
    ("1mo", {"p1"}), ("2mo", {"p1", "p2"}), ("1y", {"p1", "p2"}), ("2y", {"p1", "p2", "p3"}),
])
def test_within_last_on_datetime(acme, world, duration, expected):
    check(acme, world, {"field": "last_seen", "op": "within_last", "value": duration}, expected)


def test_within_last_excludes_the_future_and_uses_local_dates_for_dates(acme, world):
    # now is 2025-06-15 12:00 in the tenant's zone (Europe/Paris); birth dates are far in the past
    check(acme, world, {"field": "birth_date", "op": "within_last", "value": "50y"}, {"p1", "p2", "p3"})
    check(acme, world, {"field": "birth_date", "op": "within_last", "value": "25y"}, {"p3"})
    check(acme, world, {"field": "birth_date", "op": "within_last", "value": "20y"}, set())
    check(acme, world, {"field": "_created_at", "op": "within_last", "value": "10d"}, {"p3", "p4"})


def test_like_wildcards_are_matched_literally(acme, world):
    check(acme, world, {"field": "first_name", "op": "contains", "value": "%_"}, {"p3"})
    check(acme, world, {"field": "first_name", "op": "contains", "value": "0%"}, {"p3"})
    check(acme, world, {"field": "first_name", "op": "ends_with", "value": "\\"}, {"p3"})
    check(acme, world, {"field": "first_name", "op": "contains", "value": "_"}, {"p3"})
    check(acme, world, {"field": "first_name", "op": "contains", "value": "%"}, {"p3"})
    check(acme, world, {"field": "first_name", "op": "starts_with", "value": "a_n"}, set())


def test_builtin_columns(acme, world):
    check(acme, world, {"field": "_key", "op": "in", "value": ["p1", "p3", "zz"]}, {"p1", "p3"})
    check(acme, world, {"field": "_key", "op": "starts_with", "value": "p"}, {"p1", "p2", "p3", "p4"})
    check(acme, world, {"field": "_created_at", "op": "before", "value": iso(at(20))}, {"p1", "p2"})
    check(acme, world, {"field": "_updated_at", "op": "gte", "value": iso(at(2))}, {"p1", "p4"})


def test_missing_values_match_ne_not_in_and_negations(acme, world):
    check(acme, world, {"field": "age", "op": "ne", "value": 25}, {"p1", "p2", "p4"})
    check(acme, world, {"field": "age", "op": "not_in", "value": [25, 40]}, {"p2", "p4"})
    check(acme, world, {"not": {"field": "age", "op": "eq", "value": 25}}, {"p1", "p2", "p4"})
    check(acme, world, {"not": {"field": "age", "op": "gt", "value": 30}}, {"p3", "p4"})
    check(acme, world, {"not": {"any": [{"field": "age", "op": "gt", "value": 30},
                                        {"field": "country", "op": "eq", "value": "fr"}]}}, {"p3"})
    check(acme, world, {"not": {"not": {"field": "age", "op": "gt", "value": 30}}}, {"p1", "p2"})


def test_groups_and_empty_trees(acme, world):
    everyone = {"p1", "p2", "p3", "p4"}
    for tree in (None, {}, {"all": []}):
        check(acme, world, tree, everyone)
    check(acme, world, {"any": []}, set())
    check(acme, world, {"not": {}}, set())
    check(acme, world, {"all": [{"field": "age", "op": "gt", "value": 20}, {"field": "country", "op": "is_not_null"}]},
          {"p1", "p2"})
    check(acme, world, {"any": [{"field": "age", "op": "gt", "value": 36}, {"field": "country", "op": "eq", "value": "fr"}]},
          {"p1", "p4"})


def test_variables(acme, world):
    variables = {"minAge": 30, "countries": ["FR", "DE"], "low": 20, "window": "1d"}
    check(acme, world, {"field": "age", "op": "gte", "value": {"var": "minAge"}}, {"p1", "p2"}, variables=variables)
    check(acme, world, {"field": "country", "op": "in", "value": {"var": "countries"}}, {"p1", "p2"},
          variables=variables)
    check(acme, world, {"field": "age", "op": "between", "value": [{"var": "low"}, 30]}, {"p3"}, variables=variables)
    check(acme, world, {"field": "last_seen", "op": "within_last", "value": {"var": "window"}}, {"p1"},
          variables=variables)
    assert problems(acme, {"field": "age", "op": "gte", "value": {"var": "maxAge"}}, variables=variables) == [
        {"path": "value", "message": "The variable 'maxAge' is not set."}]
    assert problems(acme, {"field": "age", "op": "gte", "value": {"var": "countries"}}, variables=variables)[0][
        "path"] == "value"


# Links ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "expected"), [
    ({"link": "purchases"}, {"p1", "p2"}),
    ({"link": "purchases", "having": {"exists": False}}, {"p3", "p4"}),
    ({"link": "purchases", "where": {"field": "amount", "op": "gt", "value": 50}}, {"p1", "p2"}),
    ({"link": "purchases", "where": {"field": "purchased_at", "op": "within_last", "value": "30d"},
      "having": {"count": {"op": "gte", "value": 2}}}, {"p1"}),
    ({"link": "purchases", "having": {"count": {"op": "eq", "value": 0}}}, {"p3", "p4"}),
    ({"link": "purchases", "having": {"count": {"op": "lt", "value": 2}}}, {"p2", "p3", "p4"}),
    ({"link": "purchases", "having": {"count": {"op": "ne", "value": 1}}}, {"p1", "p3", "p4"}),
    ({"link": "purchases", "having": {"count": {"op": "between", "value": [1, 3]}}}, {"p1", "p2"}),
    ({"link": "purchases", "having": {"sum": {"field": "amount", "op": "gt", "value": 300}}}, {"p1"}),
    ({"link": "purchases", "having": {"sum": {"field": "amount", "op": "lt", "value": 100}}}, {"p2", "p3", "p4"}),
    ({"link": "purchases", "having": {"sum": {"field": "quantity", "op": "eq", "value": 0}}}, {"p2", "p3", "p4"}),
    ({"link": "purchases", "having": {"min": {"field": "amount", "op": "lte", "value": 10}}}, {"p1"}),
    ({"link": "purchases", "having": {"max": {"field": "purchased_at", "op": "within_last", "value": "2d"}}},
     {"p2"}),
    ({"link": "purchases", "having": {"max": {"field": "quantity", "op": "ne", "value": 2}}}, {"p2", "p3", "p4"}),
    ({"link": "purchases", "having": {"avg": {"field": "amount", "op": "gt", "value": 100}}}, {"p1"}),
    ({"link": "purchases", "where": {"link": "profile", "where": {"field": "country", "op": "eq", "value": "DE"}}},
     {"p2"}),
    ({"not": {"link": "purchases", "where": {"field": "amount", "op": "lt", "value": 20}}}, {"p2", "p3", "p4"}),
])
def test_links_from_profiles(acme, world, tree, expected):
    check(acme, world, tree, expected)


def test_many_to_one_link(acme, world):
    check(acme, world, {"link": "profile", "where": {"field": "country", "op": "eq", "value": "FR"}},
          {"o1", "o2", "o3"}, schema="purchase")
    check(acme, world, {"link": "profile", "having": {"exists": False}}, {"o5", "o6"}, schema="purchase")
    check(acme, world, {"link": "profile", "where": {
        "link": "purchases", "having": {"count": {"op": "gte", "value": 3}}}}, {"o1", "o2", "o3"}, schema="purchase")


def test_link_subqueries_use_the_key_and_bind_the_tenant(acme, world):
    compiled = compile_filter(tenant=acme, schema="purchase", now=NOW, tree={
        "link": "profile", "where": {"link": "purchases", "having": {"count": {"op": "gte", "value": 3}}}})
    text = compiled.as_string()
    assert '"l1"."key" = ("r"."attributes"->>\'profile_id\')' in text
    assert text.count("tenant_id = %s") == 3
    assert compiled.params.count(acme.pk) == 3


# Validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "path", "message"), [
    ([], "", "must be a JSON object"),
    ("country = 'FR'", "", "must be a JSON object"),
    ({"fields": "country"}, "", "needs one of the keys"),
    ({"field": "country", "all": []}, "", "not both"),
    ({"field": "country", "op": "eq", "value": "FR", "extra": 1}, "extra", "Unknown key"),
    ({"all": {"field": "country"}}, "all", "list of conditions"),
    ({"all": [{"field": "country", "op": "eq", "value": "FR"}, 3]}, "all[1]", "must be a JSON object"),
    ({"field": "nope", "op": "eq", "value": 1}, "field", "Unknown field \"nope\" in schema 'profile'"),
    ({"field": 12, "op": "eq", "value": 1}, "field", "named by a string"),
    ({"field": "country", "op": "like", "value": "F%"}, "op", "Unknown operator \"like\""),
    ({"field": "country", "value": "FR"}, "op", "operator (op) is required"),
    ({"field": "country", "op": "lt", "value": "FR"}, "op", "does not apply to text field 'country'"),
    ({"field": "age", "op": "contains", "value": "1"}, "op", "does not apply to integer field 'age'"),
    ({"field": "email_opt_in", "op": "gt", "value": True}, "op", "does not apply"),
    ({"field": "prefs", "op": "in", "value": [1]}, "op", "does not apply to JSON"),
    ({"field": "country", "op": "within_last", "value": "3d"}, "op", "does not apply"),
    ({"field": "age", "op": "eq", "value": "forty"}, "value", "not an integer"),
    ({"field": "age", "op": "eq", "value": 40.5}, "value", "not an integer"),
    ({"field": "age", "op": "eq", "value": True}, "value", "not an integer"),
    ({"field": "age", "op": "eq", "value": 2**70}, "value", "out of range"),
    ({"field": "score", "op": "gt", "value": "1e999"}, "value", "out of range"),
    ({"field": "age", "op": "eq"}, "value", "needs a value"),
    ({"field": "age", "op": "eq", "value": None}, "value", "is_null"),
    ({"field": "age", "op": "eq", "value": [1]}, "value", "single value"),
    ({"field": "age", "op": "is_null", "value": 3}, "value", "takes no value"),
    ({"field": "country", "op": "eq", "value": True}, "value", "takes text"),
    ({"field": "tier", "op": "eq", "value": "bronze"}, "value", "not one of gold, silver"),
    ({"field": "email", "op": "eq", "value": "not-an-email"}, "value", "not an e-mail"),
    ({"field": "email_opt_in", "op": "eq", "value": "maybe"}, "value", "not a yes/no"),
    ({"field": "birth_date", "op": "before", "value": "31/12/1990"}, "value", "not a date"),
    ({"field": "last_seen", "op": "after", "value": "yesterday"}, "value", "not a date and time"),
    ({"field": "country", "op": "in", "value": "FR"}, "value", "list of values"),
    ({"field": "age", "op": "in", "value": [1, "x"]}, "value[1]", "not an integer"),
    ({"field": "age", "op": "between", "value": [1]}, "value", "two values"),
    ({"field": "country", "op": "contains", "value": 3}, "value", "takes text"),
    ({"field": "country", "op": "eq", "value": "FR", "case_insensitive": True}, "case_insensitive", "applies to"),
    ({"field": "country", "op": "contains", "value": "F", "case_insensitive": "yes"}, "case_insensitive", "true or"),
    ({"field": "last_seen", "op": "within_last", "value": "30 days"}, "value", "not a duration"),
    ({"field": "last_seen", "op": "within_last", "value": "0d"}, "value", "not a duration"),
    ({"field": "last_seen", "op": "within_last", "value": 30}, "value", "duration"),
    ({"field": "last_seen", "op": "within_last", "value": "99999y"}, "value", "not a duration"),
    ({"field": "age", "op": "eq", "value": {"var": 3}}, "value", "variable is referenced"),
    ({"field": "age", "op": "eq", "value": {"var": "a", "x": 1}}, "value", "variable is referenced"),
    ({"field": "age", "op": "eq", "value": {"x": 1}}, "value", "single value"),
    ({"not": [{"field": "age", "op": "is_null"}]}, "not", "must be a JSON object"),
    ({"link": "orders"}, "link", "Unknown link \"orders\" of schema 'profile'"),
    ({"link": 1}, "link", "named by a string"),
    ({"link": "purchases", "where": {"field": "country", "op": "eq", "value": "FR"}}, "where.field",
     "Unknown field \"country\" in schema 'purchase'"),
    ({"link": "purchases", "having": {"count": {"op": "gte", "value": 1}, "exists": True}}, "having", "exactly one"),
    ({"link": "purchases", "having": {"total": {"op": "gte", "value": 1}}}, "having", "Unknown aggregate"),
    ({"link": "purchases", "having": {"exists": "yes"}}, "having.exists", "true or false"),
    ({"link": "purchases", "having": {"count": {"op": "gte", "value": "two"}}}, "having.count.value", "integer"),
    ({"link": "purchases", "having": {"count": {"op": "contains", "value": 1}}}, "having.count.op", "does not apply"),
    ({"link": "purchases", "having": {"count": {"field": "amount", "op": "gte", "value": 1}}}, "having.count.field",
     "Unknown key"),
    ({"link": "purchases", "having": {"sum": {"op": "gte", "value": 1}}}, "having.sum.field", "needs the field"),
    ({"link": "purchases", "having": {"sum": {"field": "purchased_at", "op": "gte", "value": 1}}},
     "having.sum.field", "applies to a number"),
    ({"link": "purchases", "having": {"max": {"field": "id", "op": "gte", "value": 1}}}, "having.max.field",
     "applies to a number, a date"),
    ({"link": "purchases", "having": {"avg": {"field": "amount", "op": "within_last", "value": "2d"}}},
     "having.avg.op", "does not apply"),
    ({"all": [{"field": "age", "op": "eq", "value": 1}, {"any": [{"link": "purchases", "where": {
        "field": "amount", "op": "gt", "value": "lots"}}]}]}, "all[1].any[0].where.value", "not a number"),
])
def test_invalid_filter(acme, world, tree, path, message):
    found = problems(acme, tree)
    assert found[0]["path"] == path, found
    assert message in found[0]["message"], found


def test_filter_error_is_a_400_with_every_problem(acme, world):
    with pytest.raises(ApplicationError) as caught:
        compile_filter(tenant=acme, schema="profile", tree={"all": [
            {"field": "nope", "op": "eq", "value": 1},
            {"field": "age", "op": "eq", "value": "x"},
            {"link": "purchases", "where": {"field": "amount", "op": "zz"}},
        ]})
    error = caught.value
    assert isinstance(error, FilterError)
    assert error.status == 400
    assert error.code == "invalid_filter"
    assert [p["path"] for p in error.fields["filter"]] == ["all[0].field", "all[1].value", "all[2].where.op"]


def test_nesting_and_size_limits(acme, world):
    tree: dict = {"field": "age", "op": "is_null"}
    for _ in range(MAX_DEPTH - 1):
        tree = {"not": tree}
    compile_filter(tenant=acme, schema="profile", tree=tree)
    found = problems(acme, {"not": tree})
    assert "nested more than" in found[0]["message"]
    assert found[0]["path"] == ".".join(["not"] * MAX_DEPTH)
    wide = {"any": [{"field": "age", "op": "eq", "value": n} for n in range(MAX_NODES)]}
    assert "more than 1000 conditions" in problems(acme, wide)[0]["message"]
    deep = {"field": "age", "op": "is_null"}
    for _ in range(5000):  # deeper than Python's recursion limit: must stop at the limit, not recurse
        deep = {"all": [deep]}
    assert "nested more than" in problems(acme, deep)[0]["message"]


def test_hostile_names_and_values_never_reach_sql(acme, world):
    for name in ["country'; DROP TABLE schemas_record; --", "attributes->>'x'", "_key\"", "COUNTRY", "1"]:
        assert problems(acme, {"field": name, "op": "eq", "value": "x"})[0]["path"] == "field"
    assert problems(acme, {"link": "purchases) OR (1=1", "having": {"exists": True}})[0]["path"] == "link"
    check(acme, world, {"field": "country", "op": "eq", "value": "FR' OR '1'='1"}, set())
    check(acme, world, {"field": "first_name", "op": "contains", "value": "'); SELECT pg_sleep(10); --"}, set())
    with tenant_scope(acme):
        assert Record.objects.count() == len(PROFILES) + len(PURCHASES)


def test_validate_filter_reports_variables_and_accepts_unknown_values(acme, world):
    tree = {"all": [{"field": "age", "op": "gte", "value": {"var": "minAge"}},
                    {"field": "country", "op": "in", "value": {"var": "countries"}}]}
    assert validate_filter(tenant=acme, schema="profile", tree=tree) == {"minAge", "countries"}
    with pytest.raises(FilterError):
        validate_filter(tenant=acme, schema="profile", tree=tree, variables={"minAge": "x", "countries": []})
    with pytest.raises(FilterError):
        compile_filter(tenant=acme, schema="profile", tree=tree)


def test_operator_table_matches_the_documentation():
    for field_type in FieldType.values:
        assert set(ops_for(field_type)) == OPS_BY_TYPE[field_type], field_type


# Tenancy, indexes, selectors ------------------------------------------------------------------

def test_other_tenants_records_are_never_selected(acme, globex, world):
    store_world(globex, World({"purchase": PURCHASE}, {"profile": PROFILES, "purchase": PURCHASES}, NOW, UTC),
                existing={"profile": DataSchema.dangerously_unscoped.get(tenant=globex, name="profile")})
    assert keys(acme, {"field": "country", "op": "eq", "value": "FR"}) == {"p1"}
    assert keys(acme, {"link": "purchases"}) == {"p1", "p2"}
    assert count_records(tenant=globex, schema="purchase", tree={}) == len(PURCHASES)
    with tenant_scope(globex):
        theirs = DataSchema.objects.get(name="profile")
    with pytest.raises(TenantScopeError):
        compile_filter(tenant=acme, schema=theirs, tree={})


def test_expression_index_serves_the_compiled_expression(acme):
    # (without the `world` fixture: an index built after rows were updated in the same
    # transaction is not usable by that transaction)
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
    expression = value_sql(FieldType.DATE, sql.Identifier("attributes"), "birth_date")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending foreign-key checks before CREATE INDEX
        cursor.execute(sql.SQL("CREATE INDEX test_birth_date ON schemas_record (tenant_id, {}) WHERE schema_id = {}")
                       .format(expression, sql.Literal(profile.pk)).as_string(connection.connection))
        cursor.execute(
            "INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at) "
            "SELECT %s, %s, 'x' || n, jsonb_build_object('birth_date', (date '1900-01-01' + n)::text), now(), now() "
            "FROM generate_series(1, 5000) AS n", [acme.pk, profile.pk])
        cursor.execute("ANALYZE schemas_record")
        # PostgreSQL keeps no statistics for partial expression indexes; only whether the index
        # can serve the expression matters here, not the planner's estimate.
        cursor.execute("SET LOCAL enable_seqscan = off")
        statement = select_keys_sql(tenant=acme, schema=profile, tree={
            "field": "birth_date", "op": "before", "value": "1900-01-10"})
        cursor.execute("EXPLAIN " + statement.as_string(), statement.params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "test_birth_date" in plan, plan


def test_query_records_counts_and_samples(acme, world):
    result = query_records(tenant=acme, schema="profile", tree={"field": "age", "op": "gte", "value": 30},
                           sample_size=1)
    assert result["count"] == 2
    assert result["sample"] == [{"_key": "p1", **PROFILES[0].attributes}]
    assert len(query_records(tenant=acme, schema="profile", tree={}, sample_size=10_000)["sample"]) == 4
    assert query_records(tenant=acme, schema="profile", tree={"any": []}) == {"count": 0, "sample": []}


def test_select_keys_sql_composes_into_insert_select(acme, world):
    statement = select_keys_sql(tenant=acme, schema="profile", tree={"field": "country", "op": "in",
                                                                      "value": ["FR", "DE"]})
    assert isinstance(statement, Compiled)
    insert = sql.SQL("INSERT INTO population (run, key) SELECT {}, s.key FROM ({}) AS s").format(
        sql.Placeholder(), statement.sql)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE population (run int, key text)")
        cursor.execute(insert.as_string(connection.connection), [7, *statement.params])
        cursor.execute("SELECT run, key FROM population ORDER BY key")
        assert cursor.fetchall() == [(7, "p1"), (7, "p2")]
