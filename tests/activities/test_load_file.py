"""Load file: CSV and JSON-lines files become typed populations keyed by line number; lines that
do not fit go to `rejects`; a file that cannot be read fails the node and leaves nothing. The
activity runs on the harness (tests/activities/harness.py) for its logic, and through the engine
(eager mode, tests/activities/datafiles.py) where the run's outcome is the point."""

from __future__ import annotations

import datetime as dt
import json
import re
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.activities.base import NodeError
from apps.activities.load_file import rejects_report
from apps.files import storage
from apps.files.models import CampaignFile
from apps.schemas.types import InvalidValue, coerce
from apps.tenants.scoping import tenant_scope
from tests.activities.datafiles import csv_bytes, graph, new_campaign, run_campaign, table_rows, upload
from tests.activities.harness import Harness

PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def marketer(people):
    return people["acme"]["marketer"].user


@pytest.fixture
def campaign(acme, marketer):
    return new_campaign(acme, marketer, variables=[{"name": "feed", "type": "string"}])


def load(acme, campaign, content: bytes | str, config: dict[str, Any], name: str = "file.csv", **kwargs):
    file = upload(acme, campaign, content, name)
    config = {"file": {"upload": file.pk}, **config}
    return Harness(acme, campaign_id=campaign.pk, **kwargs).run("load_file", config, [])


def test_csv_with_typed_columns(acme, campaign):
    content = ("id,email,age,score,birthday,opt_in\n"
               "a1, Alice@Example.org ,34,12.5,1990-05-01,yes\n"
               "a2,bob@example.org,,7,,no\n")
    done = load(acme, campaign, content, {"columns": [
        {"name": "id"}, {"name": "email", "type": "email"}, {"name": "age", "type": "integer"},
        {"name": "score", "type": "decimal"}, {"name": "birthday", "type": "date"},
        {"name": "opt_in", "type": "boolean"}]})
    out = done.outputs["out"]
    assert out.dimension == "file:node" and out.count == 2 and "rejects" not in done.outputs
    assert [(c.name, c.type) for c in out.columns] == [
        ("id", "text"), ("email", "text"), ("age", "bigint"), ("score", "numeric"), ("birthday", "date"),
        ("opt_in", "boolean")]
    assert table_rows(out, "key::int") == [
        ("2", "a1", "alice@example.org", 34, Decimal("12.5"), dt.date(1990, 5, 1), True),
        ("3", "a2", "bob@example.org", None, Decimal("7"), None, False)]
    assert done.summary == {"file": "file.csv", "lines": 2, "loaded": 2, "rejected": 0}


def test_columns_default_to_the_header_as_text(acme, campaign):
    done = load(acme, campaign, "Customer ID;E-mail;key\nc1;x@y.test;k\n", {"delimiter": ";"})
    out = done.outputs["out"]
    assert [c.name for c in out.columns] == ["customer_id", "e_mail", "key_2"]
    assert table_rows(out) == [("2", "c1", "x@y.test", "k")]


def test_csv_options_formats_and_value_handling(acme, campaign):
    content = ("exported by the shop\n\n"
               "Name|Amount|Day|Gender|Code\n"
               "  Zoé |1.234,50|31/12/2024|M|x\n"
               "Ann|12|01/02/2025|F|\n"
               "Bob|oops|30/02/2025|?|y\n").encode("latin-1")
    done = load(acme, campaign, content, {
        "delimiter": "|", "encoding": "latin-1", "skip_lines": 2, "max_rejects": 5,
        "columns": [
            {"name": "name", "source": "Name", "case": "upper"},
            {"name": "amount", "source": "Amount", "type": "decimal", "decimal_separator": ",",
             "thousands_separator": ".", "on_error": "default", "default": 0},
            {"name": "day", "source": "Day", "type": "date", "format": "DD/MM/YYYY", "on_error": "ignore"},
            {"name": "gender", "source": "Gender", "type": "enum", "enum_values": ["male", "female"],
             "remap": {"M": "male", "F": "female"}},
            {"name": "code", "source": "Code", "nullable": False},
        ]})
    out, rejects = done.outputs["out"], done.outputs["rejects"]
    assert table_rows(out, "key::int") == [("4", "ZOÉ", Decimal("1234.50"), dt.date(2024, 12, 31), "male", "x")]
    assert table_rows(rejects, "key::int") == [
        ("5", "Code", None, "no value (the column is not nullable)"),
        ("6", "Gender", "?", "not one of male, female")]
    assert done.summary["rejected"] == 2


def test_a_repeated_header_name_gives_two_columns(acme, campaign):
    done = load(acme, campaign, "a,a,b\n1,2,3\n", {})
    assert [c.name for c in done.outputs["out"].columns] == ["a", "a_2", "b"]
    assert table_rows(done.outputs["out"]) == [("2", "1", "2", "3")]


