"""Campaign files API: upload (streamed to disk), list, read, guessed columns, delete; roles and
tenants; and the rejects report of a run's data activities."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.files import storage
from apps.files.models import CampaignFile
from apps.tenants.scoping import tenant_scope
from tests.activities.datafiles import graph, new_campaign, run_campaign, upload


@pytest.fixture
def campaign(acme, people):
    return new_campaign(acme, people["acme"]["marketer"].user)


def files_url(campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/files/"


def test_upload_list_read_columns_and_delete(api, acme, campaign, django_capture_on_commit_callbacks):
    marketer = api("acme", "marketer")
    content = b"Email,Points,Joined,Opt in\na@x.test,10,2024-01-02,yes\nb@x.test,,2024-02-03,no\n"
    response = marketer.post(files_url(campaign), {"file": SimpleUploadedFile("list.csv", content)},
                             format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["size"], body["campaign"]) == ("list.csv", len(content), campaign.pk)
    with tenant_scope(acme):
        stored = CampaignFile.objects.get(pk=body["id"])
    path = storage.absolute(stored.path)
    assert path.read_bytes() == content and path.parent == storage.directory(acme.pk).resolve()

    listing = api("acme", "viewer").get(files_url(campaign)).json()
    assert [f["id"] for f in listing["results"]] == [body["id"]]
    assert api("acme", "viewer").get(f"{files_url(campaign)}{body['id']}/").json()["name"] == "list.csv"
    columns = marketer.get(f"{files_url(campaign)}{body['id']}/columns").json()["columns"]
    assert columns == [{"name": "email", "source": "Email", "type": "email"},
                       {"name": "points", "source": "Points", "type": "integer"},
                       {"name": "joined", "source": "Joined", "type": "date"},
                       {"name": "opt_in", "source": "Opt in", "type": "boolean"}]

    with django_capture_on_commit_callbacks(execute=True):
        assert marketer.delete(f"{files_url(campaign)}{body['id']}/").status_code == 204
    assert not path.exists()
    assert marketer.get(f"{files_url(campaign)}{body['id']}/").status_code == 404


def test_columns_of_json_lines_and_options(api, acme, campaign):
    jsonl = upload(acme, campaign, '{"id": 1, "at": "2024-01-01T10:00:00Z"}\n{"id": 2, "tags": [1]}\n', "x.jsonl")
    body = api("acme", "viewer").get(f"{files_url(campaign)}{jsonl.pk}/columns").json()
    assert body["columns"] == [{"name": "id", "source": "id", "type": "integer"},
                               {"name": "at", "source": "at", "type": "datetime"},
                               {"name": "tags", "source": "tags", "type": "string"}]
    semi = upload(acme, campaign, "skip me\na;b\n1;x\n")
    body = api("acme", "viewer").get(f"{files_url(campaign)}{semi.pk}/columns?delimiter=;&skip_lines=1").json()
    assert [c["name"] for c in body["columns"]] == ["a", "b"]
    response = api("acme", "viewer").get(f"{files_url(campaign)}{semi.pk}/columns?encoding=klingon")
    assert response.status_code == 400 and "encoding" in response.json()["error"]["fields"]


def test_bad_uploads_are_400_with_the_field(api, campaign):
    marketer = api("acme", "marketer")
    response = marketer.post(files_url(campaign), {}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    response = marketer.post(files_url(campaign), {"file": SimpleUploadedFile("e.csv", b"")}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]


def test_roles_and_tenants(api, acme, campaign):
    file = upload(acme, campaign, "a\n1\n")
    viewer = api("acme", "viewer")
    response = viewer.post(files_url(campaign), {"file": SimpleUploadedFile("x.csv", b"a\n")}, format="multipart")
    assert response.status_code == 403
    assert viewer.delete(f"{files_url(campaign)}{file.pk}/").status_code == 403
    for role in ("admin", "marketer", "viewer", "approver"):
        stranger = api("globex", role)
        assert stranger.get(files_url(campaign)).status_code == 404
        assert stranger.get(f"{files_url(campaign)}{file.pk}/").status_code == 404
        assert stranger.get(f"{files_url(campaign)}{file.pk}/columns").status_code == 404
        assert stranger.delete(f"{files_url(campaign)}{file.pk}/").status_code == 404
    with tenant_scope(acme):
        assert CampaignFile.objects.filter(pk=file.pk).exists()


def test_a_file_belongs_to_its_campaign(api, acme, people, campaign):
    other = new_campaign(acme, people["acme"]["marketer"].user)
    file = upload(acme, other, "a\n1\n")
    assert api("acme", "admin").get(f"{files_url(campaign)}{file.pk}/").status_code == 404


def test_rejects_report_of_a_run(api, acme, people, campaign, django_capture_on_commit_callbacks):
    marketer = people["acme"]["marketer"].user
    file = upload(acme, campaign, "id,n\na,1\nb,x\n=c,y\n")
    g = graph({"id": "load", "type": "load_file", "config": {
        "file": {"upload": file.pk}, "columns": [{"name": "id"}, {"name": "n", "type": "integer"}]}},
        {"id": "end", "type": "end"}, edges=[("start", "out", "load"), ("load", "out", "end")])
    run, _ = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    url = f"/api/v1/runs/{run.pk}/rejects"
    response = api("acme", "viewer").get(url + "?node=load")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "line,column,value,reason", "3,n,x,not an integer", "4,n,y,not an integer"]
    assert api("acme", "viewer").get(url + "?node=start").status_code == 404
    response = api("acme", "viewer").get(url)
    assert response.status_code == 400 and "node" in response.json()["error"]["fields"]
    assert api("globex", "admin").get(url + "?node=load").status_code == 404
