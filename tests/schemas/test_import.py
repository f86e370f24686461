"""The bulk import, file by file, through its services: `import_create` stores the file and
`import_run` (what the Celery task calls) loads it. The task itself is not involved here: these
tests are about what lands in `schemas_record`, what is rejected and why."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from apps.core.errors import ApplicationError
from apps.schemas import services
from apps.schemas.imports import import_create, import_rejects_open, import_run, import_schema_get
from apps.schemas.models import ImportJob, ImportStatus, Record
from apps.tenants.scoping import tenant_scope

HEADER = "id,email,first_name,last_name,country,birth_date,email_opt_in\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def run(tenant: Any, content: bytes | str, name: str = "people.csv", schema: str = "profile",
        by: Any = None, **options: Any) -> ImportJob:
    if isinstance(content, str):
        content = content.encode()
    job = import_create(tenant=tenant, schema=import_schema_get(tenant=tenant, name=schema), by=by,
                        file=SimpleUploadedFile(name, content), **options)
    return import_run(tenant=tenant, job_id=job.pk)


def records(tenant: Any, schema: str = "profile") -> dict[str, dict[str, Any]]:
    with tenant_scope(tenant):
        return {r.key: r.attributes for r in Record.objects.filter(schema__name=schema)}


def row_versions(tenant: Any) -> dict[str, str]:
    """Where each record's row version is: an UPDATE, even to the same values, moves it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, ctid::text FROM schemas_record WHERE tenant_id = %s", [tenant.pk])
        return dict(cursor.fetchall())


def rejects(job: ImportJob) -> list[dict[str, str]]:
    with import_rejects_open(job=job) as handle:
        return list(csv.DictReader(io.StringIO(handle.read().decode())))


def test_a_good_csv_lands_with_canonical_values(acme, media):
    job = run(acme, HEADER
              + "p1, Ann@Example.COM ,Ann,Smith,FR,1990-02-28,yes\n"
              + 'p2,bob@example.com,Bob,"Smith, Jr",DE,20000101,0\n'
              + "p3,,Cléa,,,,\n")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.rows_read, job.rows_valid, job.rows_rejected, job.rows_inserted, job.rows_updated) == (3, 3, 0, 3, 0)
    got = records(acme)
    assert got["p1"] == {"id": "p1", "email": "ann@example.com", "first_name": "Ann", "last_name": "Smith",
                         "country": "FR", "birth_date": "1990-02-28", "email_opt_in": True, "sms_opt_in": False,
                         "push_tokens": []}
    assert got["p2"]["last_name"] == "Smith, Jr" and got["p2"]["birth_date"] == "2000-01-01"
    assert got["p2"]["email_opt_in"] is False
    # empty cells are no value: not stored, and no default for a column the file has
    assert got["p3"] == {"id": "p3", "first_name": "Cléa", "sms_opt_in": False, "push_tokens": []}
    assert not job.rejects_file and rejects(job) == []
    assert not (media / job.file).exists(), "the upload is deleted once imported"


def test_a_good_jsonl_lands(acme):
    job = run(acme, '{"id": "j1", "email": "J1@x.org", "email_opt_in": false, "push_tokens": ["t1"]}\n'
                    "\n"
                    '{"id": 2, "first_name": "Two", "birth_date": null}\r\n', name="people.jsonl")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.rows_read, job.rows_inserted, job.rows_rejected) == (2, 2, 0)
    got = records(acme)
    assert got["j1"] == {"id": "j1", "email": "j1@x.org", "email_opt_in": False, "sms_opt_in": False,
                         "push_tokens": ["t1"]}
    assert got["2"] == {"id": "2", "first_name": "Two", "email_opt_in": True, "sms_opt_in": False,
                        "push_tokens": []}


def test_type_errors_are_rejected_with_line_column_value_and_reason(acme):
    job = run(acme, HEADER
              + "ok1,a@b.co,,,,1990-01-01,true\n"
              + "bad1,not-an-email,,,,1990-02-30,maybe\n"
              + ",c@d.co,,,,,\n"
              + "ok2,,,,,,\n")
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.rows_read, job.rows_valid, job.rows_rejected, job.rows_inserted) == (4, 2, 2, 2)
    assert set(records(acme)) == {"ok1", "ok2"}
    assert rejects(job) == [
        {"line": "3", "column": "email", "value": "not-an-email", "reason": "not an e-mail address"},
        {"line": "3", "column": "birth_date", "value": "1990-02-30", "reason": "not a date (YYYY-MM-DD)"},
        {"line": "3", "column": "email_opt_in", "value": "maybe", "reason": "not a yes/no value (true/false)"},
        {"line": "4", "column": "id", "value": "", "reason": "This field is required."},
    ]