def test_no_header_columns_by_position(acme, campaign):
    done = load(acme, campaign, "x;1\ny;2\n", {"header": False, "delimiter": ";", "columns": [
        {"name": "n", "source": 2, "type": "integer"}, {"name": "label", "source": 1}]})
    assert table_rows(done.outputs["out"]) == [("1", 1, "x"), ("2", 2, "y")]


def test_datetime_format_and_json_lines(acme, campaign):
    content = ('{"id": "a", "at": "24.12.2025 18:30:00", "n": 3, "tags": ["x"]}\n'
               '\n'
               '{"id": "b", "at": "bad", "n": "4"}\n'
               'not json\n'
               '[1, 2]\n')
    done = load(acme, campaign, content, {"columns": [
        {"name": "id"}, {"name": "at", "type": "datetime", "format": "DD.MM.YYYY HH:MI:SS"},
        {"name": "n", "type": "integer"}, {"name": "tags", "type": "json"}]}, name="feed.jsonl")
    assert table_rows(done.outputs["out"]) == [
        ("1", "a", dt.datetime(2025, 12, 24, 18, 30, tzinfo=dt.UTC), 3, '["x"]')]
    assert table_rows(done.outputs["rejects"], "key::int") == [
        ("3", "at", "bad", "not a date and time in the format DD.MM.YYYY HH:MI:SS"),
        ("4", None, "not json", "not valid JSON"),
        ("5", None, "[1, 2]", "not a JSON object")]


def test_malformed_lines_are_rejects_with_a_report(acme, campaign):
    content = 'id,n\na,1\nb,2,extra\n"c,3\n'
    done = load(acme, campaign, content, {"columns": [{"name": "id"}, {"name": "n", "type": "integer"}]})
    assert table_rows(done.outputs["out"]) == [("2", "a", 1)]
    rejected = table_rows(done.outputs["rejects"], "key::int")
    assert [r[0] for r in rejected] == ["3", "4"]
    assert rejected[0][3] == "expected 2 columns, found 3"
    with connection.cursor() as cursor:
        report = b"".join(bytes(b) for b in rejects_report(cursor, done.outputs["rejects"])).decode()
    assert report.splitlines()[0] == "line,column,value,reason"
    assert report.splitlines()[1] == '3,,"b,2,extra","expected 2 columns, found 3"'


def test_report_neutralises_formulas(acme, campaign):
    done = load(acme, campaign, "n\n=1+2\n", {"columns": [{"name": "n", "type": "integer"}]})
    with connection.cursor() as cursor:
        report = b"".join(bytes(b) for b in rejects_report(cursor, done.outputs["rejects"])).decode()
    assert report.splitlines()[1] == "2,n,'=1+2,not an integer"


def test_file_named_by_a_variable(acme, campaign):
    upload(acme, campaign, "id\nold\n", "feed.csv")
    upload(acme, campaign, "id\nnew\n", "feed.csv")
    done = Harness(acme, campaign_id=campaign.pk, variables={"feed": "feed.csv"},
                   declarations={"feed": {"name": "feed", "type": "string"}}).run(
        "load_file", {"file": {"variable": "feed"}, "columns": [{"name": "id"}]}, [])
    assert table_rows(done.outputs["out"]) == [("2", "new")]


@pytest.mark.parametrize(("content", "config", "message"), [
    (b"id,name\n\xe9t\xe9,x\n", {}, "not valid utf-8"),
    (b"id;name\n1;x\n", {"columns": [{"name": "id"}, {"name": "name"}]},
     "no column 'id', 'name'. Its columns: 'id;name'. It looks like the columns are separated by ';'"),
    (b"id,email\n1,x\n", {"columns": [{"name": "id"}, {"name": "phone"}]}, "no column 'phone'"),
    (b"id,name\n", {}, "the file has no data lines"),
    (b"\n\n", {}, "no header line"),
    (b"id\n1\n", {"skip_lines": 5}, "fewer than 5 lines to skip"),
    (b"\xff\xfe{}", {"columns": [{"name": "id"}], "format": "jsonl"}, "not valid utf-8"),
])
def test_broken_files_are_clear_node_errors(acme, campaign, content, config, message):
    file = upload(acme, campaign, content)
    harness = Harness(acme, campaign_id=campaign.pk)
    with pytest.raises(NodeError, match=re.escape(message)), transaction.atomic():
        harness.run("load_file", {"file": {"upload": file.pk}, **config}, [])


