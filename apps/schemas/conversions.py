"""Changing a field's type over the data already stored: the SQL twins of `types.coerce`.

For a target type, `conversion_sql(field_type, enum_values)` gives two SQL expressions over a
stored JSONB value: whether it fits the new type, and its canonical JSON value in that type (SQL
NULL: the value is removed, as `coerce` turns "" into None). They read the columns `cv.v` (the
JSONB value), `cv.jt` (its jsonb_typeof) and `cv.t` (its text), which `value_columns(expr)`
provides as a LATERAL. The field service checks every record in one statement and converts in one
UPDATE.

They follow `coerce(new_type, <the stored value as Python reads it>)`: a value fits in SQL only if
`coerce` accepts it, and then converts to what `coerce` returns. Where matching Python exactly in
SQL is not worth it, SQL is stricter (refuses), never looser:
- dates in ISO week form (2024-W01-1), compact times (T1000) and separators other than T or space
  are refused; numbers beyond float range or with exponents of more than 3 digits are refused;
- JSON objects and arrays convert only to `json` (Python would write their repr as text);
- to `json`, text is parsed as JSON by PostgreSQL, which refuses NaN and Infinity.
Numbers convert to text as Python prints them; a fractional number that Python would print in
exponent notation (beyond 1e16, below 1e-4) or otherwise than PostgreSQL does is refused."""

from __future__ import annotations

from psycopg import sql

from apps.schemas.models import FieldType
from apps.schemas.types import FALSE_TEXT, MAX_STRING, TRUE_TEXT

# str(value) of a stored number as Python reads it: an integer's digits; for a float, the text
# only when it is also Python's repr (PostgreSQL's shortest float text equals it), else NULL
# (refused: 1e-05, 1.50, 1.2345678901234568e+16 print differently in the two).
PYNUM = ("(CASE WHEN strpos(cv.t, '.') = 0 THEN cv.t "
         "WHEN abs(cv.t::numeric) BETWEEN 1e-300 AND 1e300 AND (cv.t::float8)::text = cv.t THEN cv.t END)")
# str(value) of the JSON value as Python reads it; NULL for objects and arrays
PYSTR = f"(CASE cv.jt WHEN 'string' THEN cv.t WHEN 'number' THEN {PYNUM} WHEN 'boolean' THEN initcap(cv.t) END)"
EMPTY = "(cv.jt = 'string' AND cv.t = '')"


def _strip(expr: str) -> str:
    return f"regexp_replace({expr}, '^[[:space:]]+|[[:space:]]+$', '', 'g')"


def _text_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(sql.Literal(v).as_string(None) for v in sorted(values)) + "]::text[]"


SIGNIFICANT_DIGITS = ("length(regexp_replace(replace(trim_scale(abs(n))::text, '.', ''), "
                      "'^0+|0+$', '', 'g'))")
