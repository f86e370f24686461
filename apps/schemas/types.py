"""How each field type is stored in a record's JSONB `attributes` and read back in SQL.

On write, `coerce(field_type, value)` turns what a user sent (JSON or CSV text) into the canonical
JSON value, or raises `InvalidValue` with a reason. In SQL, `value_sql(field_type, column_sql,
name)` is the typed expression of a field; the same expression is what `indexed` fields index, so
that filters use the indexes. Dates and times go through IMMUTABLE wrappers (created by the
migration) because PostgreSQL's own text-to-date casts depend on settings and cannot be indexed."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from typing import Any

from psycopg import sql

from apps.schemas.models import FieldType

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_RE = re.compile(r"^\+?[0-9 ().-]{6,20}$")
TRUE_TEXT = {"true", "t", "yes", "y", "1", "on"}
FALSE_TEXT = {"false", "f", "no", "n", "0", "off"}
MAX_STRING = 10_000
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _int_whitespace() -> str:
    """What int() strips around digits (the import's SQL trims the same characters)."""
    from apps.schemas.imports import WHITESPACE

    return "".join(c for c in WHITESPACE if not "\x1c" <= c <= "\x1f")


class InvalidValue(ValueError):
    """A value that does not fit its field's type; the message is the reason, for users."""


def coerce(field_type: str, value: Any, *, enum_values: list[str] | None = None) -> Any:
    """The canonical JSON value of `value` for a field of `field_type`. None stays None."""
    if value is None:
        return None
    if isinstance(value, str) and value == "" and field_type not in (FieldType.STRING, FieldType.JSON):
        return None
    match field_type:
        case FieldType.STRING:
            text = value if isinstance(value, str) else str(value)
            if "\x00" in text:
                raise InvalidValue("contains a NUL character")
            if len(text) > MAX_STRING:
                raise InvalidValue(f"longer than {MAX_STRING} characters")
            return text
        case FieldType.INTEGER:
            if isinstance(value, bool):
                raise InvalidValue("not an integer")
            if isinstance(value, int):
                number = value
            elif isinstance(value, float) and value.is_integer():
                number = int(value)
            elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip(_int_whitespace())):
                number = int(value.strip(_int_whitespace()))
            else:
                raise InvalidValue("not an integer")
            if not INT_MIN <= number <= INT_MAX:
                raise InvalidValue("integer out of range")
            return number
        case FieldType.DECIMAL:
            if isinstance(value, bool):
                raise InvalidValue("not a number")
            try:
                number = decimal.Decimal(str(value).strip())
            except decimal.InvalidOperation:
                raise InvalidValue("not a number") from None
            if not number.is_finite():
                raise InvalidValue("not a finite number")
            # JSON numbers: ints stay ints, the rest as floats
            if number == number.to_integral_value() and abs(number) < 2**53:
                return int(number)
            as_float = float(number)
            if as_float in (float("inf"), float("-inf")):
                raise InvalidValue("number out of range")
            return as_float
        case FieldType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in TRUE_TEXT:
                return True
            if text in FALSE_TEXT:
                return False
            raise InvalidValue("not a yes/no value (true/false)")
        case FieldType.DATE:
            if isinstance(value, dt.datetime):
                return value.date().isoformat()
            if isinstance(value, dt.date):
                return value.isoformat()
            try:
                return dt.date.fromisoformat(str(value).strip()).isoformat()
            except ValueError:
                raise InvalidValue("not a date (YYYY-MM-DD)") from None
        case FieldType.DATETIME:
            if isinstance(value, dt.datetime):
                moment = value
            else:
                try:
                    moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
                except ValueError:
                    raise InvalidValue("not a date and time (ISO 8601)") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        case FieldType.EMAIL:
            text = str(value).strip().lower()
            if not EMAIL_RE.match(text) or len(text) > 254:
                raise InvalidValue("not an e-mail address")
            return text
        case FieldType.PHONE:
            text = str(value).strip()
            if not PHONE_RE.match(text):
                raise InvalidValue("not a phone number")
            return re.sub(r"[ ().-]", "", text)
        case FieldType.ENUM:
            text = str(value)
            if enum_values and text not in enum_values:
                raise InvalidValue(f"not one of {', '.join(map(str, enum_values))}")
            return text
        case FieldType.JSON:
            if isinstance(value, str):
                try:
                    return json.loads(value)
                except json.JSONDecodeError:
                    raise InvalidValue("not valid JSON") from None
            return value
    raise InvalidValue(f"unknown type {field_type}")


# SQL ------------------------------------------------------------------------------------------

_TEXT_TYPES = {FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM}


def text_sql(column: sql.Composable, name: str) -> sql.Composable:
    """`attributes->>'name'`: the field's value as text (NULL when absent)."""
    return sql.SQL("({}->>{})").format(column, sql.Literal(name))


def value_sql(field_type: str, column: sql.Composable, name: str) -> sql.Composable:
    """The typed SQL expression of field `name` of the JSONB `column`."""
    text = text_sql(column, name)
    match field_type:
        case t if t in _TEXT_TYPES:
            return text
        case FieldType.INTEGER:
            return sql.SQL("({})::bigint").format(text)
        case FieldType.DECIMAL:
            return sql.SQL("({})::numeric").format(text)
        case FieldType.BOOLEAN:
            return sql.SQL("({})::boolean").format(text)
        case FieldType.DATE:
            return sql.SQL("schemas_to_date({})").format(text)
        case FieldType.DATETIME:
            return sql.SQL("schemas_to_timestamptz({})").format(text)
        case FieldType.JSON:
            return sql.SQL("({}->{})").format(column, sql.Literal(name))
    raise ValueError(f"unknown type {field_type}")


def pg_type(field_type: str) -> str:
    """The PostgreSQL type of `value_sql` for a field type."""
    return {
        FieldType.INTEGER: "bigint", FieldType.DECIMAL: "numeric", FieldType.BOOLEAN: "boolean",
        FieldType.DATE: "date", FieldType.DATETIME: "timestamptz", FieldType.JSON: "jsonb",
    }.get(field_type, "text")


# Database functions the expressions above rely on (created by migration 0002).
FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION schemas_to_date(value text) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT make_date(substr(value, 1, 4)::int, substr(value, 6, 2)::int, substr(value, 9, 2)::int) $$;

CREATE OR REPLACE FUNCTION schemas_to_timestamptz(value text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT (make_timestamptz(substr(value, 1, 4)::int, substr(value, 6, 2)::int, substr(value, 9, 2)::int,
                                   substr(value, 12, 2)::int, substr(value, 15, 2)::int,
                                   substr(value, 18, length(value) - 18)::double precision, 'UTC')) $$;
"""
