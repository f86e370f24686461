"""Bulk import of CSV and JSON-lines files into the records of a schema.

`import_create` stores the uploaded file under MEDIA_ROOT/imports/<tenant>/ and asks a worker, after
commit, to run `import_run`, which loads the file in phases, each in its own short transaction so
that the API shows progress:

1. **load**: the file is streamed with `COPY ... FROM STDIN` into a temporary staging table (one
   text column per CSV column, or one jsonb column per JSON line, and the line number). Its raw
   bytes go straight to PostgreSQL, which parses the CSV; a file PostgreSQL cannot take as a whole
   (a line with the wrong number of columns, a line that is not JSON) is loaded again line by line
   (Python's csv module, or PostgreSQL parsing each JSON line on its own), and the malformed lines
   become rejects. -> `rows_read`
2. **check**: one `INSERT ... SELECT` checks every value of every row against its field's type,
   in SQL (the SQL twin of `apps.schemas.types.coerce`, built by the `_Conversion` classes below),
   and writes each row's key and converted attributes, or that it does not fit, to a second
   temporary table. Then the rejects report (line, column, value, reason) of the first
   REJECTS_REPORT_MAX_LINES rejected lines is written as CSV. -> `rows_valid`, `rows_rejected`
3. **write** (not at all in all_or_nothing mode when a line was rejected): under the schema's row
   lock (FOR UPDATE: record writes and schema changes of this schema wait, readers do not), one
   `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE <attributes differ>` upserts the valid
   rows, rewriting only the records that change (a plain INSERT when the schema has no record
   yet). A key on several lines: the last valid line wins. -> `rows_inserted`, `rows_updated`
4. the job is marked succeeded (or failed, with a message); the uploaded file is deleted.

A **first load** (upsert mode, the schema has no record) fuses 2 and 3: under the schema's lock, one
`INSERT … SELECT` checks and converts the staged rows and writes those that fit straight into
`schemas_record`, noting the lines of the others for the rejects report (`_first_load`); all the
counters then appear at the end. A key on several lines sends it back to the two-pass way.

Python never holds more than a chunk of the file: memory stays bounded whatever its size.
docs/import.md says what users are promised."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from psycopg import errors as pg_errors
from psycopg import sql

from apps.core.errors import ApplicationError, NotFound
from apps.schemas.models import DataSchema, Field, FieldType, ImportFormat, ImportJob, ImportMode, ImportStatus
from apps.schemas.types import FALSE_TEXT, MAX_STRING, TRUE_TEXT
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import TenantScopeError, tenant_scope
from apps.tenants.services import audit_record

log = logging.getLogger(__name__)

# Limits (docs/import.md) ------------------------------------------------------------------------

MAX_KEY = 255                      # as apps.schemas.services: Record.key is varchar(255)
MAX_INDEXED_TEXT = 2000            # as apps.schemas.services: text of indexed fields
MAX_COLUMNS = 500
REJECTS_REPORT_MAX_LINES = 100_000
REJECT_VALUE_MAX = 1000            # characters of a rejected value shown in the report
CHUNK = 1 << 20
MAX_DECIMAL_TEXT = 1000

# Python codec name -> PostgreSQL client encoding
ENCODINGS = {
    "utf-8": "UTF8", "utf-8-sig": "UTF8", "ascii": "UTF8",
    "iso8859-1": "LATIN1", "iso8859-15": "LATIN9", "cp1252": "WIN1252", "cp1250": "WIN1250",
    "cp1251": "WIN1251", "iso8859-2": "LATIN2", "koi8-r": "KOI8R", "shift_jis": "SJIS", "gb18030": "GB18030",
    "euc_jp": "EUC_JP", "big5": "BIG5",
}
JSONL_EXTENSIONS = (".jsonl", ".ndjson", ".jsonlines")
REJECTS_HEADER = "line,column,value,reason\n"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# What Python's str.strip() and the regex \s strip: the characters for which str.isspace() holds
# (tests/schemas/test_import_sql.py checks the list).
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

# JIT compiling these wide expressions costs more than it saves (measured: twice as slow).
SESSION_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"
# Staging tables live in the session's temporary schema; one import runs at a time per connection.
STAGE, ROWS, REJECTS = sql.Identifier("import_stage"), sql.Identifier("import_rows"), sql.Identifier("import_rejects")
# The first load's single pass notes the lines it leaves out here, through pg_temp.schemas_import_reject.
REJECTED = sql.Identifier("import_rejected")


class ImportFailed(Exception):
    """The file cannot be imported as a whole; the message is for the user, and nothing changed."""


# Storage ------------------------------------------------------------------------------------------

def import_directory(tenant_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports" / str(int(tenant_id))


def import_upload_path(tenant_id: int) -> Path:
    """A new, unique place for an uploaded file of `tenant_id`."""
    return import_directory(tenant_id) / uuid.uuid4().hex


def _media_relative(path: Path) -> str:
    return str(path.relative_to(Path(settings.MEDIA_ROOT)))


def _media_path(relative: str) -> Path:
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise TenantScopeError(f"refusing a file outside MEDIA_ROOT: {relative!r}")
    return path


def _remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _store(tenant: Tenant, file: Any) -> Path:
    """Where the upload is: a file the upload handler already wrote in the tenant's directory is
    kept where it is; anything else is copied there chunk by chunk."""
    stored = getattr(file, "stored_path", None)
    if stored is not None and Path(stored).parent == import_directory(tenant.pk):
        return Path(stored)
    path = import_upload_path(tenant.pk)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as out:
            chunks = file.chunks(CHUNK) if hasattr(file, "chunks") else iter(lambda: file.read(CHUNK), b"")
            for chunk in chunks:
                out.write(chunk)
    except BaseException:
        _remove(path)
        raise
    return path


# Options ------------------------------------------------------------------------------------------

def _encoding_name(value: str) -> str:
    try:
        name = codecs.lookup(value).name
    except LookupError:
        name = ""
    if name not in ENCODINGS:
        raise ApplicationError("Unsupported encoding.", fields={"encoding": [
            f"Choose one of {', '.join(sorted(ENCODINGS))}."]})
    return name


def _single_char(value: Any, field: str, default: str) -> str:
    if value in (None, ""):
        return default
    value = {"tab": "\t", "\\t": "\t"}.get(value, value)
    if not isinstance(value, str) or len(value) != 1 or not value.isascii() or value in "\r\n\0" \
            or (value.isalnum()):
        raise ApplicationError("Invalid CSV option.", fields={field: ["One ASCII character, not a letter or digit."]})
    return value


def import_format_for(name: str, given: str | None) -> str:
    if given:
        if given not in ImportFormat.values:
            raise ApplicationError("Unknown format.", fields={"format": [f"One of {', '.join(ImportFormat.values)}."]})
        return given
    return ImportFormat.JSONL if name.lower().endswith(JSONL_EXTENSIONS) else ImportFormat.CSV


def _clean_mapping(schema: DataSchema, fields: dict[str, Field], mapping: Any) -> dict[str, str | None]:
    if mapping in (None, ""):
        return {}
    if not isinstance(mapping, dict):
        raise ApplicationError("Invalid mapping.", fields={"mapping": ["An object {column: field or null}."]})
    problems = {}
    for column, target in mapping.items():
        if target is not None and (not isinstance(target, str) or target not in fields):
            problems[f"mapping.{column}"] = [f"{target!r} is not a field of schema {schema.name}."]
    targets = [t for t in mapping.values() if t is not None]
    for target in {t for t in targets if targets.count(t) > 1}:
        problems[f"mapping.{target}"] = ["Several columns are mapped to this field."]
    if problems:
        raise ApplicationError("Invalid mapping.", fields=problems)
    return {str(column): target for column, target in mapping.items()}


# Services -----------------------------------------------------------------------------------------

def _own(tenant: Tenant, *objects: Any) -> None:
    for obj in objects:
        if obj is not None and obj.tenant_id != tenant.pk:
            raise TenantScopeError(f"{type(obj).__name__} {obj.pk} belongs to another tenant")


def _schema_fields(schema: DataSchema) -> dict[str, Field]:
    return {f.name: f for f in Field.objects.filter(schema=schema).order_by("position", "id")}


def import_create(*, tenant: Tenant, schema: DataSchema, file: Any, by: User | None, format: str | None = None,
                  mode: str = ImportMode.UPSERT, delimiter: str | None = None, quotechar: str | None = None,
                  encoding: str | None = None, mapping: dict[str, str | None] | None = None) -> ImportJob:
    """Store `file` (an uploaded file, read chunk by chunk) and queue its import into `schema`.
    The options are checked now; the file itself is read by the worker (a file that cannot be
    imported gives a failed job, with the reason)."""
    _own(tenant, schema)
    if file is None:
        raise ApplicationError("Send the file to import.", fields={"file": ["No file was submitted."]})
    if mode not in ImportMode.values:
        raise ApplicationError("Unknown mode.", fields={"mode": [f"One of {', '.join(ImportMode.values)}."]})
    original_name = str(getattr(file, "name", "") or "")[:255]
    fmt = import_format_for(original_name, format)
    default_delimiter = "\t" if original_name.lower().endswith(".tsv") else ","
    options = {
        "delimiter": _single_char(delimiter, "delimiter", default_delimiter),
        "quotechar": _single_char(quotechar, "quotechar", '"'),
        "encoding": _encoding_name(encoding or "utf-8"),
    }
    if options["delimiter"] == options["quotechar"]:
        raise ApplicationError("Invalid CSV option.", fields={"quotechar": ["Must differ from the delimiter."]})
    path = None
    try:
        with transaction.atomic(), tenant_scope(tenant):
            options["mapping"] = _clean_mapping(schema, _schema_fields(schema), mapping)
            path = _store(tenant, file)
            job = ImportJob.objects.create(
                tenant=tenant, schema=schema, created_by=by if by and by.is_authenticated else None,
                file=_media_relative(path), original_name=original_name, format=fmt, mode=mode, options=options)
            audit_record(tenant=tenant, actor=by, action="import.create", obj=job,
                         data={"schema": schema.name, "file": original_name, "format": fmt, "mode": mode})
            transaction.on_commit(lambda: _enqueue(job_id=job.pk, tenant_id=tenant.pk))
    except BaseException:
        _remove(path)
        raise
    return job


def _enqueue(*, job_id: int, tenant_id: int) -> None:
    from apps.schemas.tasks import run_import

    run_import.delay(job_id=job_id, tenant_id=tenant_id)


def import_run(*, tenant: Tenant, job_id: int) -> ImportJob | None:
    """Run import `job_id` to its end (idempotent: a finished job is left alone; a job whose worker
    died is run again from the start, which converges to the same records)."""
    with tenant_scope(tenant):
        if not _job_lock(job_id, acquire=True):
            log.info("import %s is running in another worker", job_id)
            return None
        try:
            with transaction.atomic():
                job = ImportJob.objects.select_for_update().select_related("schema").filter(pk=job_id).first()
                if job is None or job.status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED):
                    return job
                job.status, job.started_at, job.error = ImportStatus.RUNNING, timezone.now(), ""
                job.rows_read = job.rows_valid = job.rows_rejected = job.rows_inserted = job.rows_updated = 0
                job.save()
            try:
                _Loader(job).run()
            except ImportFailed as exc:
                _finish(job, ImportStatus.FAILED, str(exc))
            except Exception:
                log.exception("import %s failed", job_id)
                _finish(job, ImportStatus.FAILED, "The import failed because of an internal error. Try again later.")
            finally:
                _remove(_media_path(job.file))
            job.refresh_from_db()
            return job
        finally:
            _job_lock(job_id, acquire=False)


def _job_lock(job_id: int, *, acquire: bool) -> bool:
    """A session lock per job, so that a redelivered message does not run a job twice at once."""
    statement = ("SELECT pg_try_advisory_lock(hashtext('schemas.import'), %s)" if acquire
                 else "SELECT pg_advisory_unlock(hashtext('schemas.import'), %s)")
    with connection.cursor() as cursor:
        cursor.execute(statement, [int(job_id) % 2**31])
        return bool(cursor.fetchone()[0])


def _progress(job: ImportJob, **counters: int) -> None:
    for name, value in counters.items():
        setattr(job, name, value)
    ImportJob.objects.filter(pk=job.pk).update(**counters)


def _finish(job: ImportJob, status: str, error: str = "", **counters: int) -> None:
    values = {"status": status, "error": error, "finished_at": timezone.now(), **counters}
    if status == ImportStatus.FAILED:
        values.update(rows_inserted=0, rows_updated=0)
    _progress(job, **values)


# Selectors ----------------------------------------------------------------------------------------

def import_schema_get(*, tenant: Tenant, name: str) -> DataSchema:
    with tenant_scope(tenant):
        schema = DataSchema.objects.filter(tenant=tenant, name=str(name)).first()
    if schema is None:
        raise NotFound("No such schema.")
    return schema


def import_list(*, tenant: Tenant, schema: DataSchema) -> QuerySet[ImportJob]:
    with tenant_scope(tenant):
        return (ImportJob.objects.filter(tenant=tenant, schema=schema).select_related("schema", "created_by")
                .order_by("-created_at", "-id"))


def import_get(*, tenant: Tenant, schema: DataSchema, id: Any) -> ImportJob:
    """The import `id` of `schema`; the same NotFound for another schema's or another tenant's."""
    try:
        pk = int(id)
    except (TypeError, ValueError):
        raise NotFound("No such import.") from None
    with tenant_scope(tenant):
        job = import_list(tenant=tenant, schema=schema).filter(pk=pk).first()
    if job is None:
        raise NotFound("No such import.")
    return job


def import_rejects_open(*, job: ImportJob) -> IO[bytes]:
    """The rejects report of `job` as a CSV file (just the header when there are no rejects).
    Cells that a spreadsheet would run as a formula are neutralised when the report is written."""
    if job.rejects_file:
        with contextlib.suppress(FileNotFoundError):
            return open(_media_path(job.rejects_file), "rb")  # the response closes it
    return io.BytesIO(REJECTS_HEADER.encode())


# SQL twins of types.coerce ------------------------------------------------------------------------

S, L, Id = sql.SQL, sql.Literal, sql.Identifier
WS = L(WHITESPACE)
# int() strips whitespace but for the four separators U+001C..U+001F, which str.strip() removes
WS_INT = L("".join(c for c in WHITESPACE if not "\x1c" <= c <= "\x1f"))
INT_RE = "^[+-]?[0-9]+$"
DEC_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$"
DEC_ANY_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
NOT_FINITE_RE = "^[+-]?(inf|infinity|s?nan[0-9]*)$"
_NOT_WS = "@" + WHITESPACE
EMAIL_RE = f"^[^{_NOT_WS}]+@[^{_NOT_WS}]+\\.[^{_NOT_WS}]+$"
PHONE_RE = r"^\+?[0-9 ().-]{6,20}$"
ISO_DATE_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# YYYY-MM-DD that is a date whatever the year and month: year not 0000, month 01-12, day 01-28
EASY_DATE_RE = "^([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$"
FLOAT_MAX = 2**1024 - 2**970                  # float(Decimal) overflows from here
FLOAT_ZERO = "2.4703282292062328e-324"          # float(Decimal) rounds to 0.0 below this (2**-1075)


def _in(expr: sql.Composable, values: Any) -> sql.Composable:
    return S("{} IN ({})").format(expr, S(", ").join(L(v) for v in sorted(values)))


class _Conversion:
    """How values of one field type are checked and converted in SQL, the way
    `types.coerce(type, text)` does in Python. Expressions read `t` (the text as coerce would get
    it; NULL for no value) and `n` (`norm(t)`, computed once per row by the caller). Where matching
    Python exactly is not worth it, SQL refuses what Python would accept, never the reverse
    (docs/import.md lists the cases)."""

    sql_type = "text"                 # of value()

    def __init__(self, field_type: str, enum_values: list[str] | None = None) -> None:
        self.type = field_type
        self.enum_values = [str(v) for v in (enum_values or [])]

    def norm(self, t: sql.Composable) -> sql.Composable:
        return t

    def convert(self, m: sql.Composable) -> sql.Composable:
        """A second step after norm() (its result is `n`), for conversions that use the normalised
        text several times."""
        return m

    def empty(self, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        """The value converts to None (the field is removed)."""
        return S("({t} IS NULL OR {t} = '')").format(t=t)

    def ok(self, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        raise NotImplementedError

    def value(self, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        raise NotImplementedError

    def reason(self, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        raise NotImplementedError

    def as_jsonb(self, expr: sql.Composable) -> sql.Composable:
        return expr if self.sql_type == "jsonb" else S("to_jsonb({})").format(expr)

    # JSON lines: what `t` is for a JSON value `j` of jsonb_typeof `jt` (Python's str(value))
    def json_text(self, j: sql.Composable, jt: sql.Composable) -> sql.Composable:
        return S("(CASE {jt} WHEN 'string' THEN {j} #>> '{{}}' WHEN 'number' THEN {num} "
                 "WHEN 'boolean' THEN initcap({j} #>> '{{}}') END)").format(
            j=j, jt=jt, num=_python_number_text(S("({} #>> '{{}}')").format(j)))

    def json_shape_ok(self, j: sql.Composable, jt: sql.Composable) -> sql.Composable:
        """Whether a JSON value of this shape can be read as this type at all."""
        return S("({jt} IS NULL OR {jt} IN ('string', 'boolean', 'null') "
                 "OR ({jt} = 'number' AND {num} IS NOT NULL))").format(
            jt=jt, num=_python_number_text(S("({} #>> '{{}}')").format(j)))


def with_normalised(query: sql.Composable, columns: list[tuple[int, _Conversion]]) -> sql.Composable:
    """`query` (which has `t<i>`) with `n<i>` added: norm(t), then convert(norm(t)) for the types
    that convert in a second step."""
    norms = S(", ").join(S("{} AS {}").format(conv.norm(S("a.{}").format(Id(f"t{i}"))), Id(f"m{i}"))
                         for i, conv in columns)
    converts = S(", ").join(S("{} AS {}").format(conv.convert(S("b.{}").format(Id(f"m{i}"))), Id(f"n{i}"))
                            for i, conv in columns)
    if not columns:
        return query
    return S("SELECT b.*, {converts} FROM (SELECT a.*, {norms} FROM ({query}) a OFFSET 0) b OFFSET 0").format(
        converts=converts, norms=norms, query=query)


def _python_number_text(x: sql.Composable) -> sql.Composable:
    """str() of the number Python's json reads from the JSON text `x` (as jsonb prints it):
    integers as they are; floats as repr() prints them, for magnitudes where PostgreSQL's shortest
    float output and Python's agree (NULL elsewhere: refused). jsonb forgets how a number was
    written: a whole number of 16 digits or more may have been a float in exponent notation, which
    Python would print as such, and a zero float may have been -0.0: both are refused too."""
    return S("(CASE WHEN strpos({x}, '.') = 0 THEN (CASE WHEN abs({x}::numeric) < 1e16 THEN {x} END) "
             "WHEN abs({x}::numeric) BETWEEN 0.0001 AND 999999999999999 THEN "
             "(SELECT CASE WHEN f ~ '^-?[0-9]+$' THEN f || '.0' ELSE f END "
             "FROM (SELECT schemas_import_float({x}::numeric)::text) v(f)) "
             "END)").format(x=x)


class _String(_Conversion):
    def empty(self, t, n):
        return S("({} IS NULL)").format(t)

    def ok(self, t, n):
        return S("({t} IS NULL OR char_length({t}) <= {max})").format(t=t, max=L(MAX_STRING))

    def value(self, t, n):
        return t

    def reason(self, t, n):
        return L(f"longer than {MAX_STRING} characters")


class _Integer(_Conversion):
    sql_type = "bigint"

    def norm(self, t):
        return S("btrim({}, {})").format(t, WS_INT)

    def _in_range(self, n):
        return S("(CASE WHEN {n} ~ '^[+-]?0*[0-9]{{1,18}}$' THEN true "
                 "ELSE {n}::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 END)").format(n=n)

    def ok(self, t, n):
        return S("(CASE WHEN {empty} THEN true WHEN {n} !~ {re} THEN false ELSE {range} END)").format(
            empty=self.empty(t, n), n=n, re=L(INT_RE), range=self._in_range(n))

    def value(self, t, n):
        return S("(CASE WHEN {n} ~ {re} AND {range} THEN {n}::numeric::bigint END)").format(
            n=n, re=L(INT_RE), range=self._in_range(n))

    def reason(self, t, n):
        return S("(CASE WHEN {n} ~ {re} THEN 'integer out of range' ELSE 'not an integer' END)").format(
            n=n, re=L(INT_RE))

    def json_text(self, j, jt):
        # A JSON number is an int or a float in Python; a float that is a whole number is accepted.
        # Beyond 2**53 jsonb cannot tell an int from a float Python would have rounded: refused.
        x = S("({} #>> '{{}}')").format(j)
        return S("(CASE {jt} WHEN 'string' THEN {x} WHEN 'number' THEN "
                 "(CASE WHEN strpos({x}, '.') = 0 AND abs({x}::numeric) < 9007199254740992 THEN {x} "
                 "WHEN {x} ~ '^-?[0-9]+\\.0*$' AND abs({x}::numeric) < 9007199254740992 THEN split_part({x}, '.', 1) "
                 "ELSE 'x' END) END)").format(jt=jt, x=x)

    def json_shape_ok(self, j, jt):
        return S("({jt} IS NULL OR {jt} IN ('string', 'number', 'null'))").format(jt=jt)


class _Decimal(_Conversion):
    sql_type = "jsonb"

    def norm(self, t):
        return S("replace(btrim({}, {}), '_', '')").format(t, WS)

    def _number(self, n):
        return S("{}::numeric").format(n)

    def ok(self, t, n):
        return S("(CASE WHEN {empty} THEN true WHEN char_length({n}) > {len} OR {n} !~ {re} THEN false "
                 "ELSE abs({num}) < {max} END)").format(
            empty=self.empty(t, n), n=n, len=L(MAX_DECIMAL_TEXT), re=L(DEC_RE), num=self._number(n),
            max=S(str(FLOAT_MAX)))

    def value(self, t, n):
        num = self._number(n)
        # JSON numbers as coerce makes them: whole numbers below 2**53 as ints, the rest as floats
        return S("(CASE WHEN char_length({n}) <= {len} AND {n} ~ {re} AND abs({num}) < {max} THEN "
                 "(CASE WHEN {num} = trunc({num}) AND abs({num}) < 9007199254740992 THEN to_jsonb({num}::bigint) "
                 "WHEN abs({num}) < {zero} THEN to_jsonb(0.0::float8) "
                 "ELSE to_jsonb(schemas_import_float({num})) END) END)").format(
            n=n, len=L(MAX_DECIMAL_TEXT), re=L(DEC_RE), num=num, max=S(str(FLOAT_MAX)), zero=S(FLOAT_ZERO))

    def reason(self, t, n):
        return S("(CASE WHEN {n} ~* {nf} THEN 'not a finite number' WHEN {n} ~ {any} THEN 'number out of range' "
                 "ELSE 'not a number' END)").format(n=n, nf=L(NOT_FINITE_RE), any=L(DEC_ANY_RE))

    def json_text(self, j, jt):
        # jsonb keeps a number's digits exactly; Decimal(repr(float)) of what Python reads rounds
        # the same way the conversion to float8 does.
        return S("(CASE WHEN {jt} IN ('string', 'number') THEN {j} #>> '{{}}' END)").format(j=j, jt=jt)

    def json_shape_ok(self, j, jt):
        return S("({jt} IS NULL OR {jt} IN ('string', 'number', 'null'))").format(jt=jt)


class _Boolean(_Conversion):
    sql_type = "boolean"

    def norm(self, t):
        return S("lower(btrim({}, {}))").format(t, WS)

    def ok(self, t, n):
        return S("({empty} OR {n_in})").format(empty=self.empty(t, n), n_in=_in(n, TRUE_TEXT | FALSE_TEXT))

    def value(self, t, n):
        return S("(CASE WHEN {t_in} THEN true WHEN {f_in} THEN false END)").format(
            t_in=_in(n, TRUE_TEXT), f_in=_in(n, FALSE_TEXT))

    def reason(self, t, n):
        return L("not a yes/no value (true/false)")

    def json_text(self, j, jt):
        return S("(CASE {jt} WHEN 'string' THEN {j} #>> '{{}}' WHEN 'number' THEN {j} #>> '{{}}' "
                 "WHEN 'boolean' THEN {j} #>> '{{}}' END)").format(j=j, jt=jt)

    def json_shape_ok(self, j, jt):
        return S("({jt} IS NULL OR {jt} IN ('string', 'number', 'boolean', 'null'))").format(jt=jt)


class _Date(_Conversion):
    def norm(self, t):
        return S("btrim({}, {})").format(t, WS)

    def convert(self, n):
        # The common YYYY-MM-DD inline; other ISO forms through schemas_import_date().
        y, m, d = (S("substr({}, {}, {}) COLLATE \"C\"").format(n, L(a), L(b)) for a, b in ((1, 4), (6, 2), (9, 2)))
        leap = S("(mod(substr({n}, 1, 4)::int, 4) = 0 AND (mod(substr({n}, 1, 4)::int, 100) <> 0 "
                 "OR mod(substr({n}, 1, 4)::int, 400) = 0))").format(n=n)
        last = S("(CASE {m} WHEN '02' THEN (CASE WHEN {leap} THEN '29' ELSE '28' END) "
                 "WHEN '04' THEN '30' WHEN '06' THEN '30' WHEN '09' THEN '30' WHEN '11' THEN '30' ELSE '31' END)"
                 ).format(m=m, leap=leap)
        # Most dates need one regular expression; days 29-31 and other forms take the longer way.
        return S("(CASE WHEN {n} ~ {easy} THEN {n} WHEN {n} ~ {re} THEN (CASE WHEN {y} <> '0000' "
                 "AND {m} BETWEEN '01' AND '12' AND {d} >= '01' AND {d} <= {last} THEN {n} END) "
                 "ELSE schemas_import_date({n}) END)").format(
            n=n, easy=L(EASY_DATE_RE), re=L(ISO_DATE_RE), y=y, m=m, d=d, last=last)

    def ok(self, t, n):
        return S("({empty} OR {n} IS NOT NULL)").format(empty=self.empty(t, n), n=n)

    def value(self, t, n):
        return S("(CASE WHEN NOT {empty} THEN {n} END)").format(empty=self.empty(t, n), n=n)

    def reason(self, t, n):
        return L("not a date (YYYY-MM-DD)")


class _Datetime(_Conversion):
    def norm(self, t):
        return S("schemas_import_datetime(replace(btrim({}, {}), 'Z', '+00:00'))").format(t, WS)

    def ok(self, t, n):
        return S("({empty} OR {n} IS NOT NULL)").format(empty=self.empty(t, n), n=n)

    def value(self, t, n):
        return S("(CASE WHEN NOT {empty} THEN {n} END)").format(empty=self.empty(t, n), n=n)

    def reason(self, t, n):
        return L("not a date and time (ISO 8601)")


class _Email(_Conversion):
    def norm(self, t):
        return S("lower(btrim({}, {}))").format(t, WS)

    def ok(self, t, n):
        # Python lower-cases İ to two characters and Σ by its place in a word; PostgreSQL does
        # neither: refused.
        return S("({empty} OR ({n} ~ {re} AND char_length({n}) <= 254 AND strpos({t}, 'İ') = 0 "
                 "AND strpos({t}, 'Σ') = 0))").format(
            empty=self.empty(t, n), n=n, t=t, re=L(EMAIL_RE))

    def value(self, t, n):
        return S("(CASE WHEN NOT {empty} THEN {n} END)").format(empty=self.empty(t, n), n=n)

    def reason(self, t, n):
        return L("not an e-mail address")


class _Phone(_Conversion):
    def norm(self, t):
        return S("btrim({}, {})").format(t, WS)

    def ok(self, t, n):
        return S("({empty} OR {n} ~ {re})").format(empty=self.empty(t, n), n=n, re=L(PHONE_RE))

    def value(self, t, n):
        return S("(CASE WHEN NOT {empty} THEN translate({n}, ' ().-', '') END)").format(empty=self.empty(t, n), n=n)

    def reason(self, t, n):
        return L("not a phone number")


class _Enum(_Conversion):
    def ok(self, t, n):
        if not self.enum_values:
            return S("true")
        return S("({empty} OR {t} = ANY({values}))").format(
            empty=self.empty(t, n), t=t, values=S("{}::text[]").format(L(self.enum_values)))

    def value(self, t, n):
        return S("(CASE WHEN NOT {empty} THEN {t} END)").format(empty=self.empty(t, n), t=t)

    def reason(self, t, n):
        return L(f"not one of {', '.join(self.enum_values)}")


class _Json(_Conversion):
    sql_type = "jsonb"

    def norm(self, t):
        return S("schemas_import_jsonb({})").format(t)

    def empty(self, t, n):
        return S("({t} IS NULL OR {n} = 'null'::jsonb)").format(t=t, n=n)

    def ok(self, t, n):
        return S("({t} IS NULL OR {n} IS NOT NULL)").format(t=t, n=n)

    def value(self, t, n):
        return S("(CASE WHEN {n} <> 'null'::jsonb THEN {n} END)").format(n=n)

    def reason(self, t, n):
        return L("not valid JSON")

    def json_text(self, j, jt):
        # coerce reads a string as JSON text, as it reads a CSV cell; other values are taken as they are
        return S("(CASE WHEN {jt} = 'string' THEN {j} #>> '{{}}' ELSE ({j})::text END)").format(j=j, jt=jt)

    def json_shape_ok(self, j, jt):
        return S("true")


CONVERSIONS: dict[str, type[_Conversion]] = {
    FieldType.STRING: _String, FieldType.INTEGER: _Integer, FieldType.DECIMAL: _Decimal,
    FieldType.BOOLEAN: _Boolean, FieldType.DATE: _Date, FieldType.DATETIME: _Datetime, FieldType.EMAIL: _Email,
    FieldType.PHONE: _Phone, FieldType.ENUM: _Enum, FieldType.JSON: _Json,
}


def conversion_for(field_type: str, enum_values: list[str] | None = None) -> _Conversion:
    return CONVERSIONS[field_type](field_type, enum_values)


# The loader ---------------------------------------------------------------------------------------

@dataclass
class _Column:
    """A field the file provides: from CSV column `index` (named `source` in the header) or JSON
    key `source`; `i` numbers the SQL names of its expressions."""

    i: int
    field: Field
    source: str
    conversion: _Conversion
    index: int = -1
    is_key: bool = False

    @property
    def required(self) -> bool:
        return self.is_key or self.field.required

    @property
    def max_length(self) -> int | None:
        if self.conversion.sql_type != "text":
            return None
        if self.is_key:
            return MAX_KEY
        return MAX_INDEXED_TEXT if self.field.indexed else None


def _raw(cur: Any) -> psycopg.Cursor:
    return cur.cursor  # Django's cursor wrapper around psycopg's


class _Loader:
    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.schema = job.schema
        self.tenant_id = job.tenant_id
        self.options = job.options or {}
        self.encoding = self.options.get("encoding", "utf-8")
        self.mapping: dict[str, str | None] = self.options.get("mapping") or {}
        self.path = _media_path(job.file)
        self.fields = _schema_fields(self.schema)
        self.fingerprint = self._fingerprint(self.fields)
        self.columns: list[_Column] = []
        self.ncols = 0
        self.is_jsonl = job.format == ImportFormat.JSONL
        self.duplicate_keys = False  # found by the first load's single pass

    # -- the phases --------------------------------------------------------------------------
    def run(self) -> None:
        if self.schema.primary_key not in self.fields:
            raise ImportFailed(f"Schema {self.schema.name} has no key field {self.schema.primary_key!r}.")
        if not self.path.exists() or self.path.stat().st_size == 0:
            raise ImportFailed("The file is empty.")
        try:
            self._drop()
            read = self._load_jsonl() if self.is_jsonl else self._load_csv()
            _progress(self.job, rows_read=read)
            if read == 0 and self.is_jsonl:
                raise ImportFailed("The file has no lines.")
            if self.job.mode == ImportMode.UPSERT and self._first_load(read):
                return
            rejected = self._check()
            _progress(self.job, rows_valid=read - rejected, rows_rejected=rejected)
            if rejected:
                self._write_rejects_report(S("SELECT line FROM {} WHERE NOT ok").format(ROWS))
            if rejected and self.job.mode == ImportMode.ALL_OR_NOTHING:
                raise ImportFailed(self._all_or_nothing_message(rejected))
            self._write(read, rejected)
        finally:
            self._drop()

    def _drop(self) -> None:
        with transaction.atomic(), connection.cursor() as cur:
            self._execute(cur, S("DROP TABLE IF EXISTS {}, {}, {}, {}, import_lines").format(
                STAGE, ROWS, REJECTS, REJECTED))

    def _execute(self, cur: Any, statement: sql.Composable, params: Any = None) -> Any:
        _raw(cur).execute(statement, params)
        return _raw(cur)

    # -- phase 1: CSV ------------------------------------------------------------------------
    def _load_csv(self) -> int:
        header = self._read_header()
        self._plan_csv(header)
        columns = S(", ").join(Id(f"c{k}") for k in range(self.ncols))
        create = S("CREATE TEMP TABLE {stage} (line bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 2), {cols}, "
                   "shape_reason text, shape_value text)").format(
            stage=STAGE, cols=S(", ").join(S("{} text").format(Id(f"c{k}")) for k in range(self.ncols)))
        copy = S("COPY {stage} ({cols}) FROM STDIN (FORMAT csv, HEADER true, DELIMITER {d}, QUOTE {q}, "
                 "ENCODING {e})").format(stage=STAGE, cols=columns, d=L(self.options.get("delimiter", ",")),
                                         q=L(self.options.get("quotechar", '"')), e=L(ENCODINGS[self.encoding]))
        try:
            with transaction.atomic(), connection.cursor() as cur:
                self._execute(cur, create)
                return self._copy_raw(cur, copy)
        except (pg_errors.BadCopyFileFormat, _NeedsLineByLine):
            pass  # the malformed lines become rejects
        except (pg_errors.CharacterNotInRepertoire, pg_errors.UntranslatableCharacter) as exc:
            raise ImportFailed(self._encoding_message(exc)) from None
        with transaction.atomic(), connection.cursor() as cur:
            self._execute(cur, create)
            return self._copy_csv_line_by_line(cur)

    def _read_header(self) -> list[str]:
        def lines(handle: IO[bytes]) -> Any:
            # decoded one line at a time: a bad byte further down is COPY's to report, with its line
            decoder = codecs.getincrementaldecoder(self._python_codec())()
            for data in handle:
                yield decoder.decode(data)

        try:
            with open(self.path, "rb") as handle:
                reader = csv.reader(lines(handle), delimiter=self.options.get("delimiter", ","),
                                    quotechar=self.options.get("quotechar", '"'))
                header = next(reader, None)
        except UnicodeDecodeError as exc:
            raise ImportFailed(f"The first line is not valid {self.encoding} ({exc.reason} at byte {exc.start}). "
                               "Choose the file's encoding (for example latin-1 or cp1252).") from None
        except csv.Error as exc:
            raise ImportFailed(f"The header line cannot be read: {exc}.") from None
        if not header or not any(cell.strip() for cell in header):
            raise ImportFailed("The file has no header line: its first line must name the columns.")
        if len(header) > MAX_COLUMNS:
            raise ImportFailed(f"The file has {len(header)} columns; at most {MAX_COLUMNS} are supported.")
        return [cell.strip() for cell in header]

    def _python_codec(self) -> str:
        return "utf-8-sig" if self.encoding == "utf-8" else self.encoding

    def _target(self, source: str) -> str | None:
        """The field a column or JSON key feeds (None: ignored; "" : unknown)."""
        if source in self.mapping:
            return self.mapping[source]
        if source in self.fields:
            return source
        lowered = source.lower()
        return lowered if lowered in self.fields else ""

    def _plan_csv(self, header: list[str]) -> None:
        self.ncols = len(header)
        seen: dict[str, str] = {}
        unknown, duplicates = [], []
        for index, name in enumerate(header):
            if name == "" and name not in self.mapping:
                continue
            if header.count(name) > 1 and name not in duplicates:
                duplicates.append(name)
            target = self._target(name)
            if target is None:
                continue
            if target == "":
                unknown.append(name)
                continue
            if target in seen:
                raise ImportFailed(f"Columns {seen[target]!r} and {name!r} both give field {target!r}.")
            seen[target] = name
            self._add_column(target, name, index)
        if duplicates:
            raise ImportFailed(f"The header names {', '.join(map(repr, duplicates))} more than once.")
        missing_mapped = [c for c in self.mapping if c not in header]
        if missing_mapped:
            raise ImportFailed(f"The mapping names {', '.join(map(repr, missing_mapped))}, which the file "
                               f"does not have. Its columns: {_names(header)}.")
        key = self.schema.primary_key
        if key not in seen:
            hint = ""
            if len(header) == 1:
                found = [d for d in (";", "\t", "|", ",") if d in header[0] and d != self.options.get("delimiter")]
                if found:
                    hint = f" It looks like the columns are separated by {found[0]!r}: set the delimiter."
            raise ImportFailed(f"The file has no column {key!r}, the key of schema {self.schema.name}. "
                               f"Its columns: {_names(header)}.{hint}")
        if unknown:
            raise ImportFailed(f"{_names(unknown)} {'is not a field' if len(unknown) == 1 else 'are not fields'} of "
                               f"schema {self.schema.name}. Rename the columns, map them to fields, or map them "
                               "to null to leave them out.")
        absent = [f.name for f in self.fields.values() if f.required and f.default is None and f.name not in seen]
        if absent:
            raise ImportFailed(f"Required {'field' if len(absent) == 1 else 'fields'} {_names(absent)} "
                               f"{'has' if len(absent) == 1 else 'have'} no column.")

    def _add_column(self, target: str, source: str, index: int = -1) -> None:
        field = self.fields[target]
        self.columns.append(_Column(
            i=len(self.columns), field=field, source=source, index=index, is_key=target == self.schema.primary_key,
            conversion=conversion_for(field.type, field.enum_values)))

    def _copy_raw(self, cur: Any, copy: sql.Composable) -> int:
        with open(self.path, "rb") as handle:
            return copy_bytes(_raw(cur), copy, handle)

    def _copy_csv_line_by_line(self, cur: Any) -> int:
        """The slow path for files PostgreSQL cannot read in one go: Python's csv module reads
        the records; the well-formed ones go to COPY, the others are staged as rejects."""
        raw = _raw(cur)
        columns = S(", ").join(Id(f"c{k}") for k in range(self.ncols))
        copy = S("COPY {stage} (line, {cols}, shape_reason, shape_value) FROM STDIN (FORMAT csv)").format(
            stage=STAGE, cols=columns)
        count = 0
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        blank = [None] * self.ncols
        try:
            with open(self.path, encoding=self._python_codec(), newline="") as handle, raw.copy(copy) as out:
                reader = csv.reader(handle, delimiter=self.options.get("delimiter", ","),
                                    quotechar=self.options.get("quotechar", '"'), strict=False)
                next(reader, None)
                line = 1
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        line += 1
                        writer.writerow([line, *blank, f"not well-formed CSV: {exc}", ""])
                        count += 1
                        break
                    line += 1
                    if not row:
                        continue
                    count += 1
                    if len(row) == self.ncols:
                        writer.writerow([line, *(_csv_cell(v) for v in row), None, None])
                    else:
                        shown = self.options.get("delimiter", ",").join(row)[:REJECT_VALUE_MAX]
                        writer.writerow([line, *blank, f"expected {self.ncols} columns, found {len(row)}", shown])
                    if buffer.tell() > CHUNK:
                        out.write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
                out.write(buffer.getvalue().encode())
        except UnicodeDecodeError as exc:
            raise ImportFailed(f"The file is not valid {self.encoding} ({exc.reason}). Choose the file's encoding "
                               "(for example latin-1 or cp1252). Nothing was imported.") from None
        return count

    def _encoding_message(self, exc: psycopg.Error) -> str:
        where = _copy_where(exc)
        return (f"The file is not valid {self.encoding}{where}: {exc.diag.message_primary}. Choose the file's "
                "encoding (for example latin-1 or cp1252). Nothing was imported.")

    # -- phase 1: JSON lines -----------------------------------------------------------------
    def _load_jsonl(self) -> int:
        for source, target in self.mapping.items():
            if target is not None:
                self._add_column(target, source)
        mapped = {t for t in self.mapping.values() if t}
        for name in self.fields:
            if name not in mapped and not any(c.source == name for c in self.columns):
                self._add_column(name, name)
        create = S("CREATE TEMP TABLE {stage} (line bigint GENERATED BY DEFAULT AS IDENTITY, doc jsonb, "
                   "shape_reason text, shape_value text)").format(stage=STAGE)
        # CSV mode with a delimiter and a quote that JSON text never holds: one line, one value,
        # no escape processing.
        copy = S("COPY {stage} (doc) FROM STDIN (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02', "
                 "ENCODING {e})").format(stage=STAGE, e=L(ENCODINGS[self.encoding]))
        try:
            with transaction.atomic(), connection.cursor() as cur:
                self._execute(cur, create)
                self._copy_raw(cur, copy)
                return self._execute(cur, S("SELECT count(*) FROM {} WHERE doc IS NOT NULL").format(STAGE)
                                     ).fetchone()[0]
        except pg_errors.CharacterNotInRepertoire as exc:
            raise ImportFailed(self._encoding_message(exc)) from None
        except (psycopg.errors.DataError, _NeedsLineByLine):
            pass  # a line is not JSON (or cannot be stored as jsonb): line by line, with rejects
        with transaction.atomic(), connection.cursor() as cur:
            self._execute(cur, create)
            return self._copy_jsonl_line_by_line(cur)

    def _copy_jsonl_line_by_line(self, cur: Any) -> int:
        """The slow path: lines go to the database as text, which parses each one on its own; a
        line that is not JSON becomes a reject instead of failing the file."""
        raw = _raw(cur)
        self._execute(cur, S("CREATE TEMP TABLE import_lines (line bigint, text text)"))
        count = 0
        try:
            with open(self.path, "rb") as handle, raw.copy("COPY import_lines (line, text) FROM STDIN") as out:
                for number, data in enumerate(handle, start=1):
                    text = data.decode(self._python_codec() if number == 1 else self.encoding)
                    if text.strip():
                        count += 1
                        out.write_row((number, text.rstrip("\r\n")))
        except UnicodeDecodeError as exc:
            raise ImportFailed(f"The file is not valid {self.encoding} ({exc.reason}). Choose the file's encoding. "
                               "Nothing was imported.") from None
        self._execute(cur, S(
            "INSERT INTO {stage} (line, doc, shape_reason, shape_value) "
            "SELECT line, doc, CASE WHEN doc IS NULL THEN 'not valid JSON' END, "
            "CASE WHEN doc IS NULL THEN left(text, {max}) END "
            "FROM (SELECT line, text, schemas_import_jsonb(text) AS doc FROM import_lines) l").format(
            stage=STAGE, max=L(REJECT_VALUE_MAX)))
        self._execute(cur, S("DROP TABLE import_lines"))
        return count

    # -- phase 2: check ----------------------------------------------------------------------
    def _l1(self, where: sql.Composable | None = None) -> sql.Composable:
        """The staged rows with, per column, its text `t<i>` (as coerce would get it) and its
        normalised form `n<i>`, each computed once: every layer is a subquery with OFFSET 0, which
        keeps the planner from copying an expression into each of its uses."""
        items = [S("line"), S("shape_reason"), S("shape_value")]
        if self.is_jsonl:
            items.append(S("doc"))
            for col in self.columns:
                j = S("(doc -> {})").format(L(col.source))
                jt = S("jsonb_typeof(doc -> {})").format(L(col.source))
                items += [S("{} AS {}").format(j, Id(f"j{col.i}")), S("{} AS {}").format(jt, Id(f"jt{col.i}")),
                          S("{} AS {}").format(col.conversion.json_text(j, jt), Id(f"t{col.i}"))]
        else:
            items += [S("{} AS {}").format(Id(f"c{col.index}"), Id(f"t{col.i}")) for col in self.columns]
        filters = [S("doc IS NOT NULL OR shape_reason IS NOT NULL")] if self.is_jsonl else []
        if where is not None:
            filters.append(where)
        query = S("SELECT {items} FROM {stage}{where} OFFSET 0").format(
            items=S(", ").join(items), stage=STAGE,
            where=S(" WHERE ") + S(" AND ").join(S("({})").format(f) for f in filters) if filters else S(""))
        return with_normalised(query, [(col.i, col.conversion) for col in self.columns])

    def _tn(self, col: _Column) -> tuple[sql.Composable, sql.Composable]:
        return S("s.{}").format(Id(f"t{col.i}")), S("s.{}").format(Id(f"n{col.i}"))

    def _checks(self, col: _Column) -> tuple[sql.Composable, sql.Composable]:
        """(ok, reason) of one column's value in a row of `s`."""
        t, n = self._tn(col)
        conv = col.conversion
        parts_ok = [conv.ok(t, n)]
        reasons = [(S("NOT {}").format(conv.ok(t, n)), conv.reason(t, n))]
        if self.is_jsonl:
            j, jt = S("s.{}").format(Id(f"j{col.i}")), S("s.{}").format(Id(f"jt{col.i}"))
            shape = conv.json_shape_ok(j, jt)
            parts_ok.insert(0, shape)
            reasons.insert(0, (S("NOT {}").format(shape), L(f"not a{'n' if col.field.type[0] in 'aeiou' else ''} "
                                                             f"{col.field.type} value")))
            absent = S("{} IS NULL").format(jt)
            if col.required:
                missing = S("({} OR {})").format(absent, self._missing(col, t, n))
                parts_ok.append(S("NOT {}").format(missing))
                reasons.append((missing, L("This field is required.")))
        elif col.required:
            missing = self._missing(col, t, n)
            parts_ok.append(S("NOT {}").format(missing))
            reasons.append((missing, L("This field is required.")))
        if col.max_length:
            long = S("coalesce(char_length({}) > {}, false)").format(conv.value(t, n), L(col.max_length))
            parts_ok.append(S("NOT {}").format(long))
            reasons.append((long, L(f"At most {col.max_length} characters.")))
        ok = S("coalesce(({}), false)").format(S(" AND ").join(parts_ok))
        reason = S("(CASE {} END)").format(S(" ").join(S("WHEN coalesce({}, true) THEN {}").format(c, r)
                                                        for c, r in reasons))
        return ok, reason

    def _missing(self, col: _Column, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        if col.field.type == FieldType.STRING:
            return S("({t} IS NULL OR {t} = '')").format(t=t)
        return S("coalesce({}, true)").format(col.conversion.empty(t, n))

    def _row_ok(self) -> sql.Composable:
        parts = [S("s.shape_reason IS NULL")]
        if self.is_jsonl:
            parts.append(S("(CASE WHEN jsonb_typeof(s.doc) = 'object' THEN (s.doc - {}::text[]) = '{{}}'::jsonb "
                           "ELSE false END)").format(L(self._known_keys())))
        parts += [self._checks(col)[0] for col in self.columns]
        return S("coalesce({}, false)").format(S(" AND ").join(parts))

    def _known_keys(self) -> list[str]:
        return sorted({c.source for c in self.columns} | set(self.mapping))

    def _check(self) -> int:
        """One pass over the staged rows: each is checked and, when it fits, converted to its key
        and attributes, into `import_rows`; returns how many lines are rejected."""
        with transaction.atomic(), connection.cursor() as cur:
            self._execute(cur, S(SESSION_SETTINGS))
            self._execute(cur, S("CREATE TEMP TABLE {} (line bigint, ok boolean, key text, attributes jsonb)")
                          .format(ROWS))
            rejected = self._execute(cur, S(
                "WITH rows AS (INSERT INTO {rows} (line, ok, key, attributes) "
                "SELECT x.line, x.ok, CASE WHEN x.ok THEN x.key END, CASE WHEN x.ok THEN {attributes} END "
                "FROM ({values}) x CROSS JOIN LATERAL (SELECT {named}) a RETURNING ok) "
                "SELECT count(*) FILTER (WHERE NOT ok) FROM rows").format(
                rows=ROWS, attributes=self._attributes_sql(), values=self._values_sql(), named=self._named())
            ).fetchone()[0]
        return rejected

    def _named(self) -> sql.Composable:
        """The row `a` whose to_jsonb() is a row's attributes: each column's value named by its
        field, and for CSV the defaults of the fields the file has no column for, as jsonb
        columns (cheaper than concatenating a defaults object to every row's attributes)."""
        named = [S("x.{} AS {}").format(Id(f"v{c.i}"), Id(c.field.name)) for c in self.columns]
        if not self.is_jsonl:
            named += [S("{}::jsonb AS {}").format(L(json.dumps(value)), Id(name))
                      for name, value in sorted(self._absent_defaults().items())]
        return S(", ").join(named)

    def _write_rejects_report(self, rejected_lines: sql.Composable) -> None:
        """The rejects of the first REJECTS_REPORT_MAX_LINES rejected lines (`rejected_lines`
        selects them), one row per value that does not fit, written as CSV with formula-looking
        cells neutralised."""
        entries = [S("(0, '', s.shape_value, s.shape_reason)")]
        formed = S("s.shape_reason IS NULL")
        if self.is_jsonl:
            formed = S("(s.shape_reason IS NULL AND jsonb_typeof(s.doc) = 'object')")
        for col in self.columns:
            ok, reason = self._checks(col)
            t, _ = self._tn(col)
            shown = S("s.{}::text").format(Id(f"j{col.i}")) if self.is_jsonl else t
            entries.append(S("({ord}, {name}, {value}, CASE WHEN {formed} AND NOT {ok} THEN {reason} END)").format(
                ord=L(col.i + 1), name=L(col.source), value=shown, formed=formed, ok=ok, reason=reason))
        if self.is_jsonl:
            entries.append(S("(0, '', left(s.doc::text, {max}), CASE WHEN s.shape_reason IS NULL AND "
                             "jsonb_typeof(s.doc) <> 'object' THEN 'not a JSON object' END)").format(
                max=L(REJECT_VALUE_MAX)))
        lines = S("line IN (SELECT line FROM ({rejected}) r ORDER BY line LIMIT {limit})").format(
            rejected=rejected_lines, limit=L(REJECTS_REPORT_MAX_LINES))
        unknown = S("")
        if self.is_jsonl:
            unknown = S(" UNION ALL SELECT s.line, 10000, u.key, left(u.value::text, {max}), {reason} "
                        "FROM ({l1}) s, jsonb_each(CASE WHEN jsonb_typeof(s.doc) = 'object' THEN s.doc - {known}::text[] "
                        "END) u").format(
                max=L(REJECT_VALUE_MAX), l1=self._l1(lines), known=L(self._known_keys()),
                reason=L(f"not a field of schema {self.schema.name}"))
        with transaction.atomic(), connection.cursor() as cur:
            self._execute(cur, S(SESSION_SETTINGS))
            self._execute(cur, S("CREATE TEMP TABLE {} (line bigint, ord int, col text, value text, reason text)")
                          .format(REJECTS))
            self._execute(cur, S(
                "INSERT INTO {rej} (line, ord, col, value, reason) "
                "SELECT s.line, v.ord, v.col, left(v.value, {max}), v.reason FROM ({l1}) s "
                "CROSS JOIN LATERAL (VALUES {entries}) v(ord, col, value, reason) "
                "WHERE v.reason IS NOT NULL{unknown}").format(
                rej=REJECTS, max=L(REJECT_VALUE_MAX), l1=self._l1(lines), entries=S(", ").join(entries),
                unknown=unknown))
            path = self.path.with_name(self.path.name + ".rejects.csv")
            cells = [S("line")] + [S("CASE WHEN left({c}, 1) IN ({p}) THEN '''' || {c} ELSE {c} END AS {a}").format(
                c=Id(c), p=S(", ").join(L(p) for p in FORMULA_PREFIXES), a=Id(a))
                for c, a in (("col", "column"), ("value", "value"), ("reason", "reason"))]
            copy = S("COPY (SELECT {cells} FROM {rej} ORDER BY line, ord, col) TO STDOUT (FORMAT csv, HEADER true)"
                     ).format(cells=S(", ").join(cells), rej=REJECTS)
            with open(path, "wb") as out, _raw(cur).copy(copy) as data:
                for block in data:
                    out.write(block)
        _progress(self.job, rejects_file=_media_relative(path))

    def _all_or_nothing_message(self, rejected: int) -> str:
        with connection.cursor() as cur:
            first = self._execute(cur, S("SELECT line, col, reason FROM {} ORDER BY line, ord LIMIT 1").format(REJECTS)
                                  ).fetchone()
        where = ""
        if first:
            line, column, reason = first
            where = f" (first: line {line}{f', column {column!r}' if column else ''}: {reason})"
        rows = "row was" if rejected == 1 else "rows were"
        return (f"Nothing was imported: {rejected} {rows} rejected{where}. "
                "Download the rejects report, fix the file and import it again.")

    # -- phase 3: write ----------------------------------------------------------------------
    @staticmethod
    def _fingerprint(fields: dict[str, Field]) -> list[Any]:
        return [(f.name, f.type, f.required, f.indexed, f.enum_values, json.dumps(f.default, sort_keys=True))
                for f in fields.values()]

    def _values_sql(self) -> sql.Composable:
        """Per staged row: whether it fits (`ok`), its key and each column's value `v<i>` (SQL NULL:
        no value; `p<i>`: the JSON line has the key)."""
        items = [S("s.line"), S("{} AS ok").format(self._row_ok()), S("{} AS key").format(self._key_sql())]
        for col in self.columns:
            t, n = self._tn(col)
            items.append(S("{} AS {}").format(col.conversion.value(t, n), Id(f"v{col.i}")))
            if self.is_jsonl:
                items.append(S("(s.{} IS NOT NULL) AS {}").format(Id(f"jt{col.i}"), Id(f"p{col.i}")))
        return S("SELECT {items} FROM ({l1}) s OFFSET 0").format(items=S(", ").join(items), l1=self._l1())

    def _key_sql(self) -> sql.Composable:
        col = next(c for c in self.columns if c.is_key)
        t, n = self._tn(col)
        value = col.conversion.value(t, n)
        return value if col.conversion.sql_type == "text" else S("({})::text").format(value)

    def _attributes_sql(self) -> sql.Composable:
        """The attributes a row of `x` (see _values_sql) writes.

        CSV: the columns' values without the empty ones, plus the defaults of the fields the file
        has no column for (columns of `a` too, see _named; they apply to new records only: see
        _upsert_sql).
        JSON lines: the keys the line has, a null where it gives null (it removes that value); the
        write phase applies defaults to new records and removes the nulls."""
        obj = S("to_jsonb(a)")  # `a`: the values named by their fields (see _check)
        if self.is_jsonl:
            absent = S("array_remove(ARRAY[{}]::text[], NULL)").format(S(", ").join(
                S("CASE WHEN NOT x.{} THEN {} END").format(Id(f"p{c.i}"), L(c.field.name)) for c in self.columns))
            return S("({} - {})").format(obj, absent)
        null_keys = S("array_remove(ARRAY[{}]::text[], NULL)").format(S(", ").join(
            S("CASE WHEN x.{} IS NULL THEN {} END").format(Id(f"v{c.i}"), L(c.field.name)) for c in self.columns))
        any_null = S(" OR ").join(S("x.{} IS NULL").format(Id(f"v{c.i}")) for c in self.columns)
        return S("(CASE WHEN {any_null} THEN {obj} - {null_keys} ELSE {obj} END)").format(
            any_null=any_null, obj=obj, null_keys=null_keys)

    def _defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields.values() if f.default is not None}

    def _absent_defaults(self) -> dict[str, Any]:
        given = {c.field.name for c in self.columns}
        return {k: v for k, v in self._defaults().items() if k not in given}

    def _write(self, read: int, rejected: int) -> None:
        if read - rejected == 0:
            _finish(self.job, ImportStatus.SUCCEEDED)
            return
        for dedup in (False, True):
            if dedup is False and self.duplicate_keys:
                continue
            try:
                with transaction.atomic(), connection.cursor() as cur:
                    self._execute(cur, S(SESSION_SETTINGS))
                    empty = self._lock_schema(cur)
                    if empty and not dedup:
                        # Nothing to merge with, and no record can appear while the schema row is
                        # locked: a plain INSERT (a quarter faster than ON CONFLICT's speculative one).
                        rows = S("SELECT line, key, attributes FROM {} WHERE ok").format(ROWS)
                        inserted, updated = self._execute(cur, self._insert_sql(rows)).rowcount, 0
                    else:
                        inserted, updated = self._execute(cur, self._upsert_sql(dedup)).fetchone()
                    _finish(self.job, ImportStatus.SUCCEEDED, rows_inserted=inserted, rows_updated=updated)
                return
            except (pg_errors.CardinalityViolation, pg_errors.UniqueViolation):
                # A key appears on several valid lines: write again, keeping the last of each.
                continue

    def _lock_schema(self, cur: Any) -> bool:
        """Lock the schema's row FOR UPDATE (record writes and schema changes of this schema wait,
        readers do not) after checking that it and its fields are as the import found them;
        returns whether the schema has no record."""
        locked = self._execute(cur, S(
            "SELECT 1 FROM schemas_dataschema WHERE tenant_id = %s AND id = %s FOR UPDATE"),
            [self.tenant_id, self.schema.pk]).fetchone()
        if locked is None:
            raise ImportFailed("The schema was deleted during the import.")
        if self._fingerprint(_schema_fields(self.schema)) != self.fingerprint:
            raise ImportFailed("The schema's fields changed during the import; nothing was written. "
                               "Import the file again.")
        return not self._execute(cur, S(
            "SELECT EXISTS (SELECT 1 FROM schemas_record WHERE tenant_id = %s AND schema_id = %s)"),
            [self.tenant_id, self.schema.pk]).fetchone()[0]

    def _first_load(self, read: int) -> bool:
        """Phases 2 and 3 in one pass, for an upsert into a schema that has no record yet: one
        `INSERT … SELECT` checks and converts every staged row and writes the rows that fit
        straight into `schemas_record`; a row that does not fit calls
        `pg_temp.schemas_import_reject(line)`, which notes its line (rejects are rare, so the
        call costs nothing on the whole) for the rejects report. This skips writing and reading
        back the converted rows (`import_rows`), at the price of holding the schema's lock while
        the rows are checked and of `rows_valid`/`rows_rejected` appearing only at the end.
        Returns False, having changed nothing, when the schema has records (the two-pass way then
        merges) or when a key is on several lines (the two-pass way keeps the last of each)."""
        try:
            with transaction.atomic(), connection.cursor() as cur:
                self._execute(cur, S(SESSION_SETTINGS))
                if not self._lock_schema(cur):
                    return False
                self._execute(cur, S("CREATE TEMP TABLE {} (line bigint)").format(REJECTED))
                self._execute(cur, S(
                    "CREATE OR REPLACE FUNCTION pg_temp.schemas_import_reject(bigint) RETURNS boolean "
                    "LANGUAGE sql VOLATILE AS 'INSERT INTO pg_temp.{} (line) VALUES ($1) RETURNING false'").format(
                    REJECTED))
                rows = S("SELECT x.line, x.key, {attributes} AS attributes FROM ({values}) x "
                         "CROSS JOIN LATERAL (SELECT {named}) a "
                         "WHERE CASE WHEN x.ok THEN true ELSE pg_temp.schemas_import_reject(x.line) END").format(
                    attributes=self._attributes_sql(), values=self._values_sql(), named=self._named())
                inserted = self._execute(cur, self._insert_sql(rows)).rowcount
                rejected = self._execute(cur, S("SELECT count(*) FROM {}").format(REJECTED)).fetchone()[0]
                _progress(self.job, rows_valid=read - rejected, rows_rejected=rejected)
                if rejected:
                    self._write_rejects_report(S("SELECT line FROM {}").format(REJECTED))
                _finish(self.job, ImportStatus.SUCCEEDED, rows_inserted=inserted, rows_updated=0)
            return True
        except pg_errors.UniqueViolation:
            self.duplicate_keys = True
            return False

    def _insert_sql(self, rows: sql.Composable) -> sql.Composable:
        """The plain INSERT of a first load: `rows` gives each new record's line, key and
        attributes."""
        attributes = S("x.attributes")
        if self.is_jsonl:
            attributes = S("({d}::jsonb - ARRAY(SELECT jsonb_object_keys(x.attributes))) || (x.attributes - ARRAY("
                           "SELECT e.key FROM jsonb_each(x.attributes) e WHERE e.value = 'null'::jsonb))").format(
                d=L(json.dumps(self._defaults())))
        return S("INSERT INTO schemas_record (tenant_id, schema_id, key, attributes, created_at, updated_at) "
                 "SELECT {t}, {s}, x.key, {attributes}, now(), now() FROM ({rows}) x").format(
            t=L(self.tenant_id), s=L(self.schema.pk), attributes=attributes, rows=rows)

    def _upsert_sql(self, dedup: bool) -> sql.Composable:
        rows = S("SELECT line, key, attributes FROM {rows} WHERE ok").format(rows=ROWS)
        if dedup:
            rows = S("{rows} AND line IN (SELECT max(line) FROM {t} WHERE ok GROUP BY key)").format(rows=rows, t=ROWS)
        if not self.is_jsonl:
            # Existing records: the file's columns replace their fields (an empty cell removes the
            # value), the others stay, defaults do not apply.
            attributes = S("x.attributes")
            merged = S("(r.attributes - {given}::text[]) || (EXCLUDED.attributes - {dk}::text[])").format(
                given=L(sorted({c.field.name for c in self.columns})), dk=L(sorted(self._absent_defaults())))
        else:
            # New records: defaults for the keys the line lacks, no nulls. Existing records: the line
            # as it is; the merge removes the keys it gives as null. (The schema row is locked FOR
            # UPDATE, so no record of this schema appears between the probe and the insert.)
            nulls = S("ARRAY(SELECT e.key FROM jsonb_each({a}) e WHERE e.value = 'null'::jsonb)")
            attributes = S(
                "(CASE WHEN NOT EXISTS (SELECT 1 FROM schemas_record e WHERE e.tenant_id = {t} AND e.schema_id = {s} "
                "AND e.key = x.key) THEN ({d}::jsonb - ARRAY(SELECT jsonb_object_keys(x.attributes))) "
                "|| (x.attributes - {nulls}) ELSE x.attributes END)").format(
                t=L(self.tenant_id), s=L(self.schema.pk), d=L(json.dumps(self._defaults())),
                nulls=nulls.format(a=S("x.attributes")))
            merged = S("((r.attributes || EXCLUDED.attributes) - {})").format(nulls.format(a=S("EXCLUDED.attributes")))
        return S(
            "WITH up AS (INSERT INTO schemas_record AS r (tenant_id, schema_id, key, attributes, created_at, updated_at) "
            "SELECT {t}, {s}, x.key, {attributes}, now(), now() FROM ({rows}) x "
            "ON CONFLICT (tenant_id, schema_id, key) DO UPDATE SET attributes = {merged}, updated_at = now() "
            "WHERE r.attributes IS DISTINCT FROM {merged} "
            "RETURNING (r.xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up").format(
            t=L(self.tenant_id), s=L(self.schema.pk), attributes=attributes, rows=rows, merged=merged)


