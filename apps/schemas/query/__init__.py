"""The filter language: a JSON condition tree over a schema's records, validated against the
tenant's schemas and compiled to one parameterised SQL condition (see docs/filter-language.md).

Public entry points: `compile_filter`, `select_keys_sql`, `query_records`, `count_records`,
`validate_filter`, and `FilterError`, the 400 every invalid tree raises."""

from apps.schemas.query.compiler import Compiled
from apps.schemas.query.errors import FilterError, Problem
from apps.schemas.query.selectors import (
    compile_filter,
    count_records,
    query_records,
    select_keys_sql,
    validate_filter,
)

__all__ = [
    "Compiled", "FilterError", "Problem", "compile_filter", "count_records", "query_records", "select_keys_sql",
    "validate_filter",
]
