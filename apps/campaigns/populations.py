"""Working populations: each output of a node in a run is a table in the `campaign_work` schema,
filled by one `CREATE TABLE … AS SELECT`, with a `key` column (the record key in the population's dimension)
and the extra columns activities add. Tables are dropped when the run's retention period ends."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from psycopg import sql

from apps.activities.base import Column, Population

WORK_SCHEMA = "campaign_work"
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

    def table_name(self, port: str) -> str:
        return f"r{self.run_id}_n{self.node_pk}_{_port_slug(port)}"

    def execute(self, statement: sql.Composable | str, params: list[Any] | tuple[Any, ...] | None = None) -> Any:
        if isinstance(statement, sql.Composable):
            statement = statement.as_string(self.cursor.connection)
        self.cursor.execute(statement, params or [])
        return self.cursor

    def create(self, port: str, select: sql.Composable | str, params: list[Any] | None = None, *,
               columns: list[Column] | None = None, dimension: str | None = None) -> Population:
        """Create the port's table from `select`, which must yield `key` then the `columns` in
        order. Returns the population with its row count.

        The table is made by one `CREATE TABLE … AS SELECT` rather than CREATE then INSERT …
        SELECT: PostgreSQL may run the SELECT of a CREATE TABLE AS with parallel workers, never
        that of an INSERT (an aggregate over millions of linked rows runs about twice as fast)."""
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
        count = self.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM ({}) AS s ({})").format(
            ident, sql.SQL(", ").join(typed), select, sql.SQL(", ").join(names)), params).rowcount
        self.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN key SET NOT NULL").format(ident))
        self.execute(sql.SQL("ANALYZE {}").format(ident))
        return Population(table=table, count=count, dimension=dimension, columns=list(columns))


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
