"""Schedules in the Django admin: a tenant admin sees their tenant's schedules only and can pause
or resume all of them at once; other roles cannot use the admin; operators see every tenant."""

from __future__ import annotations

import datetime as dt

from django.test import Client

from apps.campaigns.models import Schedule
from apps.tenants.models import Tenant
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "daily", "times": ["09:00"]}}
GRAPH = {"nodes": [START, {"id": "end", "type": "end"}], "edges": [{"from": "start", "port": "out", "to": "end"}]}


def login(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def schedule_for(tenant, person) -> Schedule:
    campaign = make_campaign(tenant, person.user, GRAPH, name=f"Daily {tenant.slug}")
    return Schedule.dangerously_unscoped.create(
        tenant=tenant, campaign=campaign, node_id="start", spec=START["config"], time_zone="UTC",
        next_fire_at=dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC))


def test_tenant_admin_sees_and_pauses_their_schedules_only(acme, globex, people, operator):
    ours, theirs = schedule_for(acme, people["acme"]["marketer"]), schedule_for(globex, people["globex"]["marketer"])
    client = login(people["acme"]["admin"].user)
    page = client.get("/admin/campaigns/schedule/")
    assert page.status_code == 200
    assert [s.pk for s in page.context["cl"].result_list] == [ours.pk]
    assert client.get(f"/admin/campaigns/schedule/{theirs.pk}/change/").status_code in (302, 404)

    response = client.post("/admin/campaigns/schedule/", {"action": "pause_tenant_schedules",
                                                          "_selected_action": [ours.pk, theirs.pk]})
    assert response.status_code == 302
    assert Tenant.objects.get(pk=acme.pk).settings["schedules_paused"] is True
    assert "schedules_paused" not in (Tenant.objects.get(pk=globex.pk).settings or {})  # not selectable by acme
    assert "paused" in client.get("/admin/campaigns/schedule/").content.decode()
    client.post("/admin/campaigns/schedule/", {"action": "resume_tenant_schedules", "_selected_action": [ours.pk]})
    assert Tenant.objects.get(pk=acme.pk).settings["schedules_paused"] is False

    for role in ("marketer", "approver", "viewer"):
        response = login(people["acme"][role].user).get("/admin/campaigns/schedule/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    everyone = login(operator).get("/admin/campaigns/schedule/")
    assert {s.pk for s in everyone.context["cl"].result_list} == {ours.pk, theirs.pk}