def test_all_or_nothing_imports_nothing_when_a_line_is_rejected(acme):
    run(acme, HEADER + "keep,keep@x.org,,,,,\n")
    job = run(acme, HEADER + "keep,changed@x.org,,,,,\nnew,new@x.org,,,,,\nbad,bad,,,,,\n", mode="all_or_nothing")
    assert job.status == ImportStatus.FAILED
    assert "Nothing was imported: 1 row was rejected (first: line 4, column 'email': not an e-mail address)" \
        in job.error
    assert (job.rows_valid, job.rows_rejected, job.rows_inserted, job.rows_updated) == (2, 1, 0, 0)
    assert records(acme) == {"keep": {"id": "keep", "email": "keep@x.org", "sms_opt_in": False, "push_tokens": []}}
    assert [r["line"] for r in rejects(job)] == ["4"]


def test_all_or_nothing_lands_everything_when_all_lines_are_good(acme):
    job = run(acme, HEADER + "a,a@x.org,,,,,\nb,b@x.org,,,,,\n", mode="all_or_nothing")
    assert job.status == ImportStatus.SUCCEEDED and job.rows_inserted == 2


def test_bad_encoding_fails_the_job_and_changes_nothing(acme):
    content = (HEADER + "p1,a@x.org,Zoë,,,,\n").encode("latin-1")
    job = run(acme, content)
    assert job.status == ImportStatus.FAILED
    assert "not valid utf-8" in job.error and "(line 2)" in job.error and "latin-1" in job.error
    assert records(acme) == {}
    job = run(acme, content, encoding="latin-1")
    assert job.status == ImportStatus.SUCCEEDED and records(acme)["p1"]["first_name"] == "Zoë"


def test_a_wrong_delimiter_fails_with_a_hint(acme):
    job = run(acme, HEADER.replace(",", ";") + "p1;a@x.org;;;;;\n")
    assert job.status == ImportStatus.FAILED
    assert "no column 'id'" in job.error and "separated by ';'" in job.error
    assert run(acme, HEADER.replace(",", ";") + "p1;a@x.org;;;;;\n", delimiter=";").rows_inserted == 1


def test_a_missing_key_column_fails(acme):
    job = run(acme, "email,first_name\na@x.org,Ann\n")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("The file has no column 'id', the key of schema profile.")
    assert records(acme) == {}


def test_unknown_columns_fail_unless_mapped(acme):
    job = run(acme, "id,mail,notes\np1,a@x.org,hello\n")
    assert job.status == ImportStatus.FAILED and "'mail', 'notes' are not fields" in job.error
    job = run(acme, "ID,mail,notes\np1,a@x.org,hello\n", mapping={"mail": "email", "notes": None})
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert records(acme)["p1"]["email"] == "a@x.org"


def test_a_mapping_to_an_unknown_field_is_refused_upfront(acme):
    with pytest.raises(ApplicationError) as exc:
        run(acme, HEADER, mapping={"mail": "nope"})
    assert "mapping.mail" in exc.value.fields


@pytest.mark.parametrize("content,message", [
    (b"", "The file is empty."),
    (b"\n\n", "The file has no header line"),
])
def test_an_empty_file_fails(acme, content, message):
    job = run(acme, content)
    assert job.status == ImportStatus.FAILED and job.error.startswith(message)


def test_a_header_only_file_imports_nothing(acme):
    job = run(acme, HEADER)
    assert job.status == ImportStatus.SUCCEEDED and job.rows_read == 0


def test_an_empty_jsonl_file_fails(acme):
    assert run(acme, b"\n \n", name="x.jsonl").status == ImportStatus.FAILED


