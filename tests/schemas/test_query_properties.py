"""Property tests of the filter compiler.

The oracle: for a random small world (a `person` schema with fields of every type, an `order`
schema linked to it both ways, records with missing and null values) and random valid filter
trees (every operator, nesting, links with aggregates, variables), the keys the compiled SQL
selects are exactly the keys the plain-Python evaluator (tests/schemas/evaluator.py) selects.

And robustness: random malformed or hostile trees give a FilterError (400), never another
exception, and whatever does compile runs."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from apps.schemas.query import FilterError, compile_filter, select_keys_sql
from apps.tenants.scoping import tenant_scope
from tests.schemas.evaluator import (
    BUILTIN_TYPES,
    OPS_BY_TYPE,
    TEMPORAL,
    FieldSpec,
    LinkSpec,
    Rec,
    SchemaSpec,
    World,
    evaluate,
    store_world,
)

UTC = dt.UTC
TZ = zoneinfo.ZoneInfo("Europe/Paris")
NOW = dt.datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # half an hour before Paris moves to summer time
TYPES = ["string", "integer", "decimal", "boolean", "date", "datetime", "email", "phone", "enum", "json"]
ENUM = ["red", "green", "blue"]
TEXT = "aAbBéÉ%_\\"
EMAILS = ["a@x.io", "b@x.io", "ab@y.org"]
PHONES = ["+33123456", "+4912345678", "0612345678"]
JSONS: list[Any] = [[], [1], [1, 2], {"a": 1}, {"a": [1, True]}, "x", 1, 2.5, True, False]
DECIMALS = [-1.5, 0, 0.25, 1, 2.5, 3.75, 10]
DURATIONS = ["15m", "90m", "12h", "1d", "3d", "1w", "2w", "30d", "1mo", "2mo", "1y"]
COMPARISONS = ["eq", "ne", "lt", "lte", "gt", "gte", "between"]
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                    HealthCheck.too_slow])


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Stored values (canonical, as apps.schemas.types.coerce stores them) -------------------------

def stored(field_type: str) -> st.SearchStrategy[Any]:
    return {
        "string": st.text(TEXT, max_size=3),
        "integer": st.integers(-3, 3),
        "decimal": st.sampled_from(DECIMALS),
        "boolean": st.booleans(),
        "date": st.integers(-40, 5).map(lambda n: (NOW.date() + dt.timedelta(days=n)).isoformat()),
        "datetime": st.one_of(st.integers(-50 * 24, 2).map(lambda h: iso(NOW + dt.timedelta(hours=h))),
                              st.integers(-50 * 86400, 7200).map(lambda s: iso(NOW + dt.timedelta(seconds=s)))),
        "email": st.sampled_from(EMAILS),
        "phone": st.sampled_from(PHONES),
        "enum": st.sampled_from(ENUM),
        "json": st.sampled_from(JSONS),
    }[field_type]


def literal(field_type: str) -> st.SearchStrategy[Any]:
    """A value as a user may write it in a filter (coerced to the field's type by the compiler)."""
    alternatives = {
        "integer": st.integers(-3, 3).map(str),
        "decimal": st.sampled_from(DECIMALS).map(str),
        "boolean": st.sampled_from(["yes", "no", "true", "0"]),
        "datetime": st.integers(-50 * 24, 2).map(lambda h: (NOW + dt.timedelta(hours=h)).astimezone(TZ).isoformat()),
        "email": st.sampled_from(EMAILS).map(str.upper),
        "phone": st.sampled_from(["+33 123 456", "06 12 34 56 78"]),
    }
    if field_type in alternatives:
        return st.one_of(stored(field_type), alternatives[field_type])
    return stored(field_type)


def needle(field_type: str) -> st.SearchStrategy[str]:
    return {"email": st.sampled_from(["a", "@x", ".io", "B@", ""]),
            "phone": st.sampled_from(["+33", "12", "0"]),
            "enum": st.sampled_from(["re", "e", "blue", "R"])}.get(field_type, st.text(TEXT, max_size=2))


# Worlds -------------------------------------------------------------------------------------

@st.composite
def worlds(draw: Any) -> World:
    pk_type = draw(st.sampled_from(["string", "integer"]))
    fk_type = draw(st.sampled_from([pk_type, "string"]))
    person_fields = {"id": FieldSpec(pk_type)}
    for field_type in TYPES:
        for index in range(draw(st.integers(0, 2))):
            person_fields[f"{field_type}_{index}"] = FieldSpec(field_type, ENUM if field_type == "enum" else [])
    order_fields = {"code": FieldSpec("string"), "person_id": FieldSpec(fk_type), "qty": FieldSpec("integer"),
                    "amount": FieldSpec("decimal"), "at": FieldSpec("datetime"), "day": FieldSpec("date"),
                    "label": FieldSpec("string"), "flag": FieldSpec("boolean")}
    person = SchemaSpec("person", "id", person_fields, {"orders": LinkSpec("order", "id", "person_id")})
    order = SchemaSpec("order", "code", order_fields, {
        "person": LinkSpec("person", "person_id", "id", "many_to_one"),
        "siblings": LinkSpec("order", "person_id", "person_id"),
    })
    ids = draw(st.lists(st.integers(-2, 15), unique=True, max_size=10) if pk_type == "integer"
               else st.lists(st.text("ab%_", min_size=1, max_size=3), unique=True, max_size=10))
    people = [Rec(str(pk), {"id": pk, **draw(attributes(person_fields, skip={"id"}))}, draw(moments()), draw(moments()))
              for pk in ids]
    references = [str(pk) if fk_type == "string" else pk for pk in ids] + (["zz"] if fk_type == "string" else [99])
    orders = []
    for number in range(draw(st.integers(0, 14))):
        values = draw(attributes(order_fields, skip={"code", "person_id"}))
        reference = draw(st.one_of(st.sampled_from(references), st.just(None), st.just("missing")))
        if reference != "missing":
            values["person_id"] = reference
        orders.append(Rec(f"c{number}", {"code": f"c{number}", **values}, draw(moments()), draw(moments())))
    return World({"person": person, "order": order}, {"person": people, "order": orders}, NOW, TZ)


def moments() -> st.SearchStrategy[dt.datetime]:
    return st.integers(-50 * 86400, 3600).map(lambda s: NOW + dt.timedelta(seconds=s))


@st.composite
def attributes(draw: Any, fields: dict[str, FieldSpec], skip: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, spec in fields.items():
        if name in skip:
            continue
        presence = draw(st.sampled_from(["value"] * 6 + ["missing", "null"]))
        if presence == "value":
            values[name] = draw(stored(spec.type))
        elif presence == "null":
            values[name] = None
    return values


# Filters ------------------------------------------------------------------------------------

class Filters:
    """Draws valid random filter trees over a world, collecting the variables they reference."""

    def __init__(self, data: Any, world: World) -> None:
        self.draw = data.draw
        self.world = world
        self.variables: dict[str, Any] = {}

    def maybe_variable(self, value: Any) -> Any:
        if self.draw(st.integers(0, 6)) == 0:
            name = f"v{len(self.variables)}"
            self.variables[name] = value
            return {"var": name}
        return value

    def tree(self, schema: SchemaSpec, depth: int = 0) -> dict[str, Any]:
        kinds = ["leaf"] * 4
        if depth < 3:
            kinds += ["all", "any", "not", "empty"]
        if depth < 3 and schema.links:
            kinds += ["link"] * 3
        kind = self.draw(st.sampled_from(kinds))
        if kind == "leaf":
            return self.leaf(schema)
        if kind == "empty":
            return self.draw(st.sampled_from([{}, {"all": []}, {"any": []}]))
        if kind == "not":
            return {"not": self.tree(schema, depth + 1)}
        if kind == "link":
            return self.link(schema, depth)
        return {kind: [self.tree(schema, depth + 1) for _ in range(self.draw(st.integers(1, 3)))]}

    def values(self, field_type: str, op: str, key_domain: list[str] | None = None) -> Any:
        def one() -> Any:
            if key_domain is not None:
                return self.draw(st.one_of(st.sampled_from(key_domain), st.text(TEXT, max_size=2)))
            return self.draw(literal(field_type))

        if op in ("in", "not_in"):
            return self.maybe_variable([self.maybe_variable(one()) for _ in range(self.draw(st.integers(0, 3)))])
        if op == "between":
            return self.maybe_variable([self.maybe_variable(one()), self.maybe_variable(one())])
        if op == "within_last":
            return self.maybe_variable(self.draw(st.sampled_from(DURATIONS)))
        return self.maybe_variable(one())

    def leaf(self, schema: SchemaSpec) -> dict[str, Any]:
        name = self.draw(st.sampled_from(sorted(schema.fields) + sorted(BUILTIN_TYPES)))
        field_type = schema.type_of(name)
        op = self.draw(st.sampled_from(sorted(OPS_BY_TYPE[field_type])))
        node: dict[str, Any] = {"field": name, "op": op}
        if op in ("is_null", "is_not_null"):
            return node
        if op in ("contains", "starts_with", "ends_with"):
            node["value"] = self.maybe_variable(self.draw(needle(field_type if name in schema.fields else "string")))
            if self.draw(st.booleans()):
                node["case_insensitive"] = self.draw(st.booleans())
            return node
        keys = [rec.key for rec in self.world.records[schema.name]] + ["zz"] if name == "_key" else None
        node["value"] = self.values(field_type, op, keys)
        return node

    def link(self, schema: SchemaSpec, depth: int) -> dict[str, Any]:
        name = self.draw(st.sampled_from(sorted(schema.links)))
        target = self.world.schemas[schema.links[name].target]
        node: dict[str, Any] = {"link": name}
        if self.draw(st.booleans()):
            node["where"] = self.tree(target, depth + 1)
        numeric = [f for f, spec in target.fields.items() if spec.type in ("integer", "decimal")]
        ordered = numeric + [f for f in [*target.fields, "_created_at"] if target.type_of(f) in TEMPORAL]
        aggregates = ["none", "exists", "count", "count"] + (["sum", "avg"] if numeric else []) + (
            ["min", "max"] if ordered else [])
        aggregate = self.draw(st.sampled_from(aggregates))
        if aggregate == "none":
            return node
        if aggregate == "exists":
            node["having"] = {"exists": self.draw(st.booleans())}
        elif aggregate == "count":
            op = self.draw(st.sampled_from(COMPARISONS))
            value = (self.maybe_variable([self.draw(st.integers(0, 3)), self.draw(st.integers(0, 3))])
                     if op == "between" else self.maybe_variable(self.draw(st.integers(0, 3))))
            node["having"] = {"count": {"op": op, "value": value}}
        elif aggregate in ("sum", "avg"):
            field = self.draw(st.sampled_from(numeric))
            op = self.draw(st.sampled_from(COMPARISONS))
            node["having"] = {aggregate: {"field": field, "op": op, "value": self.values("decimal", op)}}
        else:
            field = self.draw(st.sampled_from(ordered))
            field_type = target.type_of(field)
            ops = COMPARISONS + (["within_last", "before", "after"] if field_type in TEMPORAL else [])
            op = self.draw(st.sampled_from(ops))
            node["having"] = {aggregate: {"field": field, "op": op, "value": self.values(field_type, op)}}
        return node


def selected(tenant: Any, schema: str, tree: Any, variables: dict[str, Any]) -> set[str]:
    statement = select_keys_sql(tenant=tenant, schema=schema, tree=tree, variables=variables, now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(), statement.params)
        return {row[0] for row in cursor.fetchall()}


@PROPERTY_SETTINGS
@given(world=worlds(), data=st.data())
def test_compiled_sql_selects_what_the_evaluator_selects(acme, world, data):
    with transaction.atomic():
        store_world(acme, world)
        for _ in range(5):
            schema = data.draw(st.sampled_from(["person", "order"]))
            filters = Filters(data, world)
            tree = filters.tree(world.schemas[schema])
            note(f"{schema}: {tree} with {filters.variables}")
            expected = evaluate(world, schema, tree, filters.variables)
            # (see --hypothesis-show-statistics: most examples must select some but not all records)
            event("none" if not expected else "all" if len(expected) == len(world.records[schema]) else "some")
            assert selected(acme, schema, tree, filters.variables) == expected
        transaction.set_rollback(True)


# Malformed and hostile trees ------------------------------------------------------------------

HOSTILE = ["country'; DROP TABLE schemas_record; --", "x\" OR 1=1 --", "attributes->>'id'", "1", "", " ", "ÉTÉ",
           "a" * 300, "%s", "{}", "\x00", "purchases)--", "_key; SELECT 1", "$1", "l1.key"]
NAMES = ["country", "age", "birth_date", "email", "first_name", "email_opt_in", "_key", "_created_at", "prefs",
         "score", "tier", "last_seen", "amount", "purchased_at", "quantity", "profile_id"]
OPS = ["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "starts_with", "ends_with",
       "is_null", "is_not_null", "within_last", "before", "after", "like", "EQ", "="]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(HOSTILE + NAMES + OPS),
    st.sampled_from(["30d", "0d", "12x", "2025-01-01", "2025-02-30", "1990-01-01T10:00:00+01:00", "FR", "gold"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["var", "x", "field"]), inner, max_size=2),
    st.builds(lambda name: {"var": name}, st.sampled_from(["known", "missing", "list", 3, None])),
), max_leaves=6)


