"""The approver's portal: the inbox, the task page with its snapshot and the graph, approve or
reject with a comment (the run goes on), claim, and the signed link from the e-mails."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.approvals import notifications, services
from apps.approvals.models import Task
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph, nodes_of, refreshed, start_campaign
from tests.factories import MembershipFactory


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def waiting(acme, marketer, eager):
    campaign, run = start_campaign(acme, marketer, approval_graph({"due": "1d", "title": "Spring launch"}), eager)
    with tenant_scope(acme):
        return campaign, run, Task.objects.get(run=run)


def test_inbox_lists_the_tasks_waiting_on_me(people, waiting):
    campaign, run, task = waiting
    page = client_for(people["acme"]["approver"].user).get("/tasks/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Spring launch" in body and campaign.name in body and f'data-task="{task.pk}"' in body
    # A viewer's "waiting on me" is empty; "all open" shows the task.
    viewer = client_for(people["acme"]["viewer"].user)
    assert f'data-task="{task.pk}"' not in viewer.get("/tasks/").content.decode()
    assert f'data-task="{task.pk}"' in viewer.get("/tasks/?tab=open").content.decode()
    # Another tenant's people never see it.
    assert "Spring launch" not in client_for(people["globex"]["approver"].user).get("/tasks/?tab=open"
                                                                                     ).content.decode()


def test_task_page_shows_the_snapshot_and_the_waiting_node(people, waiting):
    campaign, run, task = waiting
    page = client_for(people["acme"]["approver"].user).get(f"/tasks/{task.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="snapshot-count">3<' in body
    for key in ("k1", "k2", "k3"):
        assert f"<td>{key}</td>" in body
    assert 'data-waiting-node="approve"' in body
    assert re.search(r'class="gnode gnode--waiting[^"]*" data-node="approve"', body)  # highlighted
    assert 'data-action="approve"' in body and 'data-action="reject"' in body
    # The marketer who started the run sees why they cannot decide.
    mine = client_for(people["acme"]["marketer"].user).get(f"/tasks/{task.pk}/").content.decode()
    assert 'data-action="approve"' not in mine and 'data-testid="cannot-decide"' in mine


def test_approve_with_a_comment_and_the_run_goes_on(people, waiting, eager):
    campaign, run, task = waiting
    client = client_for(people["acme"]["approver"].user)
    with eager(execute=True):
        response = client.post(f"/tasks/{task.pk}/approve/", {"comment": "Fine by me"}, follow=True)
    assert response.status_code == 200 and "Approved: the campaign goes on." in response.content.decode()
    task = refreshed(task)
    assert task.status == "approved" and task.comment == "Fine by me"
    assert refreshed(run).status == "completed" and nodes_of(run)["sent"].status == "done"
    assert "Fine by me" in response.content.decode()  # the decisions list


def test_reject_needs_a_comment(people, waiting, eager):
    campaign, run, task = waiting
    client = client_for(people["acme"]["approver"].user)
    response = client.post(f"/tasks/{task.pk}/reject/", {"comment": ""}, follow=True)
    assert "A rejection needs a comment." in response.content.decode()
    assert refreshed(task).status == "open"
    with eager(execute=True):
        client.post(f"/tasks/{task.pk}/reject/", {"comment": "Wrong segment"})
    assert refreshed(task).status == "rejected" and nodes_of(run)["dropped"].status == "done"


def test_the_starter_and_other_tenants_cannot_decide(people, waiting):
    campaign, run, task = waiting
    response = client_for(people["acme"]["marketer"].user).post(f"/tasks/{task.pk}/approve/", {}, follow=True)
    assert "permission" in response.content.decode().lower() or "role" in response.content.decode().lower()
    assert client_for(people["globex"]["approver"].user).get(f"/tasks/{task.pk}/").status_code == 404
    assert client_for(people["globex"]["approver"].user).post(f"/tasks/{task.pk}/approve/").status_code == 404
    assert refreshed(task).status == "open"


def test_claim_a_group_task(acme, people, marketer, eager):
    with tenant_scope(acme):
        services.approver_group_create(tenant=acme, name="Team", by=None,
                                       members=["approver@acme.test", "admin@acme.test"])
    campaign, run = start_campaign(acme, marketer, approval_graph({"assign": {"group": "Team"}}), eager)
    with tenant_scope(acme):
        task = Task.objects.get(run=run)
    client = client_for(people["acme"]["admin"].user)
    assert 'data-action="claim"' in client.get(f"/tasks/{task.pk}/").content.decode()
    client.post(f"/tasks/{task.pk}/claim/")
    assert refreshed(task).assignee_user == people["acme"]["admin"].user


def test_signed_link_asks_for_login_then_opens_the_task_in_its_workspace(people, globex, waiting):
    campaign, run, task = waiting
    token = notifications.task_link_token(task)
    anonymous = Client().get(f"/tasks/link/{token}/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    # A person of both tenants, currently working in globex, lands in acme on the task.
    approver = people["acme"]["approver"].user
    MembershipFactory(tenant=globex, user=approver, role="approver")
    client = client_for(approver)
    session = client.session
    session["tenant_id"] = globex.pk
    session.save()
    response = client.get(f"/tasks/link/{token}/")
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.pk}/"
    assert client.get(response["Location"]).status_code == 200
    # Someone outside the tenant gets 404; a forged link leads to the inbox.
    assert client_for(people["globex"]["admin"].user).get(f"/tasks/link/{token}/").status_code == 404
    assert client.get(f"/tasks/link/{token[:-3]}abc/")["Location"] == "/tasks/"


def test_marketer_reassigns_from_the_task_page(acme, people, waiting):
    campaign, run, task = waiting
    with tenant_scope(acme):
        group = services.approver_group_create(tenant=acme, name="Legal", by=None, members=["approver@acme.test"])
    client = client_for(people["acme"]["marketer"].user)
    page = client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'data-testid="assign-form"' in page
    assert "approver@acme.test (approver)" in page and "viewer@acme.test" not in page and "group Legal" in page
    response = client.post(f"/tasks/{task.pk}/assign/", {"assignee": f"group:{group.pk}"}, follow=True)
    assert "Task reassigned" in response.content.decode()
    assert refreshed(task).assignee_group == group
    bad = client.post(f"/tasks/{task.pk}/assign/", {"assignee": "nobody"}, follow=True)
    assert "Choose a person or a group." in bad.content.decode()
    viewer = people["acme"]["viewer"].user
    refused = client.post(f"/tasks/{task.pk}/assign/", {"assignee": f"user:{viewer.pk}"}, follow=True)
    assert "cannot approve" in refused.content.decode()
    assert refreshed(task).assignee_group == group
    # An approver cannot reassign (no form, and the action is refused).
    approver = client_for(people["acme"]["approver"].user)
    assert 'data-testid="assign-form"' not in approver.get(f"/tasks/{task.pk}/").content.decode()
    approver.post(f"/tasks/{task.pk}/assign/", {"assignee": f"user:{viewer.pk}"})
    assert refreshed(task).assignee_group == group


def test_the_navigation_counts_the_tasks_waiting_on_me_and_marks_the_tasks_section(people, waiting):
    badge = re.compile(r'<span class="nav__badge" aria-label="(\d+) open tasks? for you">')
    approver_page = client_for(people["acme"]["approver"].user).get("/").content.decode()
    assert badge.findall(approver_page) == ["1"]
    tasks_page = client_for(people["acme"]["approver"].user).get("/tasks/").content.decode()
    assert re.search(r'<a class="nav__link is-current" href="/tasks/" aria-current="page">', tasks_page)
    # Nothing waits on the viewer, nor on another tenant's approver.
    assert not badge.findall(client_for(people["acme"]["viewer"].user).get("/").content.decode())
    assert not badge.findall(client_for(people["globex"]["approver"].user).get("/").content.decode())
