"""The validated form of a filter tree: what the compiler (and nothing else) consumes. Every
name in it has been resolved against the tenant's schemas and every value coerced to its
field's type, variables included, so compiling can no longer fail on user input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.schemas.query.catalog import FieldDef, LinkDef, SchemaDef

OPERATORS = (
    "eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "starts_with", "ends_with",
    "is_null", "is_not_null", "within_last", "before", "after",
)
AGGREGATES = ("exists", "count", "sum", "min", "max", "avg")


@dataclass(frozen=True)
class Constant:
    """`{}` and `{"all": []}` (true: everything matches), `{"any": []}` (false: nothing)."""

    value: bool


@dataclass(frozen=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Condition:
    """`field op value`. `values` depends on the operator: () for is_null/is_not_null, (list,) for
    in/not_in, (low, high) for between and within_last (already turned into bounds), (text,) for
    the string operators, (value,) otherwise."""

    field: FieldDef
    op: str
    values: tuple[Any, ...]
    case_insensitive: bool = False


@dataclass(frozen=True)
class LinkCondition:
    """Records of `source` that have linked records of `target` matching `where`, and whose
    linked records satisfy the aggregate: `exists` (values = (True,) or (False,)), `count`, or
    sum/min/max/avg of `field` compared with `op` to `values`."""

    link: LinkDef
    source: SchemaDef
    target: SchemaDef
    where: Node
    aggregate: str
    field: FieldDef | None
    op: str | None
    values: tuple[Any, ...]


Node = Constant | All | Any_ | Not | Condition | LinkCondition