def trees() -> st.SearchStrategy[Any]:
    names = st.one_of(st.sampled_from(NAMES), st.sampled_from(HOSTILE), scalars)
    leaf = st.one_of(
        st.fixed_dictionaries({"field": names, "op": st.one_of(st.sampled_from(OPS), scalars)},
                              optional={"value": values, "case_insensitive": scalars, "extra": scalars}),
        scalars, values,
    )

    def grow(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        having = st.one_of(
            st.none(), scalars,
            st.dictionaries(st.sampled_from(["exists", "count", "sum", "min", "max", "avg", "total"]),
                            st.one_of(scalars, st.fixed_dictionaries(
                                {}, optional={"field": names, "op": st.one_of(st.sampled_from(OPS), scalars),
                                              "value": values})), max_size=2))
        return st.one_of(
            st.builds(lambda kids: {"all": kids}, st.lists(inner, max_size=3)),
            st.builds(lambda kids: {"any": kids}, st.one_of(st.lists(inner, max_size=3), scalars)),
            st.builds(lambda kid: {"not": kid}, inner),
            st.fixed_dictionaries({"link": st.one_of(st.sampled_from(["purchases", "profile"]), names)},
                                  optional={"where": inner, "having": having}),
            st.dictionaries(st.sampled_from(["all", "not", "link", "field", "where", "op"]), inner, max_size=3),
        )

    return st.recursive(leaf, grow, max_leaves=12)


@pytest.fixture
def shop(acme):
    from tests.schemas.test_query import PROFILE as PROFILE_SPEC
    from tests.schemas.test_query import PROFILE_EXTRA, PROFILES, PURCHASE, PURCHASES

    with tenant_scope(acme):
        from apps.schemas.models import DataSchema, Field

        profile = DataSchema.objects.get(name="profile")
        Field.objects.bulk_create([
            Field(tenant=acme, schema=profile, name=name, type=f.type, enum_values=f.enum_values, position=100 + i)
            for i, (name, f) in enumerate(PROFILE_EXTRA.items())
        ])
    store_world(acme, World({"profile": PROFILE_SPEC, "purchase": PURCHASE},
                            {"profile": PROFILES, "purchase": PURCHASES}, NOW, TZ), existing={"profile": profile})
    return acme


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(tree=trees(), schema=st.sampled_from(["profile", "purchase"]),
       variables=st.one_of(st.none(), st.fixed_dictionaries({"known": values, "list": st.lists(scalars, max_size=3)})))
def test_malformed_and_hostile_trees_are_rejected_or_run(shop, tree, schema, variables):
    try:
        compiled = compile_filter(tenant=shop, schema=schema, tree=tree, variables=variables, now=NOW)
    except FilterError as error:
        event("rejected")
        assert error.status == 400
        assert error.problems and all(set(p) == {"path", "message"} and isinstance(p["path"], str)
                                      for p in error.problems)
        return
    event("compiled")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM schemas_record r WHERE " + compiled.as_string(), compiled.params)
        assert cursor.fetchone()[0] >= 0
