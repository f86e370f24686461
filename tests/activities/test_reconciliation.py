"""Reconciliation: rows of a population matched to records of a schema by column = field rules
(with trim / lower-case) and conditions, checked against a plain-Python matching on random data;
then the same through the engine after a Load file."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.activities.base import Column, Shape
from apps.schemas.models import DataSchema, Record
from apps.tenants.scoping import tenant_scope
from tests.activities.datafiles import graph, make_schema, new_campaign, run_campaign, table_rows, upload
from tests.activities.harness import Harness

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FILE = "file:load"


@pytest.fixture
def customers(acme):
    schema = make_schema(acme, "customer", [
        {"name": "id", "type": "string"}, {"name": "email", "type": "string"}, {"name": "code", "type": "integer"},
        {"name": "country", "type": "string"}], key="id")
    return schema


def put(tenant, schema: DataSchema, rows: dict[str, dict[str, Any]]) -> None:
    with tenant_scope(tenant):
        Record.objects.bulk_create([Record(tenant=tenant, schema=schema, key=key, attributes=values)
                                    for key, values in rows.items()])


COLUMNS = [Column("email", "text"), Column("code", "bigint"), Column("amount", "numeric")]


def test_rules_with_normalisation_carry_the_columns(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "email": "Ann@X.test", "code": 7, "country": "FR"},
                          "c2": {"id": "c2", "email": "bob@x.test", "code": 8, "country": "DE"}})
    h = Harness(acme)
    rows = h.population([("2", " ann@x.TEST ", 1, Decimal("10")), ("3", "bob@x.test", 2, Decimal("20")),
                         ("4", "nobody@x.test", 3, Decimal("30"))], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "rules": [
        {"column": "email", "field": "email", "normalize": ["trim", "lower"]}]}, [rows])
    out = done.outputs["out"]
    assert out.dimension == "customer" and out.columns == COLUMNS
    assert table_rows(out) == [("c1", " ann@x.TEST ", 1, Decimal("10")), ("c2", "bob@x.test", 2, Decimal("20"))]
    assert table_rows(done.outputs["unmatched"]) == [("4", "nobody@x.test", 3, Decimal("30"))]
    assert done.outputs["unmatched"].dimension == FILE
    assert done.summary == {"rows": 3, "matched": 2, "unmatched": 1, "records": 2}


def test_several_rules_typed_and_key_rules(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "email": "a@x.test", "code": 7},
                          "c2": {"id": "c2", "email": "a@x.test", "code": 8}})
    h = Harness(acme)
    rows = h.population([("1", "a@x.test", 8, None), ("2", "a@x.test", 9, None)], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "rules": [
        {"column": "email", "field": "email"}, {"column": "code", "field": "code"}]}, [rows])
    assert table_rows(done.outputs["out"]) == [("c2", "a@x.test", 8, None)]
    ids = h.population([("1", "c1", 0, None), ("2", " C2", 0, None)], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "unmatched": "drop", "rules": [
        {"column": "email", "field": "id", "normalize": ["trim", "lower"]}]}, [ids])
    assert [r[0] for r in table_rows(done.outputs["out"])] == ["c1", "c2"]
    assert "unmatched" not in done.outputs and done.summary["unmatched"] == 0


def test_condition_on_fields_and_columns(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "email": "a@x.test", "country": "FR"},
                          "c2": {"id": "c2", "email": "b@x.test", "country": "DE"},
                          "c3": {"id": "c3", "email": "c@x.test", "country": "FR"}})
    h = Harness(acme)
    rows = h.population([("1", "a@x.test", 1, Decimal("5")), ("2", "b@x.test", 1, Decimal("50")),
                         ("3", "c@x.test", 1, Decimal("50"))], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "rules": [{"column": "email", "field": "email"}],
                                    "condition": {"all": [{"field": "country", "op": "eq", "value": "FR"},
                                                          {"field": "amount", "op": "gt", "value": 10}]}}, [rows])
    assert [r[0] for r in table_rows(done.outputs["out"])] == ["c3"]
    assert [r[0] for r in table_rows(done.outputs["unmatched"])] == ["1", "2"]
    # A condition alone pairs every row with every record it holds for.
    one = h.population([("1", "x", 1, Decimal("5"))], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "condition": {"field": "country", "op": "eq",
                                                                        "value": "FR"}}, [one])
    assert [r[0] for r in table_rows(done.outputs["out"])] == ["c1", "c3"]


def test_a_record_keeps_its_first_row_in_line_order(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "email": "a@x.test"}})
    h = Harness(acme)
    rows = h.population([("10", "a@x.test", 10, None), ("9", "a@x.test", 9, None)], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "rules": [{"column": "email", "field": "email"}]}, [rows])
    assert table_rows(done.outputs["out"]) == [("c1", "a@x.test", 9, None)]
    assert done.summary == {"rows": 2, "matched": 2, "unmatched": 0, "records": 1}


def test_keep_unmatched_keys_them_by_the_key_rule(acme, customers):
    put(acme, customers, {"c1": {"id": "c1"}})
    h = Harness(acme)
    rows = h.population([("1", "c1", 1, None), ("2", "new", 2, None)], columns=COLUMNS, dimension=FILE)
    done = h.run("reconciliation", {"schema": "customer", "unmatched": "keep",
                                    "rules": [{"column": "email", "field": "id"}]}, [rows])
    assert done.outputs["out"].columns == [*COLUMNS, Column("matched", "boolean")]
    assert table_rows(done.outputs["out"]) == [("c1", "c1", 1, None, True), ("new", "new", 2, None, False)]
    assert done.summary["records"] == 1


def test_validation_problems(acme, customers):
    h = Harness(acme)
    shape = [Shape(FILE, tuple(COLUMNS))]

    def problems(config, inputs=shape):
        return {p.path: p.message for p in h.problems("reconciliation", config, inputs)}

    assert problems({"schema": "nope", "rules": []}) == {"config.schema": "Unknown schema 'nope'."}
    assert "config.rules" in problems({"schema": "customer"})
    found = problems({"schema": "customer", "rules": [{"column": "mail", "field": "email"},
                                                       {"column": "email", "field": "mail"}]})
    assert found["config.rules.0.column"].startswith("The population has no column 'mail'")
    assert found["config.rules.1.field"] == "Unknown field 'mail' of 'customer'."
    assert "config.condition.field" in problems({"schema": "customer", "rules": [
        {"column": "email", "field": "email"}], "condition": {"field": "zzz", "op": "eq", "value": 1}})
    assert problems({"schema": "customer", "rules": [{"column": "email", "field": "email"}]},
                    [Shape(None)])[""].startswith("This activity needs a population")


# -- property: the matching is the plain-Python one -----------------------------------------------

EMAILS = st.sampled_from(["a@x.test", "A@x.test", " a@x.test", "b@x.test", "B@X.TEST ", "c@x.test", "", None])


def normalise(value: str | None, how: list[str]) -> str | None:
    if value is None:
        return None
    if "trim" in how:
        value = value.strip(" \t\r\n\x0b\x0c\xa0")
    if "lower" in how:
        value = value.lower()
    return value


def python_reconcile(rows: list[tuple[str, str | None, int]], records: dict[str, dict[str, Any]],
                     how: list[str], with_code: bool) -> tuple[list[tuple], list[str]]:
    matched: dict[str, tuple] = {}
    unmatched = []
    for key, email, code in sorted(rows, key=lambda r: (len(r[0]), r[0])):
        hits = [rk for rk, rec in records.items()
                if email is not None and rec.get("email") is not None
                and normalise(rec["email"], how) == normalise(email, how)
                and (not with_code or rec.get("code") == code)]
        if not hits:
            unmatched.append(key)
        for rk in hits:
            matched.setdefault(rk, (rk, email, code, None))
    return sorted(matched.values()), sorted(unmatched)


@PROPERTY
@given(emails=st.lists(EMAILS, max_size=8), codes=st.lists(st.integers(1, 3), min_size=8, max_size=8),
       file=st.lists(st.tuples(EMAILS, st.integers(1, 3)), min_size=1, max_size=10),
       how=st.sampled_from([[], ["trim"], ["lower"], ["trim", "lower"]]), with_code=st.booleans())
def test_property_matches_python(acme, customers, emails, codes, file, how, with_code):
    records = {f"c{i}": {"id": f"c{i}", "code": codes[i], **({"email": e} if e is not None else {})}
               for i, e in enumerate(emails)}
    rows = [(str(n), email, code) for n, (email, code) in enumerate(file, start=1)]
    with transaction.atomic():
        put(acme, customers, records)
        h = Harness(acme)
        population = h.population([(k, e, c, None) for k, e, c in rows], columns=COLUMNS, dimension=FILE)
        rules = [{"column": "email", "field": "email", "normalize": how}]
        if with_code:
            rules.append({"column": "code", "field": "code"})
        done = h.run("reconciliation", {"schema": "customer", "rules": rules}, [population])
        want_out, want_unmatched = python_reconcile(rows, records, how, with_code)
        assert table_rows(done.outputs["out"]) == want_out
        assert sorted(r[0] for r in table_rows(done.outputs["unmatched"])) == want_unmatched
        transaction.set_rollback(True)


# -- through the engine: load a file, reconcile it with profiles -----------------------------------

def test_load_then_reconcile_in_a_campaign(acme, people, django_capture_on_commit_callbacks):
    marketer = people["acme"]["marketer"].user
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
    put(acme, profile, {"p1": {"id": "p1", "email": "ann@x.test"}, "p2": {"id": "p2", "email": "bob@x.test"}})
    campaign = new_campaign(acme, marketer)
    file = upload(acme, campaign, "E-mail,Points\n ANN@x.test ,10\nzed@x.test,5\n")
    g = graph({"id": "load", "type": "load_file", "config": {"file": {"upload": file.pk}, "columns": [
        {"name": "email", "source": "E-mail", "trim": False}, {"name": "points", "source": "Points",
                                                               "type": "integer"}]}},
        {"id": "match", "type": "reconciliation", "config": {"rules": [
            {"column": "email", "field": "email", "normalize": ["trim", "lower"]}]}},
        {"id": "end", "type": "end"}, {"id": "end2", "type": "end"},
        edges=[("start", "out", "load"), ("load", "out", "match"), ("match", "out", "end"),
               ("match", "unmatched", "end2")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "completed", run.error
    assert table_rows(nodes["match"].outputs["out"]) == [("p1", " ANN@x.test ", 10)]
    assert table_rows(nodes["match"].outputs["unmatched"]) == [("3", "zed@x.test", 5)]
    assert nodes["match"].outputs["out"]["dimension"] == "profile"
