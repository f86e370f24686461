"""The SQL that checks and converts imported values, against its oracle `types.coerce`.

For every field type, values from a file (CSV cells: text) and from JSON lines (JSON values) go
through the import's SQL and through `coerce`:
- whatever the value, when SQL accepts it, coerce accepts it and gives the same JSON value, and
  when coerce refuses it, SQL refuses it too (SQL may refuse more: docs/import.md lists where);
- for values of the shapes people write (numbers, ISO dates, e-mail addresses...), both accept,
  and agree.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import string
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from apps.schemas.imports import WHITESPACE, conversion_for, with_normalised
from apps.schemas.models import FieldType
from apps.schemas.types import FALSE_TEXT, TRUE_TEXT, InvalidValue, coerce

pytestmark = pytest.mark.django_db
ENUM = ["red", "Green", "blue sky"]
REFUSED = object()
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def oracle(field_type: str, value: Any) -> Any:
    try:
        return coerce(field_type, value, enum_values=ENUM if field_type == FieldType.ENUM else None)
    except (InvalidValue, ValueError, OverflowError, RecursionError):
        return REFUSED


def sql_text(field_type: str, values: list[str | None]) -> list[tuple[bool, Any, str | None]]:
    """(ok, value as JSON text, reason) of each CSV cell, by the import's SQL."""
    conv = conversion_for(field_type, ENUM if field_type == FieldType.ENUM else None)
    t, n = sql.SQL("s.t0"), sql.SQL("s.n0")
    cells = with_normalised(sql.SQL("SELECT i, t AS t0 FROM unnest(%s::text[]) WITH ORDINALITY u(t, i)"), [(0, conv)])
    query = sql.SQL(
        "SELECT coalesce({ok}, false), CASE WHEN coalesce({ok}, false) THEN {value}::text END, "
        "CASE WHEN NOT coalesce({ok}, false) THEN {reason} END FROM ({cells}) s ORDER BY i"
    ).format(ok=conv.ok(t, n), value=conv.as_jsonb(conv.value(t, n)), reason=conv.reason(t, n), cells=cells)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.execute(query, [values])
        return cursor.fetchall()


def sql_json(field_type: str, values: list[Any]) -> list[tuple[bool, Any]]:
    """(ok, value as JSON text) of each JSON value, by the import's SQL for JSON lines."""
    conv = conversion_for(field_type, ENUM if field_type == FieldType.ENUM else None)
    j, jt = sql.SQL("u.j"), sql.SQL("jsonb_typeof(u.j)")
    cells = with_normalised(sql.SQL(
        "SELECT i, j AS j0, {jt} AS jt0, {t} AS t0 FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY u(j, i)"
    ).format(jt=jt, t=conv.json_text(j, jt)), [(0, conv)])
    s = {name: sql.SQL(f"s.{name}0") for name in ("j", "jt", "t", "n")}
    query = sql.SQL("SELECT coalesce({shape} AND {ok}, false), {value}::text FROM ({cells}) s ORDER BY i").format(
        shape=conv.json_shape_ok(s["j"], s["jt"]), ok=conv.ok(s["t"], s["n"]),
        value=conv.as_jsonb(conv.value(s["t"], s["n"])), cells=cells)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.cursor.execute(query, [json.dumps(values)])
        return cursor.fetchall()


def same_json(left: str | None, right: Any) -> bool:
    """Whether the JSON text `left` (from SQL) and the Python value `right` are the same JSON value
    once stored (jsonb compares numbers by value)."""
    if left is None or right is None:
        return left is None and right is None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb = %s::jsonb", [left, json.dumps(right)])
        return cursor.fetchone()[0]


def check_cells(field_type: str, values: list[str | None], *, all_accepted: bool = False) -> None:
    for value, (ok, converted, reason) in zip(values, sql_text(field_type, values), strict=True):
        expected = oracle(field_type, value)
        if ok:
            assert expected is not REFUSED, f"SQL accepts {value!r} as {field_type}; coerce refuses it"
            assert same_json(converted, expected), f"{field_type} {value!r}: SQL {converted}, coerce {expected!r}"
        else:
            assert not all_accepted, f"SQL refuses {value!r} as {field_type} ({reason}); coerce gives {expected!r}"
            assert reason, f"no reason for {value!r}"


def check_json(field_type: str, values: list[Any], *, all_accepted: bool = False) -> None:
    for value, (ok, converted) in zip(values, sql_json(field_type, values), strict=True):
        expected = oracle(field_type, value)
        if ok:
            assert expected is not REFUSED, f"SQL accepts JSON {value!r} as {field_type}; coerce refuses it"
            assert same_json(converted, expected), f"{field_type} {value!r}: SQL {converted}, coerce {expected!r}"
        else:
            assert not all_accepted, f"SQL refuses JSON {value!r} as {field_type}; coerce gives {expected!r}"


# Strategies ----------------------------------------------------------------------------------------

# Non-ASCII digits are left out: int() and Decimal() read them, the import refuses them.
SPACES = st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u2003", "\n"])
JUNK = st.text(alphabet=st.sampled_from(
    list(string.digits + "+-._eEZTW:,@ ()xX/" + "aAfFnNoOsStTyY") + list(WHITESPACE[:6]) + ["é", "ß", "İ", "Σ"]),
    max_size=30)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Nd"), blacklist_characters="\x00"),
                   max_size=30)
CELLS = st.lists(st.one_of(JUNK, ANY_TEXT, st.none()), max_size=12)


def padded(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, v, b: a + v + b, SPACES, strategy, SPACES)


INTEGERS = padded(st.builds(lambda n, plus, zeros: ("+" if plus and n >= 0 else "") + ("-" if n < 0 else "")
                            + "0" * zeros + str(abs(n)), st.integers(-(2**63), 2**63 - 1), st.booleans(),
                            st.integers(0, 3)))
