"""SQL pieces the targeting and data activities share: a population's rows joined to their
records, filters that may name the population's extra columns beside the schema's fields, field
and column expressions, and the sticky hash of random sampling.

A population is the working table `campaign_work.<table>` (`key` + extra columns) of records of
its dimension (a schema name). Its rows are read as alias `p`, their records as alias `r` (one
row of `schemas_record`, joined on the key); filters name the schema's fields and, with the same
syntax, the population's columns (a column wins over a field of the same name)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import sql

from apps.activities.base import Column, ExecutionContext, NodeError, Population, Problem, Shape, ValidationContext
from apps.campaigns.populations import table_ident
from apps.core.errors import NotFound
from apps.schemas.models import FieldType
from apps.schemas.query import Compiled, FilterError, compile_filter, validate_filter
from apps.schemas.query.catalog import BUILTIN_FIELDS, FieldDef
from apps.schemas.query.compiler import compose, field_expression
from apps.schemas.types import pg_type

POPULATION = "p"
RECORD = "r"

# The filter-language type of each PostgreSQL column type a population may carry.
FIELD_TYPES = {
    "text": FieldType.STRING, "bigint": FieldType.INTEGER, "integer": FieldType.INTEGER,
    "numeric": FieldType.DECIMAL, "double precision": FieldType.DECIMAL, "boolean": FieldType.BOOLEAN,
    "date": FieldType.DATE, "timestamptz": FieldType.DATETIME, "jsonb": FieldType.JSON,
}

FILTER_SCHEMA: dict[str, Any] = {"type": "object", "description": "a filter-language condition (docs/filter-language.md)"}
NAME_PATTERN = "^[a-z][a-z0-9_]{0,62}$"


def column_type(field_type: str) -> str:
    """The PostgreSQL column type that carries values of a schema field type."""
    return pg_type(field_type)


def column_fields(columns: Iterable[Column], table: str = POPULATION) -> dict[str, FieldDef]:
    """The population's columns as filter fields read from `table`."""
    return {c.name: FieldDef(c.name, FIELD_TYPES.get(c.type, FieldType.STRING), column=c.name, table=table)
            for c in columns}


# -- validation ---------------------------------------------------------------------------------

def filter_problems(ctx: ValidationContext, tree: Any, *, path: str, shape: Shape | None) -> list[Problem]:
    """Problems of a filter over the population `shape` (its dimension's fields and its columns),
    with paths under `path`. With `shape` None (inputs unknown) only the form is checked later,
    at run time; variables must be declared by the campaign."""
    if shape is None or shape.dimension is None:
        return []
    try:
        used = validate_filter(tenant=ctx.tenant, schema=shape.dimension, tree=tree, variables=None,
                               extra_fields=column_fields(shape.columns))
    except FilterError as error:
        return [ctx.problem(p["message"], f"{path}.{p['path']}" if p["path"] else path) for p in error.problems]
    except NotFound:
        return [ctx.problem(f"Unknown schema {shape.dimension!r}.", path)]
    return [ctx.problem(f"Unknown variable {name!r}: declare it in the campaign's variables.", path)
            for name in sorted(used - set(ctx.variables))]


def field_problem(ctx: ValidationContext, shape: Shape | None, name: Any, path: str) -> list[Problem]:
    """A problem if `name` is neither a column of the population nor a field of its dimension."""
    if shape is None or shape.dimension is None:
        return []
    if not isinstance(name, str):
        return [ctx.problem("A field is named by a string.", path)]
    if shape.column(name) or name in BUILTIN_FIELDS:
        return []
    schema = ctx.schemas.get(shape.dimension)
    if schema is None:
        return [ctx.problem(f"Unknown schema {shape.dimension!r}.", path)]
    if not any(f.name == name for f in schema.fields.all()):
        return [ctx.problem(f"Unknown field {name!r}: not a column of the population nor a field of "
                            f"{shape.dimension!r}.", path)]
    return []


def single_input(ctx: ValidationContext) -> Shape | None:
    """The records arriving on a one-input activity, or None when not known."""
    if ctx.inputs is None:
        return None
    return next((s for s in ctx.inputs if not s.is_token), Shape(None))


def needs_records(ctx: ValidationContext, shape: Shape | None) -> list[Problem]:
    if shape is not None and shape.is_token:
        return [ctx.problem("This activity needs a population: put it after an activity that selects records "
                            "(e.g. Build audience).")]
    return []


# -- execution ----------------------------------------------------------------------------------

def records_of(inputs: list[Population]) -> Population:
    """The population arriving on a one-input activity; a NodeError when only a token arrives."""
    for population in inputs:
        if not population.is_token:
            return population
    raise NodeError("No population arrives here: put this activity after one that selects records.")


