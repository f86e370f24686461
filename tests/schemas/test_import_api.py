"""The imports API as its users meet it: upload, follow, download the rejects; who may do what.

The Celery task runs eagerly here (`eager`): these tests are about the API's behaviour, and the
task is a kick that calls `import_run`; the job still starts only once the upload's transaction
has committed (django_capture_on_commit_callbacks)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.schemas.models import ImportJob, Record
from apps.tenants.scoping import tenant_scope
from config.celery import app as celery_app

URL = "/api/v1/schemas/{schema}/imports/"
CSV = (b"id,email,first_name\n"
       b"p1,ann@example.com,Ann\n"
       b"p2,=cmd|' /C calc'!A0,Bob\n")


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def eager(django_capture_on_commit_callbacks):
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield django_capture_on_commit_callbacks
    finally:
        celery_app.conf.task_always_eager = previous


def upload(client: Any, content: bytes = CSV, name: str = "people.csv", schema: str = "profile",
           **fields: Any) -> Any:
    return client.post(URL.format(schema=schema), {"file": SimpleUploadedFile(name, content), **fields},
                       format="multipart")


def test_upload_answers_202_then_the_job_runs_after_commit(api, acme, eager, media):
    client = api("acme", "marketer")
    with eager(execute=True) as callbacks:
        response = upload(client)
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["status"] == "pending" and body["original_name"] == "people.csv"
        assert body["options"] == {"delimiter": ",", "quotechar": '"', "encoding": "utf-8", "mapping": {}}
        assert body["created_by"] == "marketer@acme.test"
    assert len(callbacks) == 1
    job = client.get(f"{URL.format(schema='profile')}{body['id']}/").json()
    assert {k: job[k] for k in ("status", "rows_read", "rows_valid", "rows_rejected", "rows_inserted",
                                "rows_updated", "has_rejects")} == {
        "status": "succeeded", "rows_read": 2, "rows_valid": 1, "rows_rejected": 1, "rows_inserted": 1,
        "rows_updated": 0, "has_rejects": True}
    with tenant_scope(acme):
        assert list(Record.objects.values_list("key", flat=True)) == ["p1"]
    listing = client.get(URL.format(schema="profile")).json()
    assert [row["id"] for row in listing["results"]] == [body["id"]]


def test_rejects_download_is_csv_with_formulas_neutralised(api, acme, eager):
    client = api("acme", "admin")
    with eager(execute=True):
        job_id = upload(client).json()["id"]
    response = client.get(f"{URL.format(schema='profile')}{job_id}/rejects")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="import-{job_id}-rejects.csv"' in response["Content-Disposition"]
    content = b"".join(response.streaming_content).decode()
    assert list(csv.reader(io.StringIO(content))) == [
        ["line", "column", "value", "reason"],
        ["3", "email", "'=cmd|' /C calc'!A0", "not an e-mail address"],
    ]


def test_options_and_mapping_travel_as_form_fields(api, acme, eager):
    client = api("acme", "admin")
    with eager(execute=True):
        response = upload(client, b"ID;Mail\np1;a@x.org\n", name="people.txt", delimiter=";",
                          mapping='{"Mail": "email"}', mode="all_or_nothing")
    assert response.status_code == 202, response.content
    job = client.get(f"{URL.format(schema='profile')}{response.json()['id']}/").json()
    assert job["status"] == "succeeded" and job["rows_inserted"] == 1, job["error"]


def test_jsonl_format_comes_from_the_extension(api, acme, eager):
    client = api("acme", "admin")
    with eager(execute=True):
        response = upload(client, b'{"id": "j1"}\n', name="people.ndjson")
    assert response.json()["format"] == "jsonl"


@pytest.mark.parametrize("fields,field", [
    ({"mode": "sometimes"}, "mode"), ({"encoding": "klingon"}, "encoding"), ({"delimiter": "ab"}, "delimiter"),
    ({"mapping": '{"a": "not_a_field"}'}, "mapping.a"), ({"format": "xml"}, "format"),
])
def test_bad_options_are_a_400_and_no_file_is_kept(api, acme, media, fields, field):
    response = upload(api("acme", "admin"), **fields)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not any(p.is_file() for p in media.rglob("*")), "the stored upload is removed"
    with tenant_scope(acme):
        assert not ImportJob.objects.exists()


def test_no_file_is_a_400(api, acme):
    response = api("acme", "admin").post(URL.format(schema="profile"), {}, format="json")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]


@pytest.mark.parametrize("role,allowed", [("admin", True), ("marketer", True), ("approver", False),
                                          ("viewer", False)])
def test_who_may_import(api, acme, eager, role, allowed):
    with eager(execute=True):
        response = upload(api("acme", role))
    assert response.status_code == (202 if allowed else 403)
    listing = api("acme", role).get(URL.format(schema="profile"))
    assert listing.status_code == 200, "every member reads imports"


def test_another_tenant_gets_404(api, acme, globex, eager):
    with eager(execute=True):
        job_id = upload(api("acme", "admin")).json()["id"]
    stranger = api("globex", "admin")
    for path in (f"{job_id}/", f"{job_id}/rejects"):
        response = stranger.get(URL.format(schema="profile") + path)
        assert response.status_code == 404, path
        assert b"acme" not in response.content.lower()
    assert stranger.get(URL.format(schema="profile")).json()["results"] == []
    assert stranger.get(URL.format(schema="no_such_schema")).status_code == 404


def test_a_job_of_another_schema_is_not_found_under_this_one(api, acme, eager):
    from apps.schemas import services

    services.schema_create(tenant=acme, name="other", by=None, primary_key={"name": "k", "type": "string"})
    client = api("acme", "admin")
    with eager(execute=True):
        job_id = upload(client).json()["id"]
    assert client.get(f"{URL.format(schema='other')}{job_id}/").status_code == 404


def test_the_upload_is_written_to_disk_by_the_handler(api, acme, media, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    """Without running the job: the upload handler wrote the file in place (the service keeps it
    there rather than copying it), byte for byte."""
    from apps.schemas import imports

    given = []
    store = imports._store
    monkeypatch.setattr(imports, "_store", lambda tenant, file: given.append(file) or store(tenant, file))
    with django_capture_on_commit_callbacks(execute=False):
        body = upload(api("acme", "admin")).json()
    assert [type(f).__name__ for f in given] == ["StoredUpload"]
    with tenant_scope(acme):
        job = ImportJob.objects.get(pk=body["id"])
    assert job.file.startswith(f"imports/{acme.pk}/")
    assert (media / job.file).read_bytes() == CSV
