"""The tasks API as its users meet it: the approver's inbox, approving and rejecting (the run goes
on), who may approve (roles, named approvers, four eyes), assignment, claims, manual tasks, and
another tenant's tasks answering 404."""

from __future__ import annotations

import pytest

from apps.approvals import services
from apps.approvals.models import Task
from apps.campaigns import services as campaign_services
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph, nodes_of, refreshed, start_campaign
from tests.campaigns.conftest import make_campaign


def open_task(run):
    with tenant_scope(run.tenant):
        return Task.objects.get(run=run, status="open")


@pytest.fixture
def waiting(acme, marketer, eager):
    """A live campaign started by the marketer whose run waits on an approval (any approver)."""
    campaign, run = start_campaign(acme, marketer, approval_graph({"due": "1d"}), eager)
    return campaign, run, open_task(run)


def test_end_to_end_an_approver_approves_through_the_api_and_the_run_completes(api, waiting, eager):
    campaign, run, task = waiting
    client = api("acme", "approver")
    inbox = client.get("/api/v1/tasks/", {"status": "open", "assignee": "me"})
    assert inbox.status_code == 200
    assert [row["id"] for row in inbox.json()["results"]] == [task.pk]
    row = inbox.json()["results"][0]
    assert row["count"] == 3 and row["campaign"] == {"id": campaign.pk, "name": campaign.name}
    assert row["assignment"]["kind"] == "role"

    detail = client.get(f"/api/v1/tasks/{task.pk}/").json()
    assert detail["snapshot"]["count"] == 3
    assert [r[0] for r in detail["snapshot"]["sample"]["rows"]] == ["k1", "k2", "k3"]
    assert detail["can"]["approve"] and detail["can"]["reject"] and not detail["can"]["complete"]

    with eager(execute=True):
        answer = client.post(f"/api/v1/tasks/{task.pk}/approve", {"comment": "Go"}, format="json")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["status"] == "approved" and body["decided_by"]["email"] == "approver@acme.test"
    assert [(d["verdict"], d["comment"], d["user"]["email"]) for d in body["decisions"]] == [
        ("approve", "Go", "approver@acme.test")]
    assert refreshed(run).status == "completed"
    assert nodes_of(run)["sent"].status == "done"
    # The audit trail says who and when.
    audit = api("acme", "admin").get("/api/v1/tasks/", {"status": "approved"}).json()["results"]
    assert audit[0]["decided_at"] and audit[0]["decided_by"]["email"] == "approver@acme.test"


def test_reject_needs_a_comment_and_takes_the_rejected_path(api, waiting, eager):
    campaign, run, task = waiting
    client = api("acme", "approver")
    missing = client.post(f"/api/v1/tasks/{task.pk}/reject", {}, format="json")
    assert missing.status_code == 400 and "comment" in missing.json()["error"]["fields"]
    blank = client.post(f"/api/v1/tasks/{task.pk}/reject", {"comment": "   "}, format="json")
    assert blank.status_code == 400 and "comment" in blank.json()["error"]["fields"]
    with eager(execute=True):
        answer = client.post(f"/api/v1/tasks/{task.pk}/reject", {"comment": "Too broad"}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "rejected"
    assert nodes_of(run)["dropped"].status == "done" and nodes_of(run)["sent"].status == "skipped"
    again = client.post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "task_closed"


@pytest.mark.parametrize("role", ["marketer", "viewer"])
def test_roles_without_tasks_decide_cannot_approve(api, waiting, role):
    campaign, run, task = waiting
    response = api("acme", role).post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert response.status_code == 403
    assert refreshed(task).status == "open"
    assert api("acme", role).get(f"/api/v1/tasks/{task.pk}/").json()["can"]["approve"] is False


def test_another_tenants_approver_gets_404_and_changes_nothing(api, waiting):
    campaign, run, task = waiting
    for role in ("approver", "admin"):
        client = api("globex", role)
        assert client.get(f"/api/v1/tasks/{task.pk}/").status_code == 404
        assert client.post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json").status_code == 404
        assert client.get("/api/v1/tasks/").json()["results"] == []
    assert refreshed(task).status == "open"


def test_four_eyes_the_starter_cannot_approve_unless_the_tenant_allows_it(acme, people, api, eager):
    admin = people["acme"]["admin"].user
    campaign, run = start_campaign(acme, admin, approval_graph(), eager)
    task = open_task(run)
    refused = api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert refused.status_code == 403 and "Four eyes" in refused.json()["error"]["message"]
    assert api("acme", "admin").get(f"/api/v1/tasks/{task.pk}/").json()["can"]["reason"].startswith("Four eyes")
    # The approver (someone else) may.
    assert api("acme", "approver").get(f"/api/v1/tasks/{task.pk}/").json()["can"]["approve"] is True
    # A small team turns the rule off.
    Tenant.objects.filter(pk=acme.pk).update(settings={**acme.settings, "allow_self_approval": True})
    with eager(execute=True):
        allowed = api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert allowed.status_code == 200 and allowed.json()["status"] == "approved"


def test_four_eyes_the_last_editor_of_the_version_cannot_approve(acme, people, api, eager):
    admin, marketer = people["acme"]["admin"].user, people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, {"nodes": [], "edges": []})
    with tenant_scope(acme), eager(execute=True):
        campaign_services.draft_update(tenant=acme, campaign=campaign, by=admin, graph=approval_graph())
        campaign_services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
        run = campaign_services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
    task = open_task(run)
    refused = api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert refused.status_code == 403 and "last edited" in refused.json()["error"]["message"]