def test_empty_file_is_a_node_error(acme, campaign, marketer):
    path = storage.new_path(acme.pk)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    with tenant_scope(acme):
        file = CampaignFile.objects.create(campaign=campaign, name="empty.csv", path=storage.relative(path))
    with pytest.raises(NodeError, match="file is empty"):
        Harness(acme, campaign_id=campaign.pk).run("load_file", {"file": {"upload": file.pk}}, [])


def test_config_problems(acme, campaign):
    file = upload(acme, campaign, "id\n1\n")
    harness = Harness(acme, campaign_id=campaign.pk)

    def problems(config):
        return {p.path: p.message for p in harness.problems("load_file", {"file": {"upload": file.pk}, **config}, [])}

    assert "config.file.upload" in {p.path for p in harness.problems("load_file", {"file": {"upload": 999999}}, [])}
    assert problems({"delimiter": "ab"})["config.delimiter"]
    assert problems({"encoding": "klingon"})["config.encoding"].startswith("Choose one of")
    found = problems({"columns": [
        {"name": "a", "type": "integer", "format": "DD/MM/YYYY"},
        {"name": "a", "type": "date", "format": "DD/MM"},
        {"name": "key"},
        {"name": "c", "type": "integer", "on_error": "default", "default": "x"},
        {"name": "d", "type": "enum"},
        {"name": "e", "decimal_separator": ","},
    ]})
    assert found["config.columns.0.format"] == "Only date and datetime columns have a format."
    assert found["config.columns.1.name"] == "The column name 'a' is used twice."
    assert found["config.columns.1.format"] == "The format needs YYYY, MM and DD."
    assert "line number" in found["config.columns.2.name"]
    assert found["config.columns.3.default"] == "The default is not an integer."
    assert found["config.columns.4.enum_values"]
    assert found["config.columns.5.decimal_separator"]
    assert problems({"columns": [{"name": "Bad-Name"}]})["config.columns.0.name"]
    assert harness.problems("load_file", {"file": {"variable": "nope"}, "columns": [{"name": "a"}]}, [])[0].path == \
        "config.file.variable"


# -- through the engine ---------------------------------------------------------------------------

def _work_tables(run_id: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'campaign_work' AND tablename LIKE %s",
                       [f"r{run_id}\\_%"])
        return [r[0] for r in cursor.fetchall()]


