"""Working tables (apps/campaigns/populations.py): unlogged, made in the node's transaction with its
settings, refused when a crash of the database server has emptied them, and made crash-safe
when the node reading them waits."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from apps.activities.base import Column, NodeError, Population
from apps.campaigns.populations import PopulationStore, table_ident
from apps.profiles.services import profile_upsert
from tests.campaigns.test_engine import graph, nodes_of, start

SELECT = "SELECT 'k' || n, n FROM generate_series(1, 5) AS n"


def store() -> PopulationStore:
    return PopulationStore(cursor=connection.cursor(), run_id=424_242, node_pk=7)


@pytest.mark.django_db
def test_a_population_is_an_unlogged_table_made_with_the_node_settings_and_counted_by_its_statement():
    with transaction.atomic():
        population = store().create("out", SELECT, columns=[Column("n", "bigint")], dimension="profile")
        with connection.cursor() as cursor:
            cursor.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                           [f"campaign_work.{population.table}"])
            assert cursor.fetchone() == ("u",)
            cursor.execute("SELECT current_setting('work_mem')")
            assert cursor.fetchone()[0] == settings.POPULATION_WORK_MEM
            cursor.execute(sql.SQL("SELECT count(*), sum(n) FROM {}").format(table_ident(population.table))
                           .as_string(connection.connection))
            assert cursor.fetchone() == (5, 15)
    assert population.count == 5


@pytest.mark.django_db
def test_planner_settings_hold_for_one_statement():
    with transaction.atomic():
        node = store()
        node.create("out", "SELECT current_setting('enable_indexscan') || current_setting('enable_seqscan')",
                    planner={"enable_indexscan": "off"})
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT key FROM {}").format(table_ident(node.table_name("out")))
                           .as_string(connection.connection))
            assert cursor.fetchone() == ("offon",)
            cursor.execute("SELECT current_setting('enable_indexscan')")
            assert cursor.fetchone() == ("on",)


@pytest.mark.django_db
def test_a_population_emptied_by_a_crash_is_refused():
    with transaction.atomic():
        kept = store().create("out", SELECT, dimension="profile")
        empty = store().create("none", "SELECT 'x' WHERE FALSE", dimension="profile")
        reader = PopulationStore(cursor=connection.cursor(), run_id=424_242, node_pk=8)
        reader.check_inputs([kept, empty])  # an empty population is not a lost one
        # what PostgreSQL's crash recovery does to an unlogged table: its rows are gone
        connection.cursor().execute(sql.SQL("TRUNCATE {}").format(table_ident(kept.table))
                                    .as_string(connection.connection))
        with pytest.raises(NodeError, match="lost in a restart of the database server"):
            reader.check_inputs([kept])


def _persistence(tables: list[str]) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname, c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'campaign_work' AND c.relname = ANY(%s)", [tables])
        return dict(cursor.fetchall())


def test_a_node_that_waits_makes_its_inputs_crash_safe(acme, people, eager):
    """A Wait may hold its input for days, across restarts of the server that would empty an
    unlogged table: the input becomes a logged table when the node first waits. The tables of
    nodes that did not wait stay unlogged."""
    for key in ("ada", "bob", "cy"):
        profile_upsert(tenant=acme, values={"id": key, "email": f"{key}@example.test"}, by=None)
    g = graph({"id": "build", "type": "build_audience", "config": {"filter": {}}},
              {"id": "dedup", "type": "dedup", "config": {"fields": ["email"]}},
              {"id": "wait", "type": "wait", "config": {"mode": "duration", "duration": "2d"}},
              {"id": "end", "type": "end"},
              edges=[("start", "out", "build"), ("build", "out", "dedup"), ("dedup", "out", "wait"),
                     ("wait", "out", "end")])
    _campaign, run = start(acme, people["acme"]["marketer"].user, g, eager=eager)
    states = nodes_of(run)
    assert states["wait"].status == "waiting" and states["dedup"].count_out == 3
    built, deduplicated = states["build"].outputs["out"]["table"], states["dedup"].outputs["out"]["table"]
    assert _persistence([built, deduplicated]) == {built: "u", deduplicated: "p"}
    # The next wake-up finds it logged already and changes nothing (one catalog query).
    with transaction.atomic():
        node = PopulationStore(cursor=connection.cursor(), run_id=run.pk, node_pk=states["wait"].pk)
        assert node.make_durable([Population.from_dict(states["dedup"].outputs["out"])]) == []