INT_MIN, INT_MAX = "-9223372036854775808", "9223372036854775807"
INT_RE = "^[+-]?[0-9]+$"
DEC_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"
EMAIL_RE = r"^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$"
PHONE_RE = r"^\+?[0-9 ().-]{6,20}$"
DATE_RE = "^([0-9]{4})-([0-9]{2})-([0-9]{2})$"
DATETIME_RE = (
    "^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    "(?:[T ]([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)


def _dashed_date(expr: str) -> str:
    """YYYYMMDD... -> YYYY-MM-DD... (Python's fromisoformat reads both)."""
    return (f"(CASE WHEN {expr} ~ '^[0-9]{{8}}([T ]|$)' THEN substr({expr}, 1, 4) || '-' || substr({expr}, 5, 2)"
            f" || '-' || substr({expr}, 7, 2) || substr({expr}, 9) ELSE {expr} END)")


def _valid_date(y: str, m: str, d: str) -> str:
    return (f"(CASE WHEN {y}::int >= 1 AND {m}::int BETWEEN 1 AND 12 AND {d}::int >= 1 "
            f"THEN {d}::int <= extract(day from make_date({y}::int, {m}::int, 1) + interval '1 month - 1 day')::int "
            f"ELSE false END)")


def _numeric(expr_n: str, body: str) -> str:
    """Evaluate `body` with `n` bound to the numeric value of the stored number or numeric text
    (NULL when it is neither)."""
    return (f"(SELECT {body} FROM (SELECT CASE WHEN cv.jt = 'number' THEN cv.t::numeric "
            f"WHEN cv.jt = 'string' AND {_strip('cv.t')} ~ '{expr_n}' THEN {_strip('cv.t')}::numeric END AS n) q)")


def _datetime(body: str) -> str:
    """Evaluate `body` over the parts of the stored value read as an ISO 8601 date and time:
    `ok` (it is one, in range) and `iso` (its canonical UTC form)."""
    s = _dashed_date(_strip(PYSTR))
    return f"""(SELECT {body} FROM (
        SELECT p.ok, CASE WHEN p.ok THEN
                   to_char(p.utc, 'YYYY-MM-DD"T"HH24:MI:SS')
                   || CASE WHEN to_char(p.utc, 'US') <> '000000' THEN '.' || to_char(p.utc, 'US') ELSE '' END
                   || 'Z' END AS iso
          FROM (
            SELECT o.ok AND extract(year from o.utc) BETWEEN 1 AND 9999 AS ok, o.utc
              FROM (
                SELECT w.ok, CASE WHEN w.ok THEN
                           make_timestamp(w.m[1]::int, w.m[2]::int, w.m[3]::int, coalesce(w.m[4], '00')::int,
                                          coalesce(w.m[5], '00')::int, 0)
                           + (coalesce(w.m[6], '00') || '.' || rpad(left(coalesce(w.m[7], ''), 6), 6, '0')
                              || ' seconds')::interval
                           - make_interval(mins => w.offset_minutes) END AS utc
                  FROM (
                    SELECT z.m,
                           CASE WHEN z.m IS NULL THEN false
                                WHEN NOT {_valid_date('z.m[1]', 'z.m[2]', 'z.m[3]')} THEN false
                                WHEN coalesce(z.m[4], '00')::int > 23 OR coalesce(z.m[5], '00')::int > 59
                                     OR coalesce(z.m[6], '00')::int > 59 THEN false
                                WHEN z.m[8] IS NULL OR z.m[8] = 'Z' THEN true
                                ELSE substr(z.m[8], 2, 2)::int <= 23
                                     AND coalesce(nullif(right(replace(z.m[8], ':', ''), -3), ''), '00')::int <= 59
                           END AS ok,
                           CASE WHEN z.m[8] IS NULL OR z.m[8] = 'Z' THEN 0
                                ELSE (CASE WHEN left(z.m[8], 1) = '-' THEN -1 ELSE 1 END)
                                     * (substr(z.m[8], 2, 2)::int * 60
                                        + coalesce(nullif(right(replace(z.m[8], ':', ''), -3), ''), '00')::int)
                           END AS offset_minutes
                      FROM (SELECT regexp_match({s}, '{DATETIME_RE}') AS m) z
                  ) w
              ) o
          ) p
    ) dt)"""


def conversion_sql(field_type: str, enum_values: list[str] | None = None) -> tuple[sql.Composable, sql.Composable]:
    """(fits, converted): SQL over `cv.v`/`cv.jt`/`cv.t` for a stored value that is present."""
    fits: str
    conv: str
    match field_type:
        case FieldType.STRING:
            fits = f"({PYSTR} IS NOT NULL AND length({PYSTR}) <= {MAX_STRING})"
            conv = f"to_jsonb({PYSTR})"
        case FieldType.INTEGER:
            fits = _numeric(INT_RE, f"(n IS NOT NULL AND n = trunc(n) AND n BETWEEN {INT_MIN} AND {INT_MAX})")
            conv = _numeric(INT_RE, "to_jsonb(n::bigint)")
        case FieldType.DECIMAL:
            # coerce keeps small integers and turns the rest into floats. A decimal of at most 15
            # significant digits is the shortest text of its float, so the float Python writes reads
            # back as the same number; longer ones may not: refused.
            fits = _numeric(DEC_RE, f"(n IS NOT NULL AND ((n = trunc(n) AND abs(n) < 9007199254740992) "
                                    f"OR ({SIGNIFICANT_DIGITS} <= 15 AND abs(n) < 1e308 "
                                    f"AND (n = 0 OR abs(n) >= 1e-307))))")
            conv = _numeric(DEC_RE, "CASE WHEN n = trunc(n) AND abs(n) < 9007199254740992 THEN to_jsonb(n::bigint) "
                                    "ELSE to_jsonb(trim_scale(n)) END")
        case FieldType.BOOLEAN:
            word = f"lower({_strip(PYSTR)})"
            fits = f"(cv.jt = 'boolean' OR {word} = ANY({_text_array([*TRUE_TEXT, *FALSE_TEXT])}))"
            conv = f"(CASE WHEN cv.jt = 'boolean' THEN cv.v ELSE to_jsonb({word} = ANY({_text_array(TRUE_TEXT)})) END)"
        case FieldType.DATE:
            body_fits = f"(d.m IS NOT NULL AND {_valid_date('d.m[1]', 'd.m[2]', 'd.m[3]')})"
            source = f"(SELECT regexp_match({_dashed_date(_strip(PYSTR))}, '{DATE_RE}') AS m) d"
            fits = f"(SELECT {body_fits} FROM {source})"
            conv = f"(SELECT to_jsonb(d.m[1] || '-' || d.m[2] || '-' || d.m[3]) FROM {source})"
        case FieldType.DATETIME:
            fits = _datetime("coalesce(dt.ok, false)")
            conv = _datetime("to_jsonb(dt.iso)")
        case FieldType.EMAIL:
            address = f"lower({_strip(PYSTR)})"
            fits = f"({address} ~ '{EMAIL_RE}' AND length({address}) <= 254)"
            conv = f"to_jsonb({address})"
        case FieldType.PHONE:
            number = _strip(PYSTR)
            fits = f"({number} ~ '{PHONE_RE}')"
            conv = f"to_jsonb(regexp_replace({number}, '[ ().-]', '', 'g'))"
        case FieldType.ENUM:
            if enum_values:
                fits = f"({PYSTR} = ANY({_text_array([str(v) for v in enum_values])}))"
            else:
                fits = f"({PYSTR} IS NOT NULL)"
            conv = f"to_jsonb({PYSTR})"
        case FieldType.JSON:
            # Python reads JSON numbers with a fraction or an exponent as floats: refuse texts with
            # numbers a float would not give back as they are (PostgreSQL keeps them exact).
            unsafe = SIGNIFICANT_DIGITS.replace("(n)", "(x.n)")
            fits = (f"(cv.jt <> 'string' OR (SELECT p.j IS NOT NULL AND NOT EXISTS ("
                    f"SELECT 1 FROM jsonb_path_query(p.j, 'lax $.** ? (@.type() == \"number\")') AS e(v), "
                    f"LATERAL (SELECT e.v::text::numeric AS n) x "
                    f"WHERE NOT ((x.n = trunc(x.n) AND abs(x.n) < 9007199254740992) OR ({unsafe} <= 15 "
                    f"AND abs(x.n) < 1e308 AND (x.n = 0 OR abs(x.n) >= 1e-307)))) "
                    f"FROM (SELECT pg_temp.schemas_try_jsonb(cv.t) AS j) p))")
            conv = "(CASE WHEN cv.jt = 'string' THEN nullif(pg_temp.schemas_try_jsonb(cv.t), 'null'::jsonb) ELSE cv.v END)"
        case _:
            raise ValueError(f"unknown type {field_type}")
    if field_type not in (FieldType.STRING, FieldType.JSON):
        fits = f"({EMPTY} OR coalesce({fits}, false))"
        conv = f"(CASE WHEN {EMPTY} THEN NULL ELSE {conv} END)"
    else:
        fits = f"coalesce({fits}, false)"
    fits = f"(cv.jt = 'null' OR {fits})"
    conv = f"(CASE WHEN cv.jt = 'null' THEN NULL ELSE {conv} END)"
    return sql.SQL(fits), sql.SQL(conv)


# Text to JSON without raising: a session-local function, created in the converting transaction
# (PostgreSQL 15 has no `IS JSON`), so that no migration is needed.
PRELUDE_SQL = """
CREATE OR REPLACE FUNCTION pg_temp.schemas_try_jsonb(value text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$
"""


def value_columns(value: sql.Composable) -> sql.Composable:
    """`CROSS JOIN LATERAL (...) cv`: the columns the conversion expressions read, for `value`
    (a JSONB expression such as `r.attributes -> 'age'`)."""
    return sql.SQL(
        "CROSS JOIN LATERAL (SELECT i.v, jsonb_typeof(i.v) AS jt, i.v #>> '{{}}' AS t FROM (SELECT {} AS v) i) cv"
    ).format(value)
