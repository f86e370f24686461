"""SQL functions the bulk import uses to check and convert values in the database (see
apps/schemas/imports.py). They are the slow paths: the common shapes (YYYY-MM-DD dates, plain
numbers, e-mails...) are converted by inline expressions; these handle the rarer ISO 8601 forms and
JSON text, and return NULL for a value that does not fit instead of raising, so that one bad value
never aborts a statement over millions of rows."""

from django.db import migrations

SQL = r"""
-- 'YYYY-MM-DD' of an ISO 8601 date as Python's date.fromisoformat reads it (YYYY-MM-DD, YYYYMMDD,
-- YYYY-Www[-D], YYYYWww[D]); NULL when it is not one.
CREATE OR REPLACE FUNCTION schemas_import_date(value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m text[];
    y int; mo int; d int; w int; wd int;
    jan4 date;
    jan1_dow int;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    m := coalesce(regexp_match(value, '^([0-9]{4})-([0-9]{2})-([0-9]{2})$'),
                  regexp_match(value, '^([0-9]{4})([0-9]{2})([0-9]{2})$'));
    IF m IS NOT NULL THEN
        y := m[1]::int; mo := m[2]::int; d := m[3]::int;
        IF y < 1 OR mo < 1 OR mo > 12 OR d < 1
           OR d > extract(day FROM make_date(y, mo, 1) + interval '1 month - 1 day')::int THEN
            RETURN NULL;
        END IF;
        RETURN to_char(make_date(y, mo, d), 'YYYY-MM-DD');
    END IF;
    m := coalesce(regexp_match(value, '^([0-9]{4})-W([0-9]{2})(?:-([0-9]))?$'),
                  regexp_match(value, '^([0-9]{4})W([0-9]{2})([0-9])?$'));
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    y := m[1]::int; w := m[2]::int; wd := coalesce(m[3], '1')::int;
    IF y < 1 OR w < 1 OR w > 53 OR wd < 1 OR wd > 7 THEN
        RETURN NULL;
    END IF;
    IF w = 53 THEN
        -- an ISO year has 53 weeks when it starts on a Thursday, or on a Wednesday in a leap year
        jan1_dow := extract(isodow FROM make_date(y, 1, 1))::int;
        IF NOT (jan1_dow = 4 OR (jan1_dow = 3 AND (y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0)))) THEN
            RETURN NULL;
        END IF;
    END IF;
    jan4 := make_date(y, 1, 4);
    RETURN to_char(jan4 - (extract(isodow FROM jan4)::int - 1) + (w - 1) * 7 + (wd - 1), 'YYYY-MM-DD');
END;
$$;

-- 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' (UTC) of an ISO 8601 date and time, the way
-- apps.schemas.types.coerce writes it: a date alone is midnight, no offset means UTC. The caller
-- has already stripped the value and replaced 'Z' by '+00:00', as coerce does. Accepted: a date as
-- schemas_import_date reads it, then optionally 'T', 't' or ' ' and a time HH[:MM[:SS[.f]]] or
-- HH[MM[SS[.f]]] (',' for '.' too; digits past the sixth are dropped), then an offset ±HH[:MM[:SS]]
-- or ±HH[MM[SS]] of less than 24 hours. NULL for anything else (Python accepts a few more exotic
-- shapes; the import refuses them rather than guess).
CREATE OR REPLACE FUNCTION schemas_import_datetime(value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m text[];
    day text;
    hh int; mi int; ss int; us int := 0; frac text;
    off_seconds int := 0; oh int; om int; os int;
    moment timestamp;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    m := regexp_match(value,
        '^([0-9]{4}-?[0-9]{2}-?[0-9]{2}|[0-9]{4}-?W[0-9]{2}(?:-?[0-9])?)'
        '(?:[Tt ]([0-9]{2})(?:(:?)([0-9]{2})(?:\3([0-9]{2})(?:[.,]([0-9]+))?)?)?'
        '(?:([+-])([0-9]{2})(?:(:?)([0-9]{2})(?:\9([0-9]{2}))?)?)?)?$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    day := schemas_import_date(m[1]);
    IF day IS NULL THEN
        RETURN NULL;
    END IF;
    hh := coalesce(m[2], '0')::int; mi := coalesce(m[4], '0')::int; ss := coalesce(m[5], '0')::int;
    IF hh > 23 OR mi > 59 OR ss > 59 THEN
        RETURN NULL;
    END IF;
    IF m[6] IS NOT NULL THEN
        frac := rpad(left(m[6], 6), 6, '0');
        us := frac::int;
    END IF;
    IF m[7] IS NOT NULL THEN
        oh := m[8]::int; om := coalesce(m[10], '0')::int; os := coalesce(m[11], '0')::int;
        IF om > 59 OR os > 59 THEN
            RETURN NULL;
        END IF;
        off_seconds := oh * 3600 + om * 60 + os;
        IF off_seconds >= 86400 THEN
            RETURN NULL;
        END IF;
        IF m[7] = '-' THEN
            off_seconds := -off_seconds;
        END IF;
    END IF;
    moment := day::date + make_interval(hours => hh, mins => mi, secs => ss + us / 1000000.0)
              - make_interval(secs => off_seconds);
    IF moment < '0001-01-01 00:00:00'::timestamp OR moment >= '10000-01-01 00:00:00'::timestamp THEN
        RETURN NULL;
    END IF;
    RETURN to_char(moment, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM moment)::int % 1000000 = 0 THEN ''
                ELSE '.' || to_char(moment, 'US') END
        || 'Z';
END;
$$;

-- The float nearest to `value`, as the shortest decimal that reads back as that float: what Python's
-- repr() (and so json.dumps) writes. PostgreSQL's own output is that shortest form except when the
-- float sits exactly between two shorter decimals, where it prints 17 digits.
CREATE OR REPLACE FUNCTION schemas_import_float(value numeric) RETURNS numeric
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    f float8 := value::float8;
    x numeric := trim_scale(f::text::numeric);
    digits int := length(rtrim(ltrim(replace(split_part(f::text, 'e', 1), '.', ''), '-0'), '0'));
    magnitude int;
    candidate numeric;
BEGIN
    IF f = 0 OR digits <= 15 THEN
        RETURN x;
    END IF;
    magnitude := floor(log(abs(x)))::int;
    FOR p IN 15..16 LOOP
        candidate := round(x, p - 1 - magnitude);
        IF abs(candidate) <= 1.7976931348623157e308 AND candidate::float8 = f THEN
            RETURN trim_scale(candidate);
        END IF;
    END LOOP;
    RETURN x;
END;
$$;

-- The JSON value of a text, or NULL when it is not valid JSON (PostgreSQL refuses NaN and
-- Infinity, which Python's json module reads).
CREATE OR REPLACE FUNCTION schemas_import_jsonb(value text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
"""

REVERSE = """
DROP FUNCTION IF EXISTS schemas_import_float(numeric);
DROP FUNCTION IF EXISTS schemas_import_jsonb(text);
DROP FUNCTION IF EXISTS schemas_import_datetime(text);
DROP FUNCTION IF EXISTS schemas_import_date(text);
"""


class Migration(migrations.Migration):
    dependencies = [("schemas", "0002_functions")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
