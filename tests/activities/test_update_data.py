"""Update data: insert only, update only, upsert and delete of records from a population's rows,
with mapping, per-field conditions, rewrites only of what changes, rejects, a rejects threshold,
and test runs that write nothing; a property test against a plain-Python application of the same
rows; and the whole chain Load file → Reconciliation → Update data through the engine."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.activities.base import Column, NodeError, Shape
from apps.schemas.models import Record
from apps.schemas.types import InvalidValue, coerce
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.activities.datafiles import graph, make_schema, new_campaign, records, run_campaign, table_rows, upload
from tests.activities.harness import Harness

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FILE = "file:load"
COLUMNS = [Column("id", "text"), Column("email", "text"), Column("code", "text"), Column("note", "text")]


@pytest.fixture
def customers(acme):
    return make_schema(acme, "customer", [
        {"name": "id", "type": "string"}, {"name": "email", "type": "email"}, {"name": "code", "type": "integer"},
        {"name": "country", "type": "string", "default": "FR"}], key="id")


def put(tenant, schema, rows: dict[str, dict[str, Any]]) -> None:
    with tenant_scope(tenant):
        Record.objects.bulk_create([Record(tenant=tenant, schema=schema, key=k, attributes=v) for k, v in rows.items()])


def stamps(tenant, schema) -> dict[str, dt.datetime]:
    with tenant_scope(tenant):
        return dict(Record.objects.filter(schema=schema).values_list("key", "updated_at"))


def test_upsert_inserts_updates_and_leaves_unchanged_records_alone(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "email": "a@x.test", "code": 1, "country": "DE"},
                          "c2": {"id": "c2", "email": "b@x.test", "code": 2, "country": "DE"}})
    before = stamps(acme, customers)
    h = Harness(acme)
    rows = h.population([("2", "c1", "A@X.test", " 1 ", "same"), ("3", "c2", "b2@x.test", "2", "changed"),
                         ("4", "c3", "c@x.test", None, "new")], columns=COLUMNS, dimension=FILE)
    done = h.run("update_data", {"schema": "customer", "operation": "upsert"}, [rows])
    assert done.summary == {"operation": "upsert", "schema": "customer", "test": False, "inserted": 1, "updated": 1,
                            "unchanged": 1, "deleted": 0, "missing": 0, "skipped": 0, "rejected": 0,
                            "duplicates": 0}
    assert records(acme, customers) == {
        "c1": {"id": "c1", "email": "a@x.test", "code": 1, "country": "DE"},
        "c2": {"id": "c2", "email": "b2@x.test", "code": 2, "country": "DE"},
        "c3": {"id": "c3", "email": "c@x.test", "country": "FR"}}
    after = stamps(acme, customers)
    assert after["c1"] == before["c1"] and after["c2"] != before["c2"]  # only what changes is rewritten
    out = done.outputs["out"]
    assert out.dimension == "customer" and [r[0] for r in table_rows(out)] == ["c1", "c2", "c3"]
    with tenant_scope(acme):
        entry = AuditEntry.objects.filter(action="records.update_data").latest("id")
    assert entry.data["inserted"] == 1 and entry.data["node"] == "node"


def test_update_only_with_mapping_and_conditions(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "code": 1}, "c2": {"id": "c2", "email": "keep@x.test", "code": 2}})
    h = Harness(acme)
    columns = [Column("mail", "text"), Column("points", "bigint"), Column("note", "text")]
    rows = h.population([("c1", "new1@x.test", 10, "vip"), ("c2", "new2@x.test", 20, ""),
                         ("c9", "z@x.test", 9, "vip")], columns=columns, dimension="customer")
    # `email` in a condition is the record's field; `note`, the row's column.
    done = h.run("update_data", {"operation": "update", "mapping": [
        {"column": "mail", "field": "email", "when": {"field": "email", "op": "is_null"}},
        {"column": "points", "field": "code", "when": {"field": "note", "op": "eq", "value": "vip"}},
        {"column": "note", "field": "country"}]}, [rows])
    assert records(acme, customers) == {"c1": {"id": "c1", "email": "new1@x.test", "code": 10, "country": "vip"},
                                        "c2": {"id": "c2", "email": "keep@x.test", "code": 2, "country": ""}}
    assert (done.summary["updated"], done.summary["missing"]) == (2, 1)


def test_insert_only_skips_existing_and_rejects_missing_required(acme):
    schema = make_schema(acme, "lead", [{"name": "id", "type": "integer"}, {"name": "name", "type": "string",
                                                                            "required": True}], key="id")
    put(acme, schema, {"1": {"id": 1, "name": "old"}})
    h = Harness(acme)
    columns = [Column("lead_id", "bigint"), Column("name", "text")]
    rows = h.population([("2", 1, "again"), ("3", 2, "Two"), ("4", 3, None)], columns=columns, dimension=FILE)
    done = h.run("update_data", {"schema": "lead", "operation": "insert", "mapping": [
        {"column": "lead_id", "field": "id"}, {"column": "name", "field": "name"}]}, [rows])
    assert records(acme, schema) == {"1": {"id": 1, "name": "old"}, "2": {"id": 2, "name": "Two"}}
    assert (done.summary["inserted"], done.summary["skipped"], done.summary["rejected"]) == (1, 1, 1)
    assert table_rows(done.outputs["rejects"]) == [("4", "name", None, "This field is required for a new record.")]


def test_delete_by_reconciled_keys(acme, customers):
    put(acme, customers, {"c1": {"id": "c1"}, "c2": {"id": "c2"}})
    h = Harness(acme)
    rows = h.population([("c1",), ("c3",)], dimension="customer")
    done = h.run("update_data", {"operation": "delete"}, [rows])
    assert list(records(acme, customers)) == ["c2"]
    assert (done.summary["deleted"], done.summary["missing"]) == (1, 1)


def test_type_errors_are_rejects_and_the_last_row_of_a_key_wins(acme, customers):
    h = Harness(acme)
    rows = h.population([("2", "c1", "x@x.test", "1", None), ("3", "c1", "y@x.test", "2", None),
                         ("4", "c2", "not-an-email", "3", None), ("5", "c3", "z@x.test", "three", None),
                         ("6", None, "k@x.test", "4", None), ("7", "=c4", "w@x.test", "5%", None)],
                        columns=COLUMNS, dimension=FILE)
    done = h.run("update_data", {"schema": "customer", "operation": "upsert"}, [rows])
    assert records(acme, customers) == {"c1": {"id": "c1", "email": "y@x.test", "code": 2, "country": "FR"}}
    assert (done.summary["inserted"], done.summary["duplicates"], done.summary["rejected"]) == (1, 1, 4)
    assert table_rows(done.outputs["rejects"]) == [
        ("4", "email", "not-an-email", "not an e-mail address"), ("5", "code", "three", "not an integer"),
        ("6", "id", None, "no key"), ("7", "code", "5%", "not an integer")]
    assert done.outputs["rejects"].dimension == FILE


def test_too_many_rejects_fail_and_write_nothing(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "code": 1}})
    h = Harness(acme)
    rows = h.population([("2", "c1", None, "5", None), ("3", "c2", None, "x", None), ("4", "c3", None, "y", None)],
                        columns=COLUMNS, dimension=FILE)
    with pytest.raises(NodeError, match=r"2 row\(s\) were rejected, more than the 1 allowed \(first: row 3, "
                                        r"column 'code': not an integer\)"), transaction.atomic():
        h.run("update_data", {"schema": "customer", "operation": "upsert", "max_rejects": 1}, [rows])
    assert records(acme, customers) == {"c1": {"id": "c1", "code": 1}}


def test_a_test_run_writes_nothing_and_reports_what_it_would_do(acme, customers):
    put(acme, customers, {"c1": {"id": "c1", "code": 1}})
    h = Harness(acme)
    rows = h.population([("2", "c1", None, "5", None), ("3", "c2", None, "6", None)], columns=COLUMNS,
                        dimension=FILE)
    done = h.run("update_data", {"schema": "customer", "operation": "upsert"}, [rows], is_test=True)
    assert records(acme, customers) == {"c1": {"id": "c1", "code": 1}}
    assert (done.summary["test"], done.summary["inserted"], done.summary["updated"]) == (True, 1, 1)
    assert [r[0] for r in table_rows(done.outputs["out"])] == ["c1", "c2"]
    with tenant_scope(acme):
        assert not AuditEntry.objects.filter(action="records.update_data").exists()


def test_validation_problems(acme, customers):
    h = Harness(acme)
    shape = [Shape(FILE, tuple(COLUMNS))]

    def problems(config, inputs=shape):
        return {p.path: p.message for p in h.problems("update_data", config, inputs)}

    assert problems({"schema": "nope", "operation": "upsert"}) == {"config.schema": "Unknown schema 'nope'."}
    assert problems({"schema": "customer", "operation": "merge"})["config.operation"]
    found = problems({"schema": "customer", "operation": "upsert", "mapping": [
        {"column": "zz", "field": "email"}, {"column": "id", "field": "zz"},
        {"column": "code", "field": "code", "when": {"field": "nope", "op": "is_null"}}]})
    assert found["config.mapping.0.column"] == "The population has no column 'zz'."
    assert found["config.mapping.1.field"] == "Unknown field 'zz' of 'customer'."
    assert "config.mapping.2.when.field" in found
    assert found["config.key"].startswith("Which column holds the record key?")
    assert problems({"schema": "customer", "operation": "upsert", "key": "nope"})["config.key"] == \
        "The population has no column 'nope'."
    assert problems({"schema": "customer", "operation": "upsert"}, [Shape(None)])[""].startswith("This activity")
    only_key = [Shape(FILE, (Column("id", "text"), Column("zz", "text")))]
    assert problems({"schema": "customer", "operation": "update"}, only_key)["config.mapping"].startswith(
        "No column is named like a field")
    assert problems({"schema": "customer", "operation": "upsert"}) == {}


# -- property: the records after the node are those a plain-Python application gives ---------------

KEYS = st.sampled_from(["c1", "c2", "c3", "c4", None, ""])
CODES = st.one_of(st.none(), st.sampled_from(["1", " 2", "x", "", "-7", "9999999999999999999"]))
EMAILS = st.one_of(st.none(), st.sampled_from(["a@x.test", "B@x.test", "bad"]))


def python_update(existing: dict[str, dict], rows: list[tuple], operation: str) -> tuple[dict, dict]:
    """Apply `rows` (line, id, email, code) as the documentation says, in plain Python."""
    result = {k: dict(v) for k, v in existing.items()}
    counts = dict.fromkeys(("inserted", "updated", "unchanged", "deleted", "missing", "skipped", "rejected",
                            "duplicates"), 0)
    valid = []
    for line, key, email, code in rows:
        if key is None or key == "":
            counts["rejected"] += 1
            continue
        values, ok = {}, True
        if operation != "delete":
            for name, kind, text in (("email", "email", email), ("code", "integer", code)):
                try:
                    values[name] = coerce(kind, text)
                except InvalidValue:
                    ok = False
                    break
        if not ok:
            counts["rejected"] += 1
            continue
        valid.append((line, key, values))
    last = {}
    for _line, key, values in sorted(valid, key=lambda r: (len(r[0]), r[0])):
        if key in last:
            counts["duplicates"] += 1
        last[key] = values
    for key, values in last.items():
        if operation == "delete":
            if key in result:
                del result[key]
                counts["deleted"] += 1
            else:
                counts["missing"] += 1
            continue
        if key in result:
            if operation == "insert":
                counts["skipped"] += 1
                continue
            new = {k: v for k, v in {**result[key], **values}.items() if v is not None}
            counts["updated" if new != result[key] else "unchanged"] += 1
            result[key] = new
        elif operation == "update":
            counts["missing"] += 1
        else:
            result[key] = {k: v for k, v in {"country": "FR", **values, "id": key}.items() if v is not None}
            counts["inserted"] += 1
    return result, counts


@PROPERTY
@given(existing=st.dictionaries(st.sampled_from(["c1", "c2", "c3"]),
                                st.fixed_dictionaries({"code": st.sampled_from([1, 2, -7])}), max_size=3),
       rows=st.lists(st.tuples(KEYS, EMAILS, CODES), min_size=1, max_size=8),
       operation=st.sampled_from(["insert", "update", "upsert", "delete"]), is_test=st.booleans())
def test_property_update_matches_python(acme, customers, existing, rows, operation, is_test):
    existing = {k: {"id": k, **v} for k, v in existing.items()}
    lines = [(str(n), *row) for n, row in enumerate(rows, start=2)]
    with transaction.atomic():
        put(acme, customers, existing)
        h = Harness(acme)
        population = h.population([(line, key, email, code, None) for line, key, email, code in lines],
                                  columns=COLUMNS, dimension=FILE)
        done = h.run("update_data", {"schema": "customer", "operation": operation}, [population], is_test=is_test)
        want, counts = python_update(existing, lines, operation)
        assert records(acme, customers) == (existing if is_test else want)
        assert {k: done.summary[k] for k in counts} == counts
        transaction.set_rollback(True)


# -- the chain through the engine --------------------------------------------------------------------

def test_load_reconcile_update_in_live_and_test_runs(acme, people, customers, django_capture_on_commit_callbacks):
    marketer = people["acme"]["marketer"].user
    put(acme, customers, {"c1": {"id": "c1", "email": "ann@x.test", "code": 1}})
    campaign = new_campaign(acme, marketer)
    file = upload(acme, campaign, "Customer;Mail;Points\nc1;ANN@x.test;5\nc2;bob@x.test;7\nc3;eve@x.test;oops\n")
    g = graph(
        {"id": "load", "type": "load_file", "config": {"file": {"upload": file.pk}, "delimiter": ";", "columns": [
            {"name": "customer", "source": "Customer"}, {"name": "mail", "source": "Mail"},
            {"name": "points", "source": "Points"}]}},
        {"id": "match", "type": "reconciliation", "config": {
            "schema": "customer", "unmatched": "keep", "rules": [{"column": "customer", "field": "id"}]}},
        {"id": "write", "type": "update_data", "config": {"operation": "upsert", "mapping": [
            {"column": "mail", "field": "email"}, {"column": "points", "field": "code"}]}},
        {"id": "end", "type": "end"},
        edges=[("start", "out", "load"), ("load", "out", "match"), ("match", "out", "write"),
               ("write", "out", "end")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks, test=True)
    assert run.status == "completed", run.error
    assert nodes["write"].summary["test"] is True
    assert (nodes["write"].summary["inserted"], nodes["write"].summary["updated"],
            nodes["write"].summary["rejected"]) == (1, 1, 1)
    assert records(acme, customers) == {"c1": {"id": "c1", "email": "ann@x.test", "code": 1}}

    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "completed", run.error
    assert records(acme, customers) == {"c1": {"id": "c1", "email": "ann@x.test", "code": 5},
                                        "c2": {"id": "c2", "email": "bob@x.test", "code": 7, "country": "FR"}}
    assert table_rows(nodes["write"].outputs["rejects"]) == [("c3", "points", "oops", "not an integer")]
    assert nodes["write"].outputs["out"]["dimension"] == "customer"
    assert Decimal(nodes["write"].summary["updated"]) == 1


def test_rejects_over_the_threshold_fail_the_run_and_write_nothing(acme, people, customers,
                                                                   django_capture_on_commit_callbacks):
    marketer = people["acme"]["marketer"].user
    put(acme, customers, {"c1": {"id": "c1", "code": 1}})
    campaign = new_campaign(acme, marketer)
    file = upload(acme, campaign, "id,code\nc1,2\nc2,x\n")
    g = graph(
        {"id": "load", "type": "load_file", "config": {"file": {"upload": file.pk}}},
        {"id": "write", "type": "update_data", "config": {"schema": "customer", "operation": "upsert",
                                                          "max_rejects": 0}},
        {"id": "end", "type": "end"},
        edges=[("start", "out", "load"), ("load", "out", "write"), ("write", "out", "end")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "failed" and run.error_node == "write"
    assert nodes["write"].error == ("1 row(s) were rejected, more than the 0 allowed (first: row 3, column 'code': "
                                    "not an integer). Nothing was written.")
    assert records(acme, customers) == {"c1": {"id": "c1", "code": 1}}