def test_rejects_over_the_threshold_fail_the_run(acme, marketer, campaign, django_capture_on_commit_callbacks):
    file = upload(acme, campaign, "id,n\na,1\nb,x\nc,y\n")
    g = graph({"id": "load", "type": "load_file", "config": {
        "file": {"upload": file.pk}, "max_rejects": 1, "columns": [{"name": "id"}, {"name": "n", "type": "integer"}]}},
        {"id": "end", "type": "end"}, edges=[("start", "out", "load"), ("load", "out", "end")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "failed" and run.error_node == "load"
    assert nodes["load"].error == ("2 line(s) of file.csv were rejected, more than the 1 allowed "
                                   "(first: line 3, column 'n': not an integer). Nothing was loaded.")
    assert not any("_n" + str(nodes["load"].pk) + "_" in t for t in _work_tables(run.pk))


def test_broken_file_fails_the_run_and_leaves_nothing(acme, marketer, campaign, django_capture_on_commit_callbacks):
    file = upload(acme, campaign, b"id,name\n1,\xe9\n")
    g = graph({"id": "load", "type": "load_file", "config": {"file": {"upload": file.pk}}},
              {"id": "end", "type": "end"}, edges=[("start", "out", "load"), ("load", "out", "end")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "failed"
    assert nodes["load"].error.startswith("file.csv: the file is not valid utf-8 (line 2)")
    assert _work_tables(run.pk) == []


def test_load_in_a_campaign_with_rejects_and_test_mode(acme, marketer, campaign, django_capture_on_commit_callbacks):
    file = upload(acme, campaign, "id,n\na,1\nb,x\n")
    g = graph({"id": "load", "type": "load_file", "config": {
        "file": {"upload": file.pk}, "columns": [{"name": "id"}, {"name": "n", "type": "integer"}]}},
        {"id": "end", "type": "end"}, {"id": "end2", "type": "end"},
        edges=[("start", "out", "load"), ("load", "out", "end"), ("load", "rejects", "end2")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks, test=True)
    assert run.status == "completed", run.error
    assert nodes["load"].summary == {"file": "file.csv", "lines": 2, "loaded": 1, "rejected": 1}
    assert table_rows(nodes["load"].outputs["out"]) == [("2", "a", 1)]
    assert nodes["end2"].status == "done"


# -- memory: the file streams ---------------------------------------------------------------------

def test_a_large_file_streams_without_holding_it(acme, campaign):
    line = "some-identifier-{:08d},someone{:08d}@example.org,{},2024-01-{:02d}\n"
    content = "id,email,n,day\n" + "".join(line.format(i, i, i, i % 28 + 1) for i in range(250_000))
    size = len(content)
    file = upload(acme, campaign, content)
    del content
    tracemalloc.start()
    try:
        done = Harness(acme, campaign_id=campaign.pk).run("load_file", {"file": {"upload": file.pk}, "columns": [
            {"name": "id"}, {"name": "email", "type": "email"}, {"name": "n", "type": "integer"},
            {"name": "day", "type": "date"}]}, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.outputs["out"].count == 250_000
    assert size > 16 * 1024 * 1024 and peak < 8 * 1024 * 1024, peak  # chunks of 1 MiB, never the file


# -- property: the loaded population is what coerce() says, line by line --------------------------

CELLS = {
    "integer": st.one_of(st.integers(-10**6, 10**6).map(str), st.sampled_from(["", " 7 ", "x", "1.5", "+3"])),
    "decimal": st.one_of(st.decimals(-1000, 1000, places=2, allow_nan=False).map(str),
                         st.sampled_from(["", "1e3", "abc", " 2.50 "])),
    "date": st.one_of(st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)).map(dt.date.isoformat),
                      st.sampled_from(["", "2024-02-30", "yesterday"])),
    "boolean": st.sampled_from(["", "yes", "No", "true", "0", "maybe"]),
    "email": st.sampled_from(["", "A@B.test", "nobody", " x@y.org "]),
    "string": st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
}
TYPED = {"integer": int, "decimal": Decimal, "date": dt.date.fromisoformat, "boolean": bool, "email": str,
         "string": str}


def expected(types: list[str], rows: list[list[str]], nullable: list[bool]) -> tuple[dict, set]:
    """The plain-Python load: each cell trimmed (as the column's default `trim`), empty is no value,
    then types.coerce; a line is rejected at its first failing value."""
    loaded, rejected = {}, set()
    for number, row in enumerate(rows, start=2):
        values = []
        for kind, cell, can_be_null in zip(types, row, nullable, strict=True):
            text = cell.strip() if cell.strip() != "" else None
            try:
                value = coerce(kind, text)
            except InvalidValue:
                rejected.add(str(number))
                break
            if value is None and not can_be_null:
                rejected.add(str(number))
                break
            if value is not None and kind == "decimal":
                value = Decimal(str(value))
            elif value is not None and kind == "date":
                value = dt.date.fromisoformat(value)
            values.append(value)
        else:
            loaded[str(number)] = tuple(values)
    return loaded, rejected


@PROPERTY
@given(data=st.data())
def test_property_load_matches_python_coercion(acme, campaign, data):
    types = data.draw(st.lists(st.sampled_from(sorted(CELLS)), min_size=1, max_size=4))
    nullable = data.draw(st.lists(st.booleans(), min_size=len(types), max_size=len(types)))
    rows = data.draw(st.lists(st.tuples(*[CELLS[t] for t in types]).map(list), min_size=1, max_size=12))
    rows = [r for r in rows if any(c.strip() for c in r)] or [["1" if t in ("integer", "decimal") else "" for t in types]]
    content = csv_bytes([[f"c{i}" for i in range(len(types))], *rows])
    columns = [{"name": f"c{i}", "type": t, "nullable": n} for i, (t, n) in enumerate(zip(types, nullable, strict=True))]
    with transaction.atomic():
        done = load(acme, campaign, content, {"columns": columns})
        want_loaded, want_rejected = expected(types, rows, nullable)
        got = {row[0]: row[1:] for row in table_rows(done.outputs["out"])}
        assert got == want_loaded
        got_rejected = {row[0] for row in table_rows(done.outputs["rejects"])} if "rejects" in done.outputs else set()
        assert got_rejected == want_rejected
        transaction.set_rollback(True)


def test_jsonl_values_are_typed_as_imports_do(acme, campaign):
    lines = [{"n": 5, "d": 1.5, "b": True, "s": 12}, {"n": 2.0, "d": "3", "b": "no", "s": "x"}, {"n": True}]
    done = load(acme, campaign, "\n".join(json.dumps(x) for x in lines), {"columns": [
        {"name": "n", "type": "integer"}, {"name": "d", "type": "decimal"}, {"name": "b", "type": "boolean"},
        {"name": "s"}]}, name="x.ndjson")
    assert table_rows(done.outputs["out"]) == [("1", 5, Decimal("1.5"), True, "12"), ("2", 2, Decimal("3"), False, "x")]
    assert table_rows(done.outputs["rejects"]) == [("3", "n", "true", "not an integer value")]