def test_duplicate_keys_the_last_valid_line_wins(acme):
    run(acme, HEADER + "old,old@x.org,Old,,,,\n")
    job = run(acme, HEADER
              + "d1,first@x.org,,,,,\n"
              + "old,one@x.org,,,,,\n"
              + "d1,second@x.org,,,,,\n"
              + "old,two@x.org,,,,,\n"
              + "d1,bad-email,,,,,\n")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.rows_read, job.rows_valid, job.rows_rejected, job.rows_inserted, job.rows_updated) == (5, 4, 1, 1, 1)
    got = records(acme)
    assert got["d1"]["email"] == "second@x.org"
    assert got["old"]["email"] == "two@x.org"
    assert "first_name" not in got["old"], "a column of the file replaces the field, even when empty"


def test_upsert_rewrites_only_the_records_that_change(acme):
    run(acme, HEADER + "a,a@x.org,A,,FR,,\nb,b@x.org,B,,DE,,\nc,c@x.org,C,,IT,,\n")
    before = row_versions(acme)
    job = run(acme, "id,country\na,FR\nb,ES\nd,PT\n")
    assert (job.rows_inserted, job.rows_updated) == (1, 1)
    after = row_versions(acme)
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
    got = records(acme)
    assert got["b"] == {"id": "b", "email": "b@x.org", "first_name": "B", "country": "ES", "sms_opt_in": False,
                        "push_tokens": []}, "fields the file lacks are kept"
    assert got["d"]["email_opt_in"] is True, "a new record takes the defaults of the fields the file lacks"
    again = run(acme, "id,country\na,FR\nb,ES\nd,PT\n")
    assert (again.rows_inserted, again.rows_updated, again.rows_valid) == (0, 0, 3)


def test_jsonl_keys_absent_from_a_line_leave_the_record_alone(acme):
    run(acme, HEADER + "a,a@x.org,A,Z,FR,,no\n")
    job = run(acme, '{"id": "a", "country": "ES", "last_name": null}\n{"id": "b"}\n', name="x.jsonl")
    assert (job.rows_inserted, job.rows_updated) == (1, 1)
    got = records(acme)
    assert got["a"] == {"id": "a", "email": "a@x.org", "first_name": "A", "country": "ES", "email_opt_in": False,
                        "sms_opt_in": False, "push_tokens": []}
    assert got["b"] == {"id": "b", "email_opt_in": True, "sms_opt_in": False, "push_tokens": []}


def test_formula_cells_are_neutralised_in_the_rejects_report(acme):
    job = run(acme, "id,email,=HYPERLINK(\"x\")\n=cmd|' /C calc'!A0,=cmd|' /C calc'!A0,x\n",
              mapping={'=HYPERLINK("x")': None})
    assert job.status == ImportStatus.SUCCEEDED, job.error
    with import_rejects_open(job=job) as handle:
        raw = handle.read().decode()
    assert "'=cmd|' /C calc'!A0" in raw
    assert [r["value"] for r in rejects(job)] == ["'=cmd|' /C calc'!A0"]
    assert not any(line.startswith(("=", "+", "-", "@")) for row in csv.reader(io.StringIO(raw)) for line in row)


def test_malformed_lines_become_rejects(acme):
    job = run(acme, HEADER + "a,a@x.org,,,,,\nshort,line\nb,b@x.org,,,,,,extra\n\nc,c@x.org,,,,,\n")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.rows_read, job.rows_rejected, job.rows_inserted) == (4, 2, 2)
    assert set(records(acme)) == {"a", "c"}
    assert [(r["line"], r["reason"]) for r in rejects(job)] == [
        ("3", "expected 7 columns, found 2"), ("4", "expected 7 columns, found 8")]
    job = run(acme, HEADER + "a,a@x.org,,,,,\nshort,line\n", mode="all_or_nothing")
    assert job.status == ImportStatus.FAILED and "line 3: expected 7 columns, found 2" in job.error


def test_a_line_that_is_only_backslash_dot_does_not_end_the_file(acme):
    job = run(acme, "id\na\n\\.\nb\n")
    assert job.rows_read == 3 and set(records(acme)) == {"a", "b", "\\."}


def test_unparseable_json_lines(acme):
    content = '{"id": "a"}\n{"id": "b",\n[1, 2]\n{"id": "c", "nope": 1}\n'
    job = run(acme, content, name="x.jsonl")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.rows_read, job.rows_rejected, job.rows_inserted) == (4, 3, 1)
    assert [(r["line"], r["column"], r["reason"]) for r in rejects(job)] == [
        ("2", "", "not valid JSON"), ("3", "", "not a JSON object"),
        ("4", "nope", "not a field of schema profile")]
    job = run(acme, content, name="x.jsonl", mode="all_or_nothing")
    assert job.status == ImportStatus.FAILED and "first: line 2: not valid JSON" in job.error