class _NeedsLineByLine(Exception):
    """The file must go through the line-by-line path."""


NeedsLineByLine = _NeedsLineByLine


def copy_bytes(raw: psycopg.Cursor, copy: sql.Composable, handle: IO[bytes]) -> int:
    """Send the bytes of `handle`, from where it stands, to `copy` (a `COPY … FROM STDIN`) as they
    are, one chunk at a time; returns the rows copied. Blank lines at the end are held back
    (PostgreSQL would read them as rows); a line that is exactly `\\.` would end the data early,
    so it raises NeedsLineByLine (the caller reads such a file line by line instead). Shared by the
    import and the campaigns' Load file activity."""
    with raw.copy(copy) as out:
        pending, before = b"", None
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            data = pending + chunk
            window = data if before is None else before + data
            if (_END_OF_DATA_START if before is None else _END_OF_DATA).search(window):
                raise _NeedsLineByLine
            body = data.rstrip(b"\r\n")
            if body:
                out.write(body)
                before = body[-4:]
            pending = data[len(body):]
    return raw.rowcount


# A line that is exactly "\." ends COPY's data in CSV mode.
_END_OF_DATA_START = re.compile(rb"(?:^|\n)\\\.\r?(?:\n|$)")
_END_OF_DATA = re.compile(rb"\n\\\.\r?(?:\n|$)")


def _csv_cell(value: str) -> str | None:
    # The line-by-line path cannot tell an empty cell from "", as PostgreSQL does: both are no value.
    return value if value != "" else None


def _copy_where(exc: psycopg.Error) -> str:
    match = re.search(r"line (\d+)", exc.diag.context or "")
    return f" (line {match.group(1)})" if match else ""


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")
