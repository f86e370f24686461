"""Running one activity on hand-made populations, without the engine: the activity's `validate`
and `execute` are called as the engine calls them, on a real PostgreSQL connection, with input
populations written as working tables. These tests are about each activity's logic; the full
graph tests (tests/activities/test_graph.py) go through the engine."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from django.db import connection
from psycopg import sql

from apps.activities import registry
from apps.activities.base import Column, Done, ExecutionContext, Population, Problem, Shape, ValidationContext
from apps.campaigns.populations import PopulationStore, table_ident
from apps.schemas.models import DataSchema
from apps.tenants.scoping import tenant_scope

_nodes = itertools.count(1)
RUN_ID = 999_000


@dataclass
class Harness:
    tenant: Any
    campaign_id: int = 42
    variables: dict[str, Any] = field(default_factory=dict)
    declarations: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))

    def store(self) -> PopulationStore:
        return PopulationStore(cursor=connection.cursor(), run_id=RUN_ID, node_pk=next(_nodes))

    def population(self, rows: list[tuple[Any, ...]], *, columns: list[Column] | None = None,
                   dimension: str = "profile") -> Population:
        """A working table holding `rows` (key first, then `columns` in order)."""
        columns = columns or []
        names = ["key", *[c.name for c in columns]]
        types = ["text", *[c.type for c in columns]]
        arrays = [[row[i] for row in rows] for i in range(len(names))]
        select = sql.SQL("SELECT * FROM unnest({})").format(sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in types))
        return self.store().create("in", select, arrays, columns=columns, dimension=dimension)

    def context(self, node_id: str = "node", is_test: bool = False) -> ExecutionContext:
        return ExecutionContext(
            tenant=self.tenant, run=SimpleNamespace(pk=RUN_ID), campaign=SimpleNamespace(pk=self.campaign_id),
            node_id=node_id, config={}, variables=self.variables, is_test=is_test, now=self.now, state={},
            store=self.store(), dimension="profile")

    def run(self, activity_type: str, config: dict[str, Any], inputs: list[Population], *,
            sources: list[str] | None = None, node_id: str = "node", is_test: bool = False) -> Done:
        """Validate `config` for these inputs (AssertionError listing the problems if any), then execute."""
        problems = self.problems(activity_type, config, [p.shape for p in inputs], sources=sources)
        assert not problems, problems
        ctx = self.context(node_id, is_test)
        ctx.config = config
        ctx.input_sources = sources or [f"in{i}" for i in range(len(inputs))]
        with tenant_scope(self.tenant):
            result = registry.get(activity_type).execute(config, ctx, inputs)
        assert isinstance(result, Done)
        return result

    def problems(self, activity_type: str, config: dict[str, Any], inputs: list[Shape] | None, *,
                 sources: list[str] | None = None) -> list[Problem]:
        with tenant_scope(self.tenant):
            ctx = ValidationContext(
                tenant=self.tenant, dimension="profile", variables=self.declarations,
                schemas={s.name: s for s in DataSchema.objects.prefetch_related("fields", "links")},
                node_id="node", inputs=inputs,
                input_sources=sources or [f"in{i}" for i in range(len(inputs or []))])
            return registry.get(activity_type).check_config(config, ctx)


def rows(population: Population) -> list[tuple[Any, ...]]:
    """The rows of a population, in key order."""
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(table_ident(population.table or ""))
                       .as_string(cursor.connection) if population.columns else
                       sql.SQL("SELECT * FROM {} ORDER BY 1").format(table_ident(population.table or ""))
                       .as_string(cursor.connection))
        return [tuple(row) for row in cursor.fetchall()]


def keys(population: Population) -> list[str]:
    return [row[0] for row in rows(population)]