def test_every_type_of_a_custom_schema(acme):
    services.schema_create(tenant=acme, name="order", by=None, primary_key={"name": "n", "type": "integer"}, fields=[
        {"name": "amount", "type": "decimal"}, {"name": "at", "type": "datetime"},
        {"name": "phone", "type": "phone"}, {"name": "channel", "type": "enum", "enum_values": ["web", "store"]},
        {"name": "extra", "type": "json"}, {"name": "code", "type": "string", "required": True}])
    job = run(acme, "n,amount,at,phone,channel,extra,code\n"
              '007,1_000.50,2024-01-02T03:04:05+01:00,+33 (1) 23.45-67,web,"{""a"": [1, null]}",x\n'
              "8,1e2,2024-01-02,0123456,store,,y\n"
              "9,abc,2024-13-01,12,shop,{bad,\n"
              "99999999999999999999,1,,,,,z\n", schema="order")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    got = records(acme, "order")
    assert got["7"] == {"n": 7, "amount": 1000.5, "at": "2024-01-02T02:04:05Z", "phone": "+331234567",
                        "channel": "web", "extra": {"a": [1, None]}, "code": "x"}
    assert got["8"] == {"n": 8, "amount": 100, "at": "2024-01-02T00:00:00Z", "phone": "0123456", "channel": "store",
                        "code": "y"}
    assert [(r["line"], r["column"], r["reason"]) for r in rejects(job)] == [
        ("4", "amount", "not a number"), ("4", "at", "not a date and time (ISO 8601)"),
        ("4", "phone", "not a phone number"), ("4", "channel", "not one of web, store"),
        ("4", "extra", "not valid JSON"), ("4", "code", "This field is required."),
        ("5", "n", "integer out of range")]


def test_a_finished_job_is_not_run_again(acme):
    job = run(acme, HEADER + "a,a@x.org,,,,,\n")
    assert import_run(tenant=acme, job_id=job.pk).rows_inserted == 1


def test_no_staging_table_is_left_behind(acme):
    run(acme, HEADER + "a,a@x.org,,,,,\n")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'import_%%' AND relpersistence = 't'")
        assert cursor.fetchone()[0] == 0


def test_duplicate_keys_in_a_schema_without_records(acme):
    job = run(acme, HEADER + "d,first@x.org,,,,,\nd,second@x.org,,,,,\ne,e@x.org,,,,,\n")
    assert (job.status, job.rows_valid, job.rows_inserted, job.rows_updated) == (ImportStatus.SUCCEEDED, 3, 2, 0)
    assert records(acme)["d"]["email"] == "second@x.org"


def test_a_first_load_with_duplicate_keys_and_rejects_reports_them_once(acme):
    # The single pass of a first load meets the duplicate, gives way to the two-pass import, and
    # nothing of the single pass (rows, noted rejects) is left over.
    job = run(acme, HEADER + "d,first@x.org,,,,,\nbad,not-an-email,,,,,\nd,second@x.org,,,,,\n")
    assert (job.status, job.rows_read, job.rows_valid, job.rows_rejected, job.rows_inserted) == (
        ImportStatus.SUCCEEDED, 3, 2, 1, 1)
    assert records(acme) == {"d": {"id": "d", "email": "second@x.org", "sms_opt_in": False, "push_tokens": []}}
    assert rejects(job) == [{"line": "3", "column": "email", "value": "not-an-email",
                             "reason": "not an e-mail address"}]


def test_a_first_load_applies_the_defaults_of_fields_without_a_column(acme):
    job = run(acme, "id,email\nx,x@x.org\ny,\n")
    assert (job.status, job.rows_inserted, job.rows_rejected) == (ImportStatus.SUCCEEDED, 2, 0)
    defaults = {"email_opt_in": True, "sms_opt_in": False, "push_tokens": []}
    assert records(acme) == {"x": {"id": "x", "email": "x@x.org", **defaults}, "y": {"id": "y", **defaults}}