def test_a_campaign_names_its_approvers_with_object_permissions(acme, people, api, waiting, eager):
    campaign, run, task = waiting
    admin_client = api("acme", "admin")
    # Only the tenant admin names approvers.
    assert api("acme", "marketer").put(f"/api/v1/campaigns/{campaign.pk}/approvers", {"users": []},
                                       format="json").status_code == 403
    named = admin_client.put(f"/api/v1/campaigns/{campaign.pk}/approvers", {"users": ["admin@acme.test"]},
                             format="json")
    assert named.status_code == 200 and named.json() == {"users": ["admin@acme.test"], "groups": []}
    refused = api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert refused.status_code == 403 and "names its approvers" in refused.json()["error"]["message"]

    # Named through a group instead: its members may, the admin (not in it) may not.
    group = admin_client.post("/api/v1/approver-groups/", {"name": "Brand", "members": ["approver@acme.test"]},
                              format="json")
    assert group.status_code == 201, group.json()
    assert admin_client.put(f"/api/v1/campaigns/{campaign.pk}/approvers", {"groups": ["Brand"]},
                            format="json").json() == {"users": [], "groups": ["Brand"]}
    assert admin_client.get(f"/api/v1/tasks/{task.pk}/").json()["can"]["approve"] is False
    with eager(execute=True):
        ok = api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json")
    assert ok.status_code == 200
    assert refreshed(run).status == "completed"


def test_approvers_must_be_members_who_can_approve(api, waiting):
    campaign, run, task = waiting
    client = api("acme", "admin")
    for body, field in (({"users": ["viewer@acme.test"]}, "users.0"), ({"users": ["admin@globex.test"]}, "users.0"),
                        ({"groups": ["Nope"]}, "groups.0"), ({"users": "admin@acme.test"}, "users")):
        response = client.put(f"/api/v1/campaigns/{campaign.pk}/approvers", body, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], (body, response.json())


def test_assign_to_a_user_or_a_group_and_claim(acme, people, api, waiting, eager):
    campaign, run, task = waiting
    marketer = api("acme", "marketer")
    to_user = marketer.post(f"/api/v1/tasks/{task.pk}/assign", {"user": "admin@acme.test"}, format="json")
    assert to_user.status_code == 200
    assert to_user.json()["assignment"]["kind"] == "user"
    assert to_user.json()["assignment"]["user"]["email"] == "admin@acme.test"
    # Now only the admin may answer it.
    assert api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json").status_code == 403
    assert api("acme", "approver").get("/api/v1/tasks/", {"assignee": "me", "status": "open"}).json()["results"] == []

    with tenant_scope(acme):
        services.approver_group_create(tenant=acme, name="Team", by=None, members=[
            people["acme"]["admin"].user.email, people["acme"]["approver"].user.email])
    to_group = marketer.post(f"/api/v1/tasks/{task.pk}/assign", {"group": "Team"}, format="json")
    assert to_group.status_code == 200 and to_group.json()["assignment"]["group"]["name"] == "Team"
    claim = api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/claim", {}, format="json")
    assert claim.status_code == 200
    assert claim.json()["assignment"]["kind"] == "user"
    assert claim.json()["assignment"]["user"]["email"] == "approver@acme.test"
    # Claimed: the admin, also in the group, may no longer answer it or claim it.
    assert api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json").status_code == 403
    assert api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/claim", {}, format="json").status_code == 403
    with eager(execute=True):
        assert api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/approve", {},
                                            format="json").status_code == 200
    assert refreshed(run).status == "completed"