def source(population: Population, *, table: str = POPULATION) -> sql.Composable:
    """`campaign_work.<table> AS p`."""
    assert population.table is not None
    return sql.SQL("{} AS {}").format(table_ident(population.table), sql.Identifier(table))


def with_records(ctx: ExecutionContext, population: Population, *, table: str = POPULATION,
                 record: str = RECORD) -> Compiled:
    """`campaign_work.<table> p JOIN schemas_record r ON <r is p's record>`: the population's rows
    that are records of its dimension now (a row whose record was deleted drops out)."""
    return compose("{} JOIN schemas_record {} ON {}.tenant_id = {} AND {}.schema_id = {} AND {}.key = {}.key",
                   source(population, table=table), sql.Identifier(record), sql.Identifier(record),
                   Compiled(sql.Placeholder(), [ctx.tenant.pk]), sql.Identifier(record),
                   Compiled(sql.Placeholder(), [schema_id(ctx, population.dimension)]), sql.Identifier(record),
                   sql.Identifier(table))


def schema_id(ctx: ExecutionContext, dimension: str | None) -> int:
    from apps.schemas.query.catalog import Catalog

    try:
        return Catalog.load(ctx.tenant).resolve(dimension or ctx.dimension).id
    except NotFound:
        raise NodeError(f"The schema {dimension!r} no longer exists.") from None


def condition(ctx: ExecutionContext, population: Population, tree: Any, *, table: str = POPULATION,
              record: str = RECORD, scoped: bool = True) -> Compiled:
    """The filter `tree` as a condition over `p` (columns) and `r` (record fields, links), bound
    to the run's variables; it includes `r.tenant_id = … AND r.schema_id = …` unless `scoped` is
    False (for a tree that names columns only)."""
    try:
        return compile_filter(tenant=ctx.tenant, schema=population.dimension or ctx.dimension, tree=tree,
                              variables=ctx.variables, alias=record, now=ctx.now,
                              extra_fields=column_fields(population.columns, table), scoped=scoped)
    except FilterError as error:
        raise NodeError(error.message) from None


def uses_record(tree: Any, columns: Iterable[Column]) -> bool:
    """Whether a filter names anything beyond the population's columns (a field or a link), i.e.
    whether the records must be joined to evaluate it."""
    names = {c.name for c in columns}
    if isinstance(tree, dict):
        if "link" in tree:
            return True
        if "field" in tree and tree["field"] not in names:
            return True
        return any(uses_record(v, columns) for k, v in tree.items() if k in ("all", "any", "not"))
    if isinstance(tree, list):
        return any(uses_record(v, columns) for v in tree)
    return False


def value(ctx: ExecutionContext, population: Population, name: str, *, table: str = POPULATION,
          record: str = RECORD) -> tuple[sql.Composable, bool]:
    """(SQL expression, whether it reads the record) of `name`: a column of the population, else a
    field of its dimension."""
    column = next((c for c in population.columns if c.name == name), None)
    if column is not None:
        return sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(name)), False
    from apps.schemas.query.catalog import Catalog

    schema = Catalog.load(ctx.tenant).resolve(population.dimension or ctx.dimension)
    field = schema.field_named(name)
    if field is None:
        raise NodeError(f"Unknown field {name!r}: not a column of the population nor a field of {schema.name!r}.")
    return field_expression(field, record), field.column != "key"


def value_type(ctx: ExecutionContext, population: Population, name: str) -> str:
    """The PostgreSQL type of `value(...)`."""
    column = next((c for c in population.columns if c.name == name), None)
    if column is not None:
        return column.type
    from apps.schemas.query.catalog import Catalog

    field = Catalog.load(ctx.tenant).resolve(population.dimension or ctx.dimension).field_named(name)
    return pg_type(field.type) if field else "text"


def carried(population: Population, *, table: str = POPULATION) -> list[sql.Composable]:
    """`p.<column>` for each extra column, in order (to select them into the next table)."""
    return [sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(c.name)) for c in population.columns]


def sticky_hash(seed: str, key: sql.Composable) -> Compiled:
    """A reproducible number in [0, 1) from (seed, record key): the same record gets the same
    number on every run, so random samples are sticky."""
    return compose("(('x' || substr(md5({} || ':' || {}), 1, 8))::bit(32)::bigint / 4294967296.0)",
                   Compiled(sql.Placeholder(), [seed]), key)


def default_seed(ctx: ExecutionContext) -> str:
    """Random sampling's default seed: the campaign and node, so two splits sample independently
    but a campaign samples the same way on every run."""
    return f"{ctx.campaign.pk}:{ctx.node_id}"


def count(ctx: ExecutionContext, statement: Compiled) -> int:
    cursor = ctx.store.execute(statement.sql, statement.params)
    return int(cursor.fetchone()[0])
