"""Why / why not (apps/campaigns/why.py, GET /api/v1/runs/<id>/why): real runs through the engine
(Celery eager mode) over build audience → dedup → split → e-mail, sent live to a real SMTP server
on loopback, with records chosen to drop out at each place; a test run; a change of dimension;
purged runs; bad keys; other tenants and every role."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from psycopg import sql

from apps.campaigns import services
from apps.campaigns.models import NodeState, Run
from apps.campaigns.populations import drop_run_tables, table_ident
from apps.campaigns.why import run_why
from apps.profiles.services import profile_upsert
from apps.schemas.models import DataSchema, Field, Link, Record
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign
from tests.channels.conftest import smtp_ready, smtp_sink  # noqa: F401  (fixtures: SMTP on loopback)
from tests.conftest import ROLES

CONTENT = {"subject": "Hello {{ profile.first_name }}", "text": "Hi {{ profile.first_name }}"}

GRAPH = {
    "nodes": [
        # Started by an API trigger: a live one-off started by hand may wait for a send confirmation.
        {"id": "start", "type": "scheduler", "config": {"mode": "api"}},
        {"id": "build", "type": "build_audience", "config": {"filter": {"field": "country", "op": "eq",
                                                                        "value": "FR"}}},
        {"id": "dedup", "type": "dedup", "config": {"fields": ["email"], "ignore_case": True, "rule": "smallest",
                                                    "by": "id"}},
        {"id": "split", "type": "split", "config": {
            "subsets": [{"code": "main", "label": "Main group",
                         "filter": {"field": "first_name", "op": "ne", "value": "Other"}}],
            "complement": True}},
        {"id": "mail", "type": "email", "config": {"content": CONTENT}},
        {"id": "thanks", "type": "end"},
        {"id": "rest", "type": "end"},
    ],
    "edges": [
        {"from": "start", "port": "out", "to": "build"}, {"from": "build", "port": "out", "to": "dedup"},
        {"from": "dedup", "port": "out", "to": "split"}, {"from": "split", "port": "main", "to": "mail"},
        {"from": "split", "port": "complement", "to": "rest"}, {"from": "mail", "port": "sent", "to": "thanks"},
    ],
}


def add(tenant, key, **values):
    profile_upsert(tenant=tenant, values={"id": key, "country": "FR", "first_name": key.title(),
                                          "email": f"{key}@example.test", **values}, by=None)


@pytest.fixture
def people_data(acme):
    """One record for each place a record can drop out of GRAPH, and one that is sent."""
    add(acme, "sent1")
    add(acme, "german", country="DE")                   # not in the audience
    add(acme, "adam", email="shared@example.test")      # kept: smallest id of its e-mail
    add(acme, "zoe", email="SHARED@example.test ")      # removed as adam's duplicate
    add(acme, "other", first_name="Other")              # in no subset: the complement
    add(acme, "optout", email_opt_in=False)             # excluded at the e-mail for consent
    add(acme, "noaddr", email="")                       # excluded: no address


def start(acme, people, eager, graph, *, test=False):
    marketer = people["acme"]["marketer"].user
    campaign = make_campaign(acme, marketer, graph)
    with tenant_scope(acme), eager(execute=True):
        if test:
            run = services.campaign_test(tenant=acme, campaign=campaign, by=marketer)
        else:
            services.campaign_publish(tenant=acme, campaign=campaign, by=marketer)
            services.campaign_start(tenant=acme, campaign=campaign, by=marketer)
            run = services.campaign_trigger(tenant=acme, campaign=campaign, by=marketer)
    with tenant_scope(acme):
        run.refresh_from_db()
    assert run.status == "completed", run.error
    return run


@pytest.fixture
def live_run(acme, people, eager, smtp_ready, people_data):  # noqa: F811
    return start(acme, people, eager, GRAPH)


def why(acme, run, key):
    with tenant_scope(acme):
        run = Run.objects.select_related("campaign").get(pk=run.pk)
        answer = run_why(tenant=acme, run=run, key=key)
    return answer, {n["node"]: n for n in answer["nodes"]}


def statuses(nodes):
    return {nid: n["status"] for nid, n in nodes.items()}


# --- The walk -------------------------------------------------------------------------------------


def test_sent_record_passes_every_activity_and_the_ledger_says_sent(acme, live_run, smtp_ready):  # noqa: F811
    answer, nodes = why(acme, live_run, "sent1")
    assert [n["node"] for n in answer["nodes"]] == ["start", "build", "dedup", "split", "mail", "rest", "thanks"]
    assert statuses(nodes) == {"start": "passed", "build": "passed", "dedup": "passed", "split": "passed",
                               "mail": "passed", "thanks": "passed", "rest": "not_reached"}
    assert nodes["split"]["ports"] == ["main"] and nodes["split"]["reason"] == "In subset Main group."
    assert nodes["mail"]["ports"] == ["sent"]
    assert nodes["mail"]["reason"] == "Sent to sent1@example.test."
    assert nodes["mail"]["details"]["message"]["status"] == "sent"
    assert nodes["rest"]["reason"] == "Not in the population that arrived here (from split)."
    assert answer["summary"] == "Passed through 6 activities without dropping out."
    assert any(m.rcpt_tos == ["sent1@example.test"] for m in smtp_ready.messages)
    # One lookup per working table (the Fork-free graph has one per port), plus the ledger.
    assert answer["lookups"] <= 9


def test_not_in_the_audience(acme, live_run):
    answer, nodes = why(acme, live_run, "german")
    assert nodes["build"]["status"] == "dropped"
    assert nodes["build"]["reason"] == "Not selected: the record does not match the audience's filter."
    assert nodes["build"]["details"]["record_exists"] is True
    assert {nid for nid, s in statuses(nodes).items() if s == "not_reached"} == {"dedup", "split", "mail", "thanks",
                                                                                   "rest"}
    assert answer["summary"].startswith("Dropped at Build audience (build): Not selected")


def test_unknown_key_says_no_such_record(acme, live_run):
    _, nodes = why(acme, live_run, "ghost")
    assert nodes["build"]["status"] == "dropped"
    assert nodes["build"]["reason"] == "No record of profile has the key 'ghost'."


def test_removed_as_duplicate_names_the_kept_record(acme, live_run):
    answer, nodes = why(acme, live_run, "zoe")
    assert nodes["build"]["status"] == "passed"
    assert nodes["dedup"]["status"] == "dropped" and nodes["dedup"]["ports"] == []
    assert nodes["dedup"]["details"]["kept"] == ["adam"]
    assert nodes["dedup"]["reason"] == "Removed as a duplicate: adam (same email) was kept instead."
    assert statuses(nodes)["split"] == statuses(nodes)["mail"] == "not_reached"
    _, kept = why(acme, live_run, "adam")
    assert kept["dedup"]["status"] == "passed" and kept["mail"]["status"] == "passed"


def test_in_the_complement_of_the_split(acme, live_run):
    _, nodes = why(acme, live_run, "other")
    assert nodes["split"]["status"] == "dropped"
    assert nodes["split"]["ports"] == ["complement"]
    assert nodes["split"]["reason"] == "In no subset: it went to the complement."
    assert nodes["rest"]["status"] == "passed" and nodes["rest"]["reason"] == "End of the flow."
    assert nodes["mail"]["status"] == "not_reached"


@pytest.mark.parametrize(("key", "reason", "text"), [
    ("optout", "no_consent", "Excluded: No consent (opted out or unsubscribed)."),
    ("noaddr", "no_address", "Excluded: No address."),
])
def test_excluded_at_the_email_with_the_ledgers_reason(acme, live_run, key, reason, text):
    answer, nodes = why(acme, live_run, key)
    mail = nodes["mail"]
    assert mail["status"] == "dropped" and mail["ports"] == ["excluded"]
    assert mail["reason"] == text and mail["details"]["exclusion_reason"] == reason
    assert mail["details"]["message"]["status"] == "excluded"
    assert nodes["thanks"]["status"] == "not_reached"
    assert answer["summary"] == f"Dropped at E-mail (mail): {text}"


def test_test_run_classifies_the_record_again(acme, people, eager, people_data):
    run = start(acme, people, eager, GRAPH, test=True)
    _, nodes = why(acme, run, "optout")
    assert nodes["mail"]["status"] == "dropped"
    assert nodes["mail"]["reason"] == ("Would be excluded: No consent (opted out or unsubscribed) "
                                       "(test mode; as the data stands now).")
    _, nodes = why(acme, run, "sent1")
    assert nodes["mail"]["status"] == "passed"
    assert nodes["mail"]["reason"] == "Would be sent (test mode: nothing is sent)."


def test_change_of_dimension_is_followed_when_it_leads_to_one_record(acme, people, eager):
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
        order = DataSchema.objects.create(name="purchase", label="Purchases", primary_key="id")
        for position, name in enumerate(["id", "profile_id"]):
            Field.objects.create(schema=order, name=name, type="string", position=position)
        Link.objects.create(schema=profile, name="purchases", target=order, kind="one_to_many",
                            source_field="id", target_field="profile_id")
        Link.objects.create(schema=order, name="buyer", target=profile, kind="many_to_one",
                            source_field="profile_id", target_field="id")
        for key in ("ann", "bob", "carl"):
            Record.objects.create(schema=profile, key=key, attributes={"id": key, "email": f"{key}@example.test"})
        for key, owner in (("o1", "ann"), ("o2", "ann"), ("o3", "bob")):
            Record.objects.create(schema=order, key=key, attributes={"id": key, "profile_id": owner})
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "people", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "orders", "type": "change_dimension", "config": {"link": "purchases"}},
                  {"id": "buyers", "type": "change_dimension", "config": {"link": "buyer"}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "people"}, {"from": "people", "port": "out", "to": "orders"},
                  {"from": "orders", "port": "out", "to": "buyers"}, {"from": "buyers", "port": "out", "to": "end"}],
    }
    run = start(acme, people, eager, graph, test=True)
    # bob has one purchase: followed as o3, then back to bob.
    _, nodes = why(acme, run, "bob")
    assert nodes["orders"]["status"] == "passed" and nodes["orders"]["key"] == "bob"
    assert "following the key 'o3'" in nodes["orders"]["reason"]
    assert nodes["buyers"]["key"] == "o3" and nodes["buyers"]["dimension"] == "purchase"
    assert "following the key 'bob'" in nodes["buyers"]["reason"]
    assert nodes["end"]["status"] == "passed" and nodes["end"]["key"] == "bob"
    # ann has two: the walk stops with both keys named.
    answer, nodes = why(acme, run, "ann")
    assert nodes["orders"]["status"] == "unknown"
    assert "several records ('o1', 'o2')" in nodes["orders"]["reason"]
    # Back in the campaign's dimension, ann is among the buyers again (found by her own key).
    assert nodes["buyers"]["status"] == "passed" and nodes["buyers"]["key"] == "ann"
    assert nodes["buyers"]["reason"].startswith("The population becomes records of profile here")
    assert answer["summary"].startswith("Followed up to Change dimension (orders)")
    # carl has none: he drops out where the dimension changes.
    _, nodes = why(acme, run, "carl")
    assert nodes["orders"]["status"] == "dropped"
    assert nodes["orders"]["reason"].startswith("The link purchases reaches no record of purchase")
    assert nodes["buyers"]["status"] == nodes["end"]["status"] == "not_reached"


def test_single_output_split_names_the_segment(acme, people, eager, people_data):
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "build", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "split", "type": "split", "config": {"single_output": True, "subsets": [
                      {"code": "adams", "label": "Adams", "filter": {"field": "first_name", "op": "eq",
                                                                     "value": "Adam"}},
                      {"code": "others"}]}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "build"}, {"from": "build", "port": "out", "to": "split"},
                  {"from": "split", "port": "out", "to": "end"}],
    }
    run = start(acme, people, eager, graph, test=True)
    _, nodes = why(acme, run, "adam")
    assert nodes["split"]["reason"] == "In subset Adams."
    assert nodes["split"]["details"]["columns"]["out"] == {"segment_code": "adams"}
    _, nodes = why(acme, run, "zoe")
    assert nodes["split"]["reason"] == "In subset others." and nodes["end"]["status"] == "passed"


def test_exclusion_names_the_population_that_removed_the_record(acme, people, eager, people_data):
    graph = {
        "nodes": [{"id": "start", "type": "scheduler", "config": {"mode": "asap"}},
                  {"id": "fork", "type": "fork", "config": {"branches": [{"port": "all"}, {"port": "bad"}]}},
                  {"id": "everyone", "type": "build_audience", "config": {"filter": {}}},
                  {"id": "blocked", "type": "build_audience", "config": {"filter": {
                      "field": "country", "op": "eq", "value": "DE"}}},
                  {"id": "minus", "type": "combine", "config": {"operation": "exclusion", "primary": "everyone",
                                                                "complement": True}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "port": "out", "to": "fork"}, {"from": "fork", "port": "all", "to": "everyone"},
                  {"from": "fork", "port": "bad", "to": "blocked"}, {"from": "everyone", "port": "out", "to": "minus"},
                  {"from": "blocked", "port": "out", "to": "minus"}, {"from": "minus", "port": "out", "to": "end"}],
    }
    run = start(acme, people, eager, graph, test=True)
    _, nodes = why(acme, run, "german")
    assert nodes["blocked"]["status"] == nodes["everyone"]["status"] == "passed"
    assert nodes["minus"]["status"] == "dropped" and nodes["minus"]["ports"] == ["complement"]
    assert nodes["minus"]["reason"] == ("Excluded: it is also in the population from blocked; it went to the "
                                        "complement.")
    assert nodes["minus"]["details"]["arrived_from"] == ["everyone", "blocked"]
    assert nodes["end"]["status"] == "not_reached"
    _, nodes = why(acme, run, "sent1")
    assert nodes["blocked"]["status"] == "dropped" and nodes["minus"]["status"] == "passed"
    assert nodes["end"]["status"] == "passed"


def test_one_lookup_per_working_table_at_most(acme, live_run):
    from django.db import connection as db
    from django.test.utils import CaptureQueriesContext

    with tenant_scope(acme):
        run = Run.objects.select_related("campaign").get(pk=live_run.pk)
        tables = {p["table"] for n in run.nodes.all() for p in (n.outputs or {}).values() if p.get("table")}
        for key in ("sent1", "german", "other", "zoe"):
            with CaptureQueriesContext(db) as queries:
                answer = run_why(tenant=acme, run=run, key=key)
            reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT * FROM \"campaign_work\"")]
            # Each table is read at most once; a branch that lost the record is not read again.
            assert len(reads) == len(set(reads)) <= len(tables), (key, reads)
            assert answer["lookups"] <= len(tables) + 2


def test_purged_run_answers_409(acme, live_run, api):
    with tenant_scope(acme):
        Run.objects.filter(pk=live_run.pk).update(finished_at=timezone.now() - dt.timedelta(days=40))
    assert services.dangerously_purge_expired_runs() == 1
    response = api("acme", "viewer").get(f"/api/v1/runs/{live_run.pk}/why", {"key": "sent1"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "purged"


def test_tables_gone_without_purge_mark_answers_409(acme, live_run, api):
    with connection.cursor() as cursor:
        assert drop_run_tables(cursor, live_run.pk) > 0
    response = api("acme", "viewer").get(f"/api/v1/runs/{live_run.pk}/why", {"key": "sent1"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "purged"


# --- The API --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_of_the_tenant_may_ask(acme, live_run, api, role):
    response = api("acme", role).get(f"/api/v1/runs/{live_run.pk}/why", {"key": "optout"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key"] == "optout" and body["run"] == live_run.pk and body["dimension"] == "profile"
    mail = next(n for n in body["nodes"] if n["node"] == "mail")
    assert mail == {**mail, "status": "dropped", "type": "email", "label": "E-mail", "ports": ["excluded"],
                    "node_status": "done"}
    assert mail["details"]["exclusion_reason"] == "no_consent"


@pytest.mark.parametrize("role", ROLES)
def test_another_tenant_gets_404(live_run, api, role):
    response = api("globex", role).get(f"/api/v1/runs/{live_run.pk}/why", {"key": "sent1"})
    assert response.status_code == 404
    assert b"sent1" not in response.content


@pytest.mark.parametrize(("params", "message"), [
    ({}, "This field is required."),
    ({"key": "   "}, "This field is required."),
    ({"key": "x" * 256}, "At most 255 characters."),
])
def test_bad_key_is_400_naming_the_field(live_run, api, params, message):
    response = api("acme", "marketer").get(f"/api/v1/runs/{live_run.pk}/why", params)
    assert response.status_code == 400
    assert message in str(response.json())
    assert "key" in str(response.json())


def test_tables_emptied_by_a_crash_answer_409_lost(acme, live_run, api):
    """What crash recovery does to an unlogged working table: its rows are gone. The answer says
    so rather than telling that every record was dropped."""
    with tenant_scope(acme):
        state = NodeState.objects.get(run=live_run, node_id="build")
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("TRUNCATE {}").format(table_ident(state.outputs["out"]["table"]))
                       .as_string(cursor.connection))
    response = api("acme", "viewer").get(f"/api/v1/runs/{live_run.pk}/why", {"key": "sent1"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "lost"
