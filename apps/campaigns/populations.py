"""Working populations: each output of a node in a run is a table in the `campaign_work` schema,
filled by one `CREATE UNLOGGED TABLE … AS SELECT`, with a `key` column (the record key in the population's
dimension) and the extra columns activities add. Tables are dropped when the run's retention period ends.

The tables are UNLOGGED: they are transient, written once and re-made by re-running the run, so
they are not worth their WAL (writing them costs about half as much). PostgreSQL empties unlogged
tables after a crash (and a promoted standby has them empty): `check_inputs` refuses to read such a
population rather than silently continuing with no rows."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.conf import settings
from psycopg import sql

from apps.activities.base import Column, NodeError, Population

WORK_SCHEMA = "campaign_work"
# Statistics of a working table are read by the plans of the next nodes only (row counts, distinct
# keys, a coarse histogram of its columns): a sample of 3,000 rows (target 10) serves them as well
# as the default 30,000 at a quarter of the cost.
STATISTICS_TARGET = "10"
ALLOWED_TYPES = {"text", "bigint", "numeric", "boolean", "date", "timestamptz", "jsonb", "integer",
                 "double precision"}


def table_ident(table: str) -> sql.Composable:
    return sql.Identifier(WORK_SCHEMA, table)


def _port_slug(port: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", port.lower()).strip("_")[:16]
    digest = hashlib.sha1(port.encode()).hexdigest()[:6]
    return f"{slug}_{digest}" if slug else digest


class PopulationStore:
    """Creates and reads the working tables of one node of one run, through `cursor` (the
    node's transaction: a failure leaves no table behind)."""

    def __init__(self, *, cursor: Any, run_id: int, node_pk: int) -> None:
        self.cursor = cursor
        self.run_id = run_id
        self.node_pk = node_pk
        self._prepared = False

    def prepare(self) -> None:
        """Settings of the node's transaction (`SET LOCAL`: they end with it), applied before its
        first statement: `work_mem` (POPULATION_WORK_MEM) so that the hash aggregates, hash joins
        and sorts of a targeting node over millions of rows stay in memory instead of spilling to
        disk, and the statistics target of the ANALYZE of each new table."""
        if self._prepared:
            return
        self._prepared = True
        self.cursor.execute("SELECT set_config('work_mem', %s, true), set_config('default_statistics_target', %s, true)",
                            [settings.POPULATION_WORK_MEM, STATISTICS_TARGET])

    def check_inputs(self, populations: list[Population]) -> None:
        """A NodeError if a population that had rows now has none: its unlogged table was emptied
        by a crash of the database server (or a failover) since it was made."""
        for population in populations:
            if population.table is None or population.count == 0:
                continue
            found = self.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(
                table_ident(population.table))).fetchone()[0]
            if not found:
                raise NodeError("A working population of this run was lost in a restart of the database server "
                                "(working tables are not crash-safe): start the run again.")

    def make_durable(self, populations: list[Population]) -> list[str]:
        """Make the tables of `populations` crash-safe (`ALTER TABLE … SET LOGGED`, which rewrites
        them once with WAL) if they are still unlogged. For a node that waits (a Wait, an approval,
        a delivery being sent or confirmed): its inputs may be needed for days, across restarts of
        the database server, which empty unlogged tables. Returns the tables changed."""
        tables = sorted({p.table for p in populations if p.table is not None})
        if not tables:
            return []
        unlogged = [name for (name,) in self.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relpersistence = 'u' ORDER BY 1",
            [WORK_SCHEMA, tables]).fetchall()]
        for name in unlogged:
            self.execute(sql.SQL("ALTER TABLE {} SET LOGGED").format(table_ident(name)))
        return unlogged

    def table_name(self, port: str) -> str:
        return f"r{self.run_id}_n{self.node_pk}_{_port_slug(port)}"

    def execute(self, statement: sql.Composable | str, params: list[Any] | tuple[Any, ...] | None = None) -> Any:
        self.prepare()
        if isinstance(statement, sql.Composable):
            statement = statement.as_string(self.cursor.connection)
        self.cursor.execute(statement, params or [])
        return self.cursor

    def create(self, port: str, select: sql.Composable | str, params: list[Any] | None = None, *,
               columns: list[Column] | None = None, dimension: str | None = None,
               planner: dict[str, str] | None = None) -> Population:
        """Create the port's table from `select`, which must yield `key` then the `columns` in
        order. Returns the population with its row count (the statement's, no count(*) pass).

        The table is made by one `CREATE UNLOGGED TABLE … AS SELECT` rather than CREATE then
        INSERT … SELECT: PostgreSQL may run the SELECT of a CREATE TABLE AS with parallel workers,
        never that of an INSERT (an aggregate over millions of linked rows runs about twice as
        fast).

        `planner`: settings of the query planner for this statement only (an activity that knows
        what the planner cannot, e.g. that a statement reads most rows of a schema)."""
        columns = columns or []
        for column in columns:
            if column.type not in ALLOWED_TYPES:
                raise ValueError(f"column type {column.type!r} is not allowed")
        table = self.table_name(port)
        ident = table_ident(table)
        if isinstance(select, str):
            select = sql.SQL(select)
        names = [sql.Identifier("key")] + [sql.Identifier(c.name) for c in columns]
        typed = [sql.SQL("s.key::text AS key")] + [
            sql.SQL("s.{}::{} AS {}").format(sql.Identifier(c.name), sql.SQL(c.type), sql.Identifier(c.name))
            for c in columns]
        self.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        previous = self._set_planner(planner) if planner else None
        count = self.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} FROM ({}) AS s ({})").format(
            ident, sql.SQL(", ").join(typed), select, sql.SQL(", ").join(names)), params).rowcount
        if previous:
            self._set_planner(previous)
        self.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN key SET NOT NULL").format(ident))
        self.execute(sql.SQL("ANALYZE {}").format(ident))
        return Population(table=table, count=count, dimension=dimension, columns=list(columns))


    def _set_planner(self, values: dict[str, str]) -> dict[str, str]:
        """Set `values` for the rest of the transaction (SET LOCAL); returns the values they replace."""
        names = list(values)
        previous = self.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL("current_setting({})").format(sql.Literal(n)) for n in names))).fetchone()
        self.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(n), sql.Literal(values[n])) for n in names)))
        return dict(zip(names, previous, strict=True))


def sample(cursor: Any, population: Population, *, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """Up to `limit` rows of a population, as column names and rows (for monitoring)."""
    if population.table is None:
        return {"columns": [], "rows": [], "count": population.count}
    limit = max(1, min(int(limit), 200))
    cursor.execute(
        sql.SQL("SELECT * FROM {} ORDER BY key LIMIT %s OFFSET %s").format(table_ident(population.table))
        .as_string(cursor.connection),
        [limit, max(0, int(offset))],
    )
    names = [d.name for d in cursor.description]
    return {"columns": names, "rows": [list(row) for row in cursor.fetchall()], "count": population.count}


def drop_run_tables(cursor: Any, run_id: int) -> int:
    """Drop every working table of run `run_id`; returns how many were dropped."""
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s",
        [WORK_SCHEMA, f"r{int(run_id)}\\_n%"],
    )
    tables = [row[0] for row in cursor.fetchall()]
    for table in tables:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table_ident(table)).as_string(cursor.connection))
    return len(tables)
