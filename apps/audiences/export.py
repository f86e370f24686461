"""CSV export of an audience's members, safe to open in a spreadsheet: a text cell that a
spreadsheet would read as a formula (starting with = + - @, a tab or a carriage return) is
prefixed with a single quote (OWASP, "CSV injection"). Numbers and yes/no values are written as
they are: they are not text a spreadsheet could evaluate."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> str:
    """The CSV cell for a stored value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


class _Line:
    """A file-like object whose write() returns what it is given, for csv.writer."""

    def write(self, value: str) -> str:
        return value


def csv_lines(columns: list[str], rows: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[str]:
    """The header line (`key`, then `columns`), then one line per (key, values) row."""
    return csv_table(["key", *columns], ([key, *(values.get(column) for column in columns)] for key, values in rows))


def csv_table(columns: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header line, then one line per row of cells, every cell neutralised."""
    writer = csv.writer(_Line())
    yield writer.writerow([neutralise(c) for c in columns])
    for row in rows:
        yield writer.writerow([neutralise(cell) for cell in row])