def test_assign_refuses_bad_input_with_the_field(api, waiting):
    campaign, run, task = waiting
    client = api("acme", "marketer")
    cases = [
        ({}, "user"),
        ({"user": "approver@acme.test", "group": "Team"}, "group"),
        ({"user": "viewer@acme.test"}, "user"),          # a viewer cannot approve
        ({"user": "approver@globex.test"}, "user"),      # not a member of acme
        ({"user": "nobody@acme.test"}, "user"),
        ({"group": "No such group"}, "group"),
        ({"users": ["admin@acme.test"]}, "users"),       # several means at least two
        ({"users": "admin@acme.test"}, "users"),
    ]
    for body, field in cases:
        response = client.post(f"/api/v1/tasks/{task.pk}/assign", body, format="json")
        assert response.status_code == 400, (body, response.json())
        assert field in response.json()["error"]["fields"], (body, response.json())
    assert api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/assign", {"user": "admin@acme.test"},
                                        format="json").status_code == 403
    assert refreshed(task).assignment == "role"


def test_list_filters_and_their_errors(acme, people, api, waiting, eager):
    campaign, run, task = waiting
    other, other_run = start_campaign(acme, people["acme"]["marketer"].user,
                                      approval_graph({"title": "Second"}), eager)
    client = api("acme", "viewer")
    assert {r["id"] for r in client.get("/api/v1/tasks/").json()["results"]} == {task.pk, open_task(other_run).pk}
    assert [r["id"] for r in client.get("/api/v1/tasks/", {"campaign": campaign.pk}).json()["results"]] == [task.pk]
    assert client.get("/api/v1/tasks/", {"status": "approved,rejected"}).json()["results"] == []
    assert len(client.get("/api/v1/tasks/", {"status": "open", "kind": "approval"}).json()["results"]) == 2
    approver_id = people["acme"]["approver"].user.pk
    assert client.get("/api/v1/tasks/", {"assignee": approver_id}).json()["results"] == []
    for params, field in (({"status": "sleeping"}, "status"), ({"campaign": "x"}, "campaign"),
                          ({"assignee": "someone"}, "assignee"), ({"kind": "chore"}, "kind"),
                          ({"due_before": "tomorrow"}, "due_before"), ({"run": "-1"}, "run")):
        response = client.get("/api/v1/tasks/", params)
        assert response.status_code == 400 and field in response.json()["error"]["fields"], params


def test_manual_task_completed_through_the_api(acme, people, api, eager):
    marketer = people["acme"]["marketer"].user
    config = {"title": "Check the print file", "assign": {"user": "viewer@acme.test"}}
    campaign, run = start_campaign(acme, marketer, approval_graph(config, kind="manual_task"), eager)
    task = open_task(run)
    assert api("acme", "viewer").post(f"/api/v1/tasks/{task.pk}/approve", {}, format="json").status_code == 403
    wrong = api("acme", "admin").post(f"/api/v1/tasks/{task.pk}/complete", {}, format="json")
    assert wrong.status_code == 403
    with eager(execute=True):
        done = api("acme", "viewer").post(f"/api/v1/tasks/{task.pk}/complete", {"comment": "Checked"},
                                          format="json")
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert refreshed(run).status == "completed"


def test_complete_refuses_an_approval_and_approve_refuses_a_manual_task(api, waiting):
    campaign, run, task = waiting
    response = api("acme", "approver").post(f"/api/v1/tasks/{task.pk}/complete", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "wrong_kind"


def test_approver_groups_api(api):
    admin = api("acme", "admin")
    created = admin.post("/api/v1/approver-groups/", {"name": "Legal", "members": ["approver@acme.test"]},
                         format="json")
    assert created.status_code == 201
    gid = created.json()["id"]
    assert [m["email"] for m in created.json()["members"]] == ["approver@acme.test"]
    duplicate = admin.post("/api/v1/approver-groups/", {"name": "Legal"}, format="json")
    assert duplicate.status_code == 400 and "name" in duplicate.json()["error"]["fields"]
    stranger = admin.post("/api/v1/approver-groups/", {"name": "X", "members": ["admin@globex.test"]},
                          format="json")
    assert stranger.status_code == 400 and "members.0" in stranger.json()["error"]["fields"]
    changed = admin.put(f"/api/v1/approver-groups/{gid}/members", {"members": ["admin@acme.test"]}, format="json")
    assert [m["email"] for m in changed.json()["members"]] == ["admin@acme.test"]
    assert api("acme", "marketer").post("/api/v1/approver-groups/", {"name": "Y"}, format="json").status_code == 403
    assert api("globex", "admin").get(f"/api/v1/approver-groups/{gid}/").status_code == 404
    assert [g["name"] for g in api("acme", "viewer").get("/api/v1/approver-groups/").json()] == ["Legal"]