DECIMALS = padded(st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**30, max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:e}"),
    st.integers().map(lambda n: f"{n:_}"),
))
BOOLEANS = padded(st.builds(lambda w, upper: w.upper() if upper else w, st.sampled_from(sorted(TRUE_TEXT | FALSE_TEXT)),
                            st.booleans()))
DATES = padded(st.one_of(
    st.dates().map(dt.date.isoformat),
    st.dates().map(lambda d: d.strftime("%Y%m%d") if d.year >= 1000 else d.isoformat()),
    st.dates(min_value=dt.date(2, 1, 1), max_value=dt.date(9998, 12, 1)).map(
        lambda d: "{:04d}-W{:02d}-{}".format(*d.isocalendar())),
))
ZONES = st.one_of(st.none(), st.just(dt.UTC), st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)))
DATETIMES = padded(st.builds(
    lambda moment, sep, spec, zulu: moment.isoformat(sep=sep, timespec=spec).replace("+00:00", "Z" if zulu else "+00:00"),
    st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 1), timezones=ZONES),
    st.sampled_from(["T", " "]), st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds"]),
    st.booleans()))
EMAILS = padded(st.builds(lambda user, host, tld: f"{user}@{host}.{tld}",
                          st.text(string.ascii_letters + string.digits + "._+-", min_size=1, max_size=12),
                          st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12),
                          st.text(string.ascii_letters, min_size=2, max_size=5)))
PHONES = padded(st.builds(lambda plus, body: ("+" if plus else "") + body, st.booleans(),
                          st.text("0123456789 ().-", min_size=6, max_size=20).filter(lambda s: s.strip() == s)))
WELL_FORMED = {
    FieldType.STRING: ANY_TEXT, FieldType.INTEGER: INTEGERS, FieldType.DECIMAL: DECIMALS,
    FieldType.BOOLEAN: BOOLEANS, FieldType.DATE: DATES, FieldType.DATETIME: DATETIMES, FieldType.EMAIL: EMAILS,
    FieldType.PHONE: PHONES, FieldType.ENUM: st.sampled_from(ENUM),
    FieldType.JSON: st.recursive(
        # PostgreSQL text holds no NUL character, so jsonb refuses "\u0000": left out
        st.none() | st.booleans() | st.integers() | st.text(string.printable),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(string.printable, max_size=3), kids,
                                                                  max_size=3),
        max_leaves=6).map(json.dumps),
}
JSON_VALUES = st.lists(st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    JUNK, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(string.printable, max_size=2), st.integers(),
                                                               max_size=2),
), max_size=10)

TYPES = list(FieldType.values)


@pytest.mark.parametrize("field_type", TYPES)
@PROFILE
@given(values=CELLS)
def test_sql_never_accepts_what_coerce_refuses(field_type, values):
    check_cells(field_type, values)


@pytest.mark.parametrize("field_type", TYPES)
@PROFILE
@given(data=st.data())
def test_well_formed_values_convert_as_coerce_converts_them(field_type, data):
    check_cells(field_type, data.draw(st.lists(WELL_FORMED[field_type], min_size=1, max_size=12)), all_accepted=True)


@pytest.mark.parametrize("field_type", TYPES)
@PROFILE
@given(values=JSON_VALUES)
def test_json_lines_values_convert_as_coerce_converts_them(field_type, values):
    check_json(field_type, values)


@pytest.mark.parametrize("field_type,value", [
    (FieldType.INTEGER, 5), (FieldType.INTEGER, 5.0), (FieldType.INTEGER, "12"), (FieldType.DECIMAL, 0.1),
    (FieldType.DECIMAL, 12345678901234567890), (FieldType.STRING, 2.5), (FieldType.STRING, True),
    (FieldType.BOOLEAN, 1), (FieldType.BOOLEAN, "No"), (FieldType.DATE, "2024-02-29"), (FieldType.JSON, {"a": [1]}),
    (FieldType.EMAIL, " A@B.CO "), (FieldType.ENUM, "red"),
])
def test_json_values_people_send_are_accepted(field_type, value):
    check_json(field_type, [value], all_accepted=True)


@pytest.mark.parametrize("field_type,value,reason", [
    (FieldType.INTEGER, "1.5", "not an integer"), (FieldType.INTEGER, "9223372036854775808", "integer out of range"),
    (FieldType.DECIMAL, "nan", "not a finite number"), (FieldType.DECIMAL, "1e5000", "number out of range"),
    (FieldType.DECIMAL, "1,5", "not a number"), (FieldType.STRING, "x" * 10_001, "longer than 10000 characters"),
    (FieldType.ENUM, "Red", "not one of red, Green, blue sky"), (FieldType.JSON, "", "not valid JSON"),
    (FieldType.DATETIME, "2024-01-01T25:00", "not a date and time (ISO 8601)"),
])
def test_reasons(field_type, value, reason):
    assert sql_text(field_type, [value]) == [(False, None, reason)]


def test_the_whitespace_the_import_strips_is_pythons():
    assert "".join(chr(c) for c in range(0x110000) if chr(c).isspace()) == WHITESPACE


def test_decimal_edges():
    values = ["1e308", "1.7976931348623157e308", "1.8e308", "5e-324", "1e-400", "-0.0", "9007199254740993",
              "0.1", "1_0.0_1", "123456789012345678901234567890.5"]
    check_cells(FieldType.DECIMAL, values)
    assert [ok for ok, _, _ in sql_text(FieldType.DECIMAL, values)] == [True, True, False, True, True, True, True,
                                                                       True, True, True]
    assert decimal.Decimal("1.8e308") > decimal.Decimal(2**1024 - 2**970)
