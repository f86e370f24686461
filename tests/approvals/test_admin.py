"""Admin-driven assignment: a tenant admin lists their tenant's open tasks with filters and
assigns them in bulk (to a user, to a group) or extends their due date; other roles are refused;
operators see every tenant."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from apps.approvals import services
from apps.approvals.models import ApproverGroup, Task
from apps.campaigns.models import NodeState
from apps.tenants.models import AuditEntry
from apps.tenants.scoping import tenant_scope
from tests.approvals.conftest import approval_graph, refreshed, start_campaign

URL = "/admin/approvals/task/"


def login(user):
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.fixture
def tasks(acme, globex, people, eager):
    """Two open acme tasks, one approved acme task, one open globex task."""
    made = {}
    for tenant in (acme, globex):
        marketer = people[tenant.slug]["marketer"].user
        for name in ("first", "second") if tenant == acme else ("theirs",):
            campaign, run = start_campaign(tenant, marketer, approval_graph({"due": "1d", "title": name}), eager)
            with tenant_scope(tenant):
                made[name] = Task.objects.get(run=run)
    campaign, run = start_campaign(acme, people["acme"]["marketer"].user, approval_graph({"title": "done"}), eager)
    with tenant_scope(acme), eager(execute=True):
        made["done"] = services.task_approve(tenant=acme, task=Task.objects.get(run=run),
                                             by=people["acme"]["approver"].user)
    return made


def shown(page):
    return {t.title for t in page.context["cl"].result_list}


def test_tenant_admin_sees_their_open_tasks_with_filters(people, tasks):
    client = login(people["acme"]["admin"].user)
    page = client.get(URL)
    assert page.status_code == 200
    assert shown(page) == {"first", "second"}          # open ones, this tenant's only
    assert shown(client.get(URL, {"status": "all"})) == {"first", "second", "done"}
    assert shown(client.get(URL, {"status": "approved"})) == {"done"}
    assert shown(client.get(URL, {"campaign": tasks["first"].campaign_id})) == {"first"}
    assert shown(client.get(URL, {"due": "24h"})) == {"first", "second"}
    assert shown(client.get(URL, {"due": "overdue"})) == set()
    body = page.content.decode()
    assert "theirs" not in body and "globex" not in body.lower()
    # The campaign filter offers this tenant's campaigns only.
    campaign_choices = {c["display"] for spec in page.context["cl"].filter_specs if spec.title == "campaign"
                        for c in spec.choices(page.context["cl"])}
    assert not any("globex" in str(c).lower() for c in campaign_choices)
    # Another tenant's task is out of reach.
    assert client.get(f"{URL}{tasks['theirs'].pk}/change/").status_code in (302, 404)
    # Task fields are read-only: changes go through the actions.
    detail = client.get(f"{URL}{tasks['first'].pk}/change/")
    assert detail.status_code == 200 and 'name="title"' not in detail.content.decode()


@pytest.mark.parametrize("role", ["marketer", "approver", "viewer"])
def test_other_roles_cannot_use_the_tasks_admin(people, tasks, role):
    response = login(people["acme"][role].user).get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_operator_sees_every_tenant(operator, tasks):
    assert shown(login(operator).get(URL)) == {"first", "second", "theirs"}


def test_bulk_assign_to_user(acme, people, tasks):
    client = login(people["acme"]["admin"].user)
    ids = [tasks["first"].pk, tasks["second"].pk]
    form = client.post(URL, {"action": "assign_to_user", "_selected_action": ids})
    assert form.status_code == 200 and "Assign to a user" in form.content.decode()
    choices = {u.email for u in form.context["form"].fields["user"].queryset}
    assert "approver@acme.test" in choices and not any(e.endswith("@globex.test") for e in choices)
    # A user of another tenant is not a valid choice.
    stranger = people["globex"]["approver"].user
    refused = client.post(URL, {"action": "assign_to_user", "_selected_action": ids, "apply": "1",
                                "user": stranger.pk})
    assert refused.status_code == 200 and refused.context["form"].errors["user"]
    approver = people["acme"]["approver"].user
    done = client.post(URL, {"action": "assign_to_user", "_selected_action": ids, "apply": "1",
                             "user": approver.pk}, follow=True)
    assert done.status_code == 200 and "2 task(s) done" in done.content.decode()
    for name in ("first", "second"):
        task = refreshed(tasks[name])
        assert task.assignment == "user" and task.assignee_user == approver
    with tenant_scope(acme):
        entry = AuditEntry.objects.filter(action="task.assign", object_id=str(tasks["first"].pk)).get()
    assert entry.actor == people["acme"]["admin"].user and entry.data["to"] == "approver@acme.test"


def test_bulk_assign_to_user_reports_who_cannot_approve(people, tasks):
    client = login(people["acme"]["admin"].user)
    viewer = people["acme"]["viewer"].user
    response = client.post(URL, {"action": "assign_to_user", "_selected_action": [tasks["first"].pk],
                                 "apply": "1", "user": viewer.pk}, follow=True)
    assert "not done for #" in response.content.decode() and "cannot approve" in response.content.decode()
    assert refreshed(tasks["first"]).assignment == "role"


def test_bulk_assign_to_group(acme, people, tasks):
    with tenant_scope(acme):
        group = services.approver_group_create(tenant=acme, name="Brand", members=["approver@acme.test"], by=None)
    with tenant_scope(people["globex"]["admin"].tenant):
        theirs = services.approver_group_create(tenant=people["globex"]["admin"].tenant, name="Theirs", by=None)
    client = login(people["acme"]["admin"].user)
    form = client.post(URL, {"action": "assign_to_group", "_selected_action": [tasks["first"].pk]})
    assert set(form.context["form"].fields["group"].queryset) == {group}
    bad = client.post(URL, {"action": "assign_to_group", "_selected_action": [tasks["first"].pk], "apply": "1",
                            "group": theirs.pk})
    assert bad.context["form"].errors["group"]
    client.post(URL, {"action": "assign_to_group", "_selected_action": [tasks["first"].pk], "apply": "1",
                      "group": group.pk})
    assert refreshed(tasks["first"]).assignee_group == group


def test_bulk_extend_due_date_moves_the_wake_up_of_the_waiting_node(acme, people, tasks):
    client = login(people["acme"]["admin"].user)
    before = tasks["first"].due_at
    invalid = client.post(URL, {"action": "extend_due_date", "_selected_action": [tasks["first"].pk],
                                "apply": "1", "days": "0", "hours": "0"})
    assert invalid.status_code == 200 and invalid.context["form"].errors
    client.post(URL, {"action": "extend_due_date", "_selected_action": [tasks["first"].pk], "apply": "1",
                      "days": "2", "hours": "3"})
    task = refreshed(tasks["first"])
    assert task.due_at == before + dt.timedelta(days=2, hours=3)
    with tenant_scope(acme):
        node = NodeState.objects.get(run=task.run, node_id="approve")
    assert node.status == "waiting" and node.wake_at == task.due_at


def test_admin_creates_an_approver_group(acme, people):
    client = login(people["acme"]["admin"].user)
    approver = people["acme"]["approver"].user
    response = client.post("/admin/approvals/approvergroup/add/", {"name": "Legal", "members": [approver.pk]})
    assert response.status_code == 302, response.content.decode()[:2000]
    with tenant_scope(acme):
        group = ApproverGroup.objects.get(name="Legal")
    assert list(group.group.user_set.all()) == [approver]
    duplicate = client.post("/admin/approvals/approvergroup/add/", {"name": "Legal"})
    assert duplicate.status_code == 200 and duplicate.context["adminform"].form.errors["name"]
