"""Load file: a CSV or JSON-lines file becomes a population of its own dimension (`file:<node>`),
keyed by line number, with the declared columns as typed population columns.

The file (uploaded to the campaign, or named by an event variable) is streamed to PostgreSQL with
`COPY … FROM STDIN` into a temporary staging table, chunk by chunk (Python never holds more than a
chunk, whatever the file's size); a file PostgreSQL cannot take as a whole (a line with the wrong
number of columns, a line that is not JSON) is read again line by line and its malformed lines
become rejects. One `INSERT … SELECT` then checks and converts every value with the import's SQL
twins of `apps.schemas.types.coerce` (apps/schemas/imports.py), after the column's own
preparation (trim, case, value remapping, date and number formats); the valid lines fill `out`,
the rejected ones `rejects` (line, column, value, reason), which is also the downloadable report
(GET /api/v1/runs/<id>/rejects?node=<node id>). Everything happens in the node's transaction: a
file that cannot be loaded, or more rejects than allowed, fails the node and leaves nothing."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from django.db import transaction
from psycopg import errors as pg_errors
from psycopg import sql

from apps.activities.base import (
    Activity,
    Column,
    Done,
    ExecutionContext,
    NodeError,
    Population,
    Problem,
    Shape,
    ValidationContext,
)
from apps.activities.registry import register
from apps.activities.targeting import NAME_PATTERN, column_type
from apps.core.errors import ApplicationError, NotFound
from apps.schemas import imports
from apps.schemas.models import FieldType
from apps.schemas.types import InvalidValue, coerce

S, L, Id = sql.SQL, sql.Literal, sql.Identifier

FORMATS = ("csv", "jsonl")
ON_ERROR = ("reject", "ignore", "default")
NUMBER_TYPES = (FieldType.INTEGER, FieldType.DECIMAL)
DATE_TYPES = (FieldType.DATE, FieldType.DATETIME)
DATE_TOKENS = {"YYYY": "([0-9]{4})", "MM": "([0-9]{2})", "DD": "([0-9]{2})", "HH": "([0-9]{2})",
               "MI": "([0-9]{2})", "SS": "([0-9]{2})"}
# Types whose conversion trims the text itself (imports' _Conversion.norm).
SELF_TRIMMING = (FieldType.INTEGER, FieldType.DECIMAL, FieldType.BOOLEAN, FieldType.DATE, FieldType.DATETIME,
                 FieldType.EMAIL, FieldType.PHONE)
STAGE = Id("load_file_stage")
CHECKED = Id("load_file_checked")
LINES = Id("load_file_lines")
MAX_COLUMNS = imports.MAX_COLUMNS
REPORT_VALUE_MAX = imports.REJECT_VALUE_MAX
SAMPLE_LINES = 1000

COLUMN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN, "description": "the population column's name"},
        "source": {"type": ["string", "integer"],
                   "description": "the header's column name (default: `name`), a JSON key, or a 1-based position"},
        "type": {"enum": list(FieldType.values), "default": "string"},
        "enum_values": {"type": "array", "items": {"type": "string"}},
        "nullable": {"type": "boolean", "default": True},
        "format": {"type": "string", "maxLength": 40,
                   "description": "dates: e.g. DD/MM/YYYY or DD.MM.YYYY HH:MI:SS (default ISO 8601)"},
        "decimal_separator": {"type": "string", "minLength": 1, "maxLength": 1},
        "thousands_separator": {"type": "string", "minLength": 1, "maxLength": 1},
        "trim": {"type": "boolean", "default": True},
        "case": {"enum": ["lower", "upper", None]},
        "remap": {"type": "object", "additionalProperties": {"type": ["string", "null"]},
                  "description": "{value in the file: value loaded} (after trim and case)"},
        "on_error": {"enum": list(ON_ERROR), "default": "reject",
                     "description": "a value that does not fit: reject the line, ignore the value, or use `default`"},
        "default": {},
    },
}

FILE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["upload"],
         "properties": {"upload": {"type": "integer", "description": "id of a file uploaded to the campaign"}}},
        {"type": "object", "additionalProperties": False, "required": ["variable"],
         "properties": {"variable": {"type": "string",
                                     "description": "event variable holding the name (or id) of an uploaded file"}}},
    ],
}


class FileProblem(Exception):
    """The configuration does not fit the file (a missing column, a wrong delimiter...)."""


@dataclass
class FileColumn:
    """A declared column and how its text becomes a typed value."""

    name: str
    type: str = FieldType.STRING
    source: str | int | None = None
    enum_values: list[str] = field(default_factory=list)
    nullable: bool = True
    format: str | None = None
    decimal_separator: str | None = None
    thousands_separator: str | None = None
    trim: bool = True
    case: str | None = None
    remap: dict[str, str | None] = field(default_factory=dict)
    on_error: str = "reject"
    default: Any = None
    index: int = -1  # CSV: position in the line, once planned

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> FileColumn:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "index"}
        column = cls(**known)
        column.remap = dict(raw.get("remap") or {})
        column.enum_values = [str(v) for v in raw.get("enum_values") or []]
        if column.on_error == "default":
            column.default = coerce(column.type, raw.get("default"), enum_values=column.enum_values or None)
        return column

    @property
    def pg_type(self) -> str:
        return column_type(self.type)

    @property
    def column(self) -> Column:
        return Column(self.name, self.pg_type)

    @property
    def label(self) -> str:
        return str(self.source) if self.source is not None else self.name


# -- validation of the config ------------------------------------------------------------------

def _column_problems(ctx: ValidationContext, raw: dict[str, Any], path: str) -> list[Problem]:
    problems = []
    kind = raw.get("type", FieldType.STRING)
    if raw["name"] == "key":
        problems.append(ctx.problem("`key` is the line number: name the column otherwise.", f"{path}.name"))
    if kind == FieldType.ENUM and not raw.get("enum_values"):
        problems.append(ctx.problem("A choice column needs its values.", f"{path}.enum_values"))
    if "format" in raw:
        if kind not in DATE_TYPES:
            problems.append(ctx.problem("Only date and datetime columns have a format.", f"{path}.format"))
        else:
            try:
                _date_pattern(raw["format"], kind)
            except ValueError as error:
                problems.append(ctx.problem(str(error), f"{path}.format"))
    for key in ("decimal_separator", "thousands_separator"):
        if key in raw and kind not in NUMBER_TYPES:
            problems.append(ctx.problem("Only integer and decimal columns have separators.", f"{path}.{key}"))
    if raw.get("decimal_separator") and raw.get("decimal_separator") == raw.get("thousands_separator"):
        problems.append(ctx.problem("The decimal and thousands separators must differ.", f"{path}.thousands_separator"))
    if raw.get("case") and kind not in (FieldType.STRING, FieldType.ENUM, FieldType.EMAIL):
        problems.append(ctx.problem("Only text columns change case.", f"{path}.case"))
    if raw.get("on_error") == "default":
        if "default" not in raw:
            problems.append(ctx.problem("Give the `default` used for values that do not fit.", f"{path}.default"))
        else:
            try:
                if coerce(kind, raw["default"], enum_values=raw.get("enum_values") or None) is None:
                    problems.append(ctx.problem("The default cannot be empty.", f"{path}.default"))
            except InvalidValue as error:
                problems.append(ctx.problem(f"The default is {error}.", f"{path}.default"))
    elif "default" in raw:
        problems.append(ctx.problem('A default is used with "on_error": "default" only.', f"{path}.default"))
    if isinstance(raw.get("source"), int) and raw["source"] < 1:
        problems.append(ctx.problem("Positions start at 1.", f"{path}.source"))
    return problems


def _date_pattern(fmt: Any, kind: str) -> tuple[str, str]:
    """(regex, ISO replacement) reading dates written as `fmt` (tokens YYYY MM DD HH MI SS)."""
    if not isinstance(fmt, str) or not fmt.strip():
        raise ValueError("Give a format such as DD/MM/YYYY.")
    parts = re.split(r"(YYYY|MM|DD|HH|MI|SS)", fmt)
    regex, groups = "", {}
    for part in parts:
        if part in DATE_TOKENS:
            if part in groups:
                raise ValueError(f"{part} appears twice in the format.")
            groups[part] = len(groups) + 1
            regex += DATE_TOKENS[part]
        elif part:
            if re.search(r"[A-Za-z0-9]", part):
                raise ValueError(f"Unknown part {part!r} in the format: use YYYY, MM, DD, HH, MI, SS and separators.")
            regex += re.escape(part)
    if not {"YYYY", "MM", "DD"} <= set(groups):
        raise ValueError("The format needs YYYY, MM and DD.")
    if kind == FieldType.DATE and set(groups) - {"YYYY", "MM", "DD"}:
        raise ValueError("A date column's format has no time: use a datetime column.")
    replacement = "\\{YYYY}-\\{MM}-\\{DD}".format(**groups)
    if kind == FieldType.DATETIME:
        replacement += "T" + ":".join(f"\\{groups[t]}" if t in groups else "00" for t in ("HH", "MI", "SS"))
    return f"^{regex}$", replacement


# -- the file ----------------------------------------------------------------------------------

def _file_of(tenant: Any, campaign: Any, spec: dict[str, Any], variables: dict[str, Any] | None) -> Any:
    """The CampaignFile `spec` names (NotFound when there is none)."""
    from apps.files.selectors import campaign_file_find, campaign_file_get

    if "upload" in spec:
        return campaign_file_get(tenant=tenant, campaign=campaign, id=spec["upload"])
    if variables is None or spec["variable"] not in variables:
        raise NotFound(f"The variable {spec['variable']!r} has no value.")
    if campaign is None:
        raise NotFound("No campaign.")
    return campaign_file_find(tenant=tenant, campaign=campaign, reference=variables[spec["variable"]])


def _format_of(config: dict[str, Any], name: str) -> str:
    if config.get("format"):
        return config["format"]
    return "jsonl" if name.lower().endswith(imports.JSONL_EXTENSIONS) else "csv"


def _options(config: dict[str, Any], name: str = "") -> dict[str, Any]:
    """The CSV options, checked as the import checks them (ApplicationError with the option)."""
    default_delimiter = "\t" if name.lower().endswith(".tsv") else ","
    options = {
        "delimiter": imports._single_char(config.get("delimiter"), "delimiter", default_delimiter),
        "quote": imports._single_char(config.get("quote"), "quote", '"'),
        "encoding": imports._encoding_name(config.get("encoding") or "utf-8"),
        "header": config.get("header", True),
        "skip_lines": int(config.get("skip_lines", 0)),
    }
    if options["delimiter"] == options["quote"]:
        raise ApplicationError("Invalid CSV option.", fields={"quote": ["Must differ from the delimiter."]})
    return options


def _python_codec(encoding: str) -> str:
    return "utf-8-sig" if encoding == "utf-8" else encoding


def _open_at_data(path: Path, options: dict[str, Any], *, jsonl: bool) -> tuple[IO[bytes], list[str] | None, int]:
    """The file opened after its skipped lines and header: (handle, header cells, number of the
    first data line). A UTF-8 byte order mark is skipped."""
    handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
    try:
        if handle.read(3) != codecs.BOM_UTF8 or options["encoding"] != "utf-8":
            handle.seek(0)
        line = 1
        for _ in range(options["skip_lines"]):
            if not handle.readline():
                raise FileProblem(f"The file has fewer than {options['skip_lines']} lines to skip.")
            line += 1
        header = None
        if not jsonl and options["header"]:
            raw = handle.readline()
            line += 1
            header = _parse_header(raw, options)
        return handle, header, line
    except BaseException:
        handle.close()
        raise


def _parse_header(raw: bytes, options: dict[str, Any]) -> list[str]:
    try:
        text = raw.decode(options["encoding"])
    except UnicodeDecodeError as exc:
        raise FileProblem(f"The header line is not valid {options['encoding']} ({exc.reason} at byte {exc.start}): "
                          "choose the file's encoding (for example latin-1 or cp1252).") from None
    try:
        cells = next(csv.reader([text.rstrip("\r\n")], delimiter=options["delimiter"], quotechar=options["quote"]),
                     [])
    except csv.Error as exc:
        raise FileProblem(f"The header line cannot be read: {exc}.") from None
    cells = [c.strip() for c in cells]
    if not any(cells):
        raise FileProblem("The file has no header line: its first line must name the columns (or set "
                          "`header` to false and give each column's position).")
    if len(cells) > MAX_COLUMNS:
        raise FileProblem(f"The file has {len(cells)} columns; at most {MAX_COLUMNS} are supported.")
    return cells


def header_columns(header: list[str]) -> list[dict[str, Any]]:
    """Columns for a file whose structure is its header: one text column per header cell, named
    after it (lower case, letters, digits and _)."""
    columns, seen = [], set()
    for cell in header:
        name = re.sub(r"[^a-z0-9_]+", "_", cell.strip().lower()).strip("_")[:60] or "column"
        if not name[0].isalpha():
            name = f"c_{name}"[:60]
        base, n = name, 1
        while name in seen or name == "key":
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        columns.append({"name": name, "source": cell})
    return columns


def sample_header(path: Path, config: dict[str, Any]) -> list[str]:
    """The header cells of the file at `path` read with `config`'s options."""
    handle, header, _ = _open_at_data(path, _options(config, path.name), jsonl=False)
    handle.close()
    return header or []


# -- the activity ------------------------------------------------------------------------------

@register
class LoadFile(Activity):
    type = "load_file"
    label = "Load file"
    group = "data"
    description = ("Loads a CSV or JSON-lines file (uploaded to the campaign, or named by an event variable) as a "
                   "population keyed by line number, with typed columns; lines that do not fit go to `rejects`.")
    inputs = ("in",)
    outputs = ("out", "rejects")
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["file"],
        "properties": {
            "file": FILE_SCHEMA,
            "format": {"enum": list(FORMATS), "description": "default: from the file name (.jsonl, .ndjson: jsonl)"},
            "delimiter": {"type": "string", "maxLength": 3, "description": 'CSV: default "," ("tab" for a tab)'},
            "quote": {"type": "string", "maxLength": 1, "description": 'CSV: default "'},
            "encoding": {"type": "string", "maxLength": 40, "description": "default utf-8; latin-1, cp1252..."},
            "header": {"type": "boolean", "default": True, "description": "CSV: the first line names the columns"},
            "skip_lines": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0,
                           "description": "lines to skip before the header (or the data)"},
            "columns": {"type": "array", "minItems": 1, "maxItems": MAX_COLUMNS, "items": COLUMN_SCHEMA,
                        "description": "default: every column of the header, as text"},
            "max_rejects": {"type": ["integer", "null"], "minimum": 0,
                            "description": "the run fails when more lines are rejected (default: no limit)"},
            "skip_if_empty": {"type": "boolean", "default": False,
                              "description": "emit nothing when no line loads, instead of an empty population"},
        },
    }

    def validate(self, config: dict[str, Any], ctx: ValidationContext) -> list[Problem]:
        problems: list[Problem] = []
        spec = config["file"]
        upload = None
        if "upload" in spec:
            try:
                upload = _file_of(ctx.tenant, ctx.campaign, spec, None)
            except NotFound:
                problems.append(ctx.problem(f"No file {spec['upload']} was uploaded to this campaign.",
                                            "config.file.upload"))
        elif spec["variable"] not in ctx.variables:
            problems.append(ctx.problem(f"Unknown variable {spec['variable']!r}: declare it in the campaign's "
                                        "variables.", "config.file.variable"))
        try:
            _options(config, upload.name if upload else "")
        except ApplicationError as error:
            for name, messages in error.fields.items():
                problems.append(ctx.problem(" ".join(messages), f"config.{'quote' if name == 'quotechar' else name}"))
        jsonl = config.get("format") == "jsonl" or (
            upload is not None and _format_of(config, upload.name) == "jsonl")
        columns = config.get("columns")
        if columns is None:
            if jsonl:
                problems.append(ctx.problem("Declare the columns to read from the JSON lines.", "config.columns"))
            elif not config.get("header", True):
                problems.append(ctx.problem("Without a header line, declare the columns.", "config.columns"))
            elif upload is None and "variable" in spec:
                problems.append(ctx.problem("A file named by a variable is only known at run time: declare its "
                                            "columns.", "config.columns"))
            return problems
        names = [c["name"] for c in columns]
        for index, raw in enumerate(columns):
            path = f"config.columns.{index}"
            if names.count(raw["name"]) > 1:
                problems.append(ctx.problem(f"The column name {raw['name']!r} is used twice.", f"{path}.name"))
            if not config.get("header", True) and isinstance(raw.get("source"), str) and not jsonl:
                problems.append(ctx.problem("Without a header line, a column's source is its position.",
                                            f"{path}.source"))
            if jsonl and isinstance(raw.get("source"), int):
                problems.append(ctx.problem("A JSON line's value is named by its key.", f"{path}.source"))
            problems += _column_problems(ctx, raw, path)
        return problems

    def output_shapes(self, config: dict[str, Any], inputs: list[Shape], ctx: ValidationContext) -> dict[str, Shape]:
        dimension = f"file:{ctx.node_id}"
        columns = config.get("columns")
        if columns is None:
            try:
                upload = _file_of(ctx.tenant, ctx.campaign, config["file"], None)
                from apps.files.selectors import campaign_file_path

                columns = header_columns(sample_header(campaign_file_path(upload), config))
            except (NotFound, FileProblem, ApplicationError, OSError):
                columns = []
        shape_columns = tuple(FileColumn.from_config(c).column for c in columns)
        return {"out": Shape(dimension, shape_columns), "rejects": Shape(dimension, REJECT_COLUMNS)}

    def execute(self, config: dict[str, Any], ctx: ExecutionContext, inputs: list[Population]) -> Done:
        from apps.files.selectors import campaign_file_path

        try:
            upload = _file_of(ctx.tenant, ctx.campaign, config["file"], ctx.variables)
        except NotFound as error:
            raise NodeError(f"The file to load cannot be found: {error.message}") from None
        path = campaign_file_path(upload)
        if not path.exists():
            raise NodeError(f"The file {upload.name!r} is no longer stored: upload it again.")
        try:
            options = _options(config, upload.name)
        except ApplicationError as error:
            details = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.fields.items())
            raise NodeError(f"{error.message} ({details})") from None
        loader = _Loader(ctx, config, path, upload.name, options)
        try:
            return loader.run()
        except FileProblem as error:
            raise NodeError(f"{upload.name}: {error}") from None


REJECT_COLUMNS = (Column("column", "text"), Column("value", "text"), Column("reason", "text"))


class _Loader:
    def __init__(self, ctx: ExecutionContext, config: dict[str, Any], path: Path, name: str,
                 options: dict[str, Any]) -> None:
        self.ctx = ctx
        self.config = config
        self.path = path
        self.name = name
        self.options = options
        self.jsonl = _format_of(config, name) == "jsonl"
        self.columns: list[FileColumn] = []
        self.ncols = 0
        self.first_line = 1

    @property
    def raw(self) -> psycopg.Cursor:
        cursor = self.ctx.store.cursor
        return getattr(cursor, "cursor", cursor)

    def execute(self, statement: sql.Composable, params: list[Any] | None = None) -> psycopg.Cursor:
        self.raw.execute(statement, params)
        return self.raw

    # -- phases ------------------------------------------------------------------------------
    def run(self) -> Done:
        if self.path.stat().st_size == 0:
            raise FileProblem("the file is empty.")
        self.execute(S("DROP TABLE IF EXISTS {}, {}, {}").format(STAGE, CHECKED, LINES))
        read = self._load_jsonl() if self.jsonl else self._load_csv()
        if read == 0:
            raise FileProblem("the file has no data lines.")
        rejected = self._check()
        max_rejects = self.config.get("max_rejects")
        if max_rejects is not None and rejected > max_rejects:
            raise NodeError(self._too_many(rejected, max_rejects))
        dimension = f"file:{self.ctx.node_id}"
        columns = [c.column for c in self.columns]
        out = self.ctx.store.create(
            "out", S("SELECT line::text, {} FROM {} WHERE ok").format(
                S(", ").join(Id(f"v{i}") for i in range(len(self.columns))), CHECKED),
            columns=columns, dimension=dimension)
        outputs = {"out": out}
        if rejected:
            outputs["rejects"] = self.ctx.store.create(
                "rejects", S("SELECT line::text, bad_column, left(bad_value, {}), reason FROM {} WHERE NOT ok").format(
                    L(REPORT_VALUE_MAX), CHECKED),
                columns=list(REJECT_COLUMNS), dimension=dimension)
            self.ctx.log(f"{rejected} line(s) of {self.name} rejected: see the rejects report.", level="warning",
                         rejected=rejected)
        self.execute(S("DROP TABLE IF EXISTS {}, {}").format(STAGE, CHECKED))
        summary = {"file": self.name, "lines": read, "loaded": out.count, "rejected": rejected}
        if out.count == 0 and self.config.get("skip_if_empty"):
            outputs.pop("out")
            summary["skipped"] = True
        return Done(outputs, summary=summary)

    def _too_many(self, rejected: int, allowed: int) -> str:
        first = self.execute(S("SELECT line, bad_column, reason FROM {} WHERE NOT ok ORDER BY line LIMIT 1").format(
            CHECKED)).fetchone()
        where = ""
        if first:
            where = f" (first: line {first[0]}{f', column {first[1]!r}' if first[1] else ''}: {first[2]})"
        return (f"{rejected} line(s) of {self.name} were rejected, more than the {allowed} allowed{where}. "
                "Nothing was loaded.")

    # -- CSV ---------------------------------------------------------------------------------
    def _plan_csv(self, header: list[str] | None, first_row: list[str] | None) -> None:
        declared = self.config.get("columns")
        if declared is None:
            if header is None:
                raise FileProblem("without a header line, declare the columns.")
            # by position: a header may repeat a name
            declared = [{**c, "source": i} for i, c in enumerate(header_columns(header), start=1)]
        self.columns = [FileColumn.from_config(c) for c in declared]
        if header is not None:
            self.ncols = len(header)
            exact = {cell: i for i, cell in reversed(list(enumerate(header)))}
            folded = {cell.lower(): i for i, cell in reversed(list(enumerate(header)))}
            missing = []
            for column in self.columns:
                source = column.source if column.source is not None else column.name
                if isinstance(source, int):
                    column.index = source - 1
                elif source in exact:
                    column.index = exact[source]
                elif source.lower() in folded:
                    column.index = folded[source.lower()]
                else:
                    missing.append(source)
            if missing:
                hint = ""
                if len(header) == 1:
                    found = [d for d in (";", "\t", "|", ",") if d in header[0] and d != self.options["delimiter"]]
                    if found:
                        hint = f" It looks like the columns are separated by {found[0]!r}: set the delimiter."
                raise FileProblem(f"the file has no column {', '.join(map(repr, missing))}. Its columns: "
                                  f"{imports._names(header)}.{hint}")
        else:
            for position, column in enumerate(self.columns, start=1):
                column.index = (column.source if isinstance(column.source, int) else position) - 1
            self.ncols = len(first_row) if first_row else max(c.index + 1 for c in self.columns)
        beyond = [c.label for c in self.columns if c.index >= self.ncols]
        if beyond:
            raise FileProblem(f"the lines have {self.ncols} columns; there is no column {', '.join(beyond)}.")

    def _first_row(self, handle: IO[bytes]) -> list[str] | None:
        position = handle.tell()
        raw = handle.readline()
        handle.seek(position)
        if not raw.strip():
            return None
        try:
            text = raw.decode(self.options["encoding"])
        except UnicodeDecodeError as exc:
            raise FileProblem(f"the first line is not valid {self.options['encoding']} ({exc.reason}): choose the "
                              "file's encoding (for example latin-1 or cp1252).") from None
        with contextlib.suppress(csv.Error):
            return next(csv.reader([text.rstrip("\r\n")], delimiter=self.options["delimiter"],
                                   quotechar=self.options["quote"]), None)
        return None

    def _create_stage(self) -> None:
        self.execute(S("DROP TABLE IF EXISTS {}").format(STAGE))
        cells = S("").join(S(", {} text").format(Id(f"c{k}")) for k in range(self.ncols))
        payload = S(", doc jsonb") if self.jsonl else cells
        self.execute(S("CREATE TEMP TABLE {stage} (line bigint GENERATED BY DEFAULT AS IDENTITY (START WITH {first})"
                       "{payload}, shape_reason text, shape_value text) ON COMMIT DROP").format(
            stage=STAGE, first=L(self.first_line), payload=payload))

    def _load_csv(self) -> int:
        handle, header, self.first_line = _open_at_data(self.path, self.options, jsonl=False)
        with handle:
            self._plan_csv(header, None if header is not None else self._first_row(handle))
            start = handle.tell()
            copy = S("COPY {stage} ({cols}) FROM STDIN (FORMAT csv, DELIMITER {d}, QUOTE {q}, ENCODING {e})").format(
                stage=STAGE, cols=S(", ").join(Id(f"c{k}") for k in range(self.ncols)),
                d=L(self.options["delimiter"]), q=L(self.options["quote"]),
                e=L(imports.ENCODINGS[self.options["encoding"]]))
            try:
                with transaction.atomic():
                    self._create_stage()
                    return imports.copy_bytes(self.raw, copy, handle)
            except (pg_errors.BadCopyFileFormat, imports.NeedsLineByLine):
                pass  # the malformed lines become rejects
            except (pg_errors.CharacterNotInRepertoire, pg_errors.UntranslatableCharacter) as exc:
                raise FileProblem(self._encoding_message(exc)) from None
            handle.seek(start)
            self._create_stage()
            return self._copy_csv_line_by_line(handle)

    def _copy_csv_line_by_line(self, handle: IO[bytes]) -> int:
        """Python's csv module reads the records; well-formed ones go to COPY, the others are
        staged as rejects with their reason."""
        copy = S("COPY {stage} (line, {cols}, shape_reason, shape_value) FROM STDIN (FORMAT csv)").format(
            stage=STAGE, cols=S(", ").join(Id(f"c{k}") for k in range(self.ncols)))
        count, line = 0, self.first_line - 1
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        blank = [None] * self.ncols
        text = io.TextIOWrapper(handle, encoding=self.options["encoding"], newline="")
        try:
            with self.raw.copy(copy) as out:
                reader = csv.reader(text, delimiter=self.options["delimiter"], quotechar=self.options["quote"],
                                    strict=False)
                while True:
                    try:
                        row = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        line += 1
                        count += 1
                        writer.writerow([line, *blank, f"not well-formed CSV: {exc}", ""])
                        break
                    line += 1
                    if not row or row == [""]:
                        continue
                    count += 1
                    if len(row) == self.ncols:
                        writer.writerow([line, *(v if v != "" else None for v in row), None, None])
                    else:
                        shown = self.options["delimiter"].join(row)[:REPORT_VALUE_MAX]
                        writer.writerow([line, *blank, f"expected {self.ncols} columns, found {len(row)}", shown])
                    if buffer.tell() > imports.CHUNK:
                        out.write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
                out.write(buffer.getvalue().encode())
        except UnicodeDecodeError as exc:
            raise FileProblem(f"the file is not valid {self.options['encoding']} ({exc.reason}): choose the file's "
                              "encoding (for example latin-1 or cp1252).") from None
        finally:
            text.detach()
        return count

    def _encoding_message(self, exc: psycopg.Error) -> str:
        match = re.search(r"line (\d+)", exc.diag.context or "")
        where = f" (line {int(match.group(1)) + self.first_line - 1})" if match else ""
        return (f"the file is not valid {self.options['encoding']}{where}: "
                f"{exc.diag.message_primary}. Choose the file's encoding (for example latin-1 or cp1252).")

    # -- JSON lines --------------------------------------------------------------------------
    def _load_jsonl(self) -> int:
        declared = self.config.get("columns")
        if not declared:
            raise FileProblem("declare the columns to read from the JSON lines.")
        self.columns = [FileColumn.from_config(c) for c in declared]
        handle, _, self.first_line = _open_at_data(self.path, self.options, jsonl=True)
        count_sql = S("SELECT count(*) FROM {} WHERE doc IS NOT NULL").format(STAGE)
        with handle:
            start = handle.tell()
            copy = S("COPY {stage} (doc) FROM STDIN (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02', "
                     "ENCODING {e})").format(stage=STAGE, e=L(imports.ENCODINGS[self.options["encoding"]]))
            try:
                with transaction.atomic():
                    self._create_stage()
                    imports.copy_bytes(self.raw, copy, handle)
                    return self.execute(count_sql).fetchone()[0]
            except (pg_errors.CharacterNotInRepertoire, pg_errors.UntranslatableCharacter) as exc:
                raise FileProblem(self._encoding_message(exc)) from None
            except (psycopg.errors.DataError, imports.NeedsLineByLine):
                pass  # a line is not JSON: line by line, with rejects
            handle.seek(start)
            self._create_stage()
            return self._copy_jsonl_line_by_line(handle)

    def _copy_jsonl_line_by_line(self, handle: IO[bytes]) -> int:
        self.execute(S("CREATE TEMP TABLE {} (line bigint, text text) ON COMMIT DROP").format(LINES))
        count = 0
        try:
            with self.raw.copy(S("COPY {} (line, text) FROM STDIN").format(LINES)) as out:
                for number, data in enumerate(handle, start=self.first_line):
                    text = data.decode(self.options["encoding"])
                    if text.strip():
                        count += 1
                        out.write_row((number, text.rstrip("\r\n")))
        except UnicodeDecodeError as exc:
            raise FileProblem(f"the file is not valid {self.options['encoding']} ({exc.reason}): choose the file's "
                              "encoding.") from None
        self.execute(S(
            "INSERT INTO {stage} (line, doc, shape_reason, shape_value) "
            "SELECT line, doc, CASE WHEN doc IS NULL THEN 'not valid JSON' "
            "WHEN jsonb_typeof(doc) <> 'object' THEN 'not a JSON object' END, "
            "CASE WHEN doc IS NULL OR jsonb_typeof(doc) <> 'object' THEN left(text, {max}) END "
            "FROM (SELECT line, text, schemas_import_jsonb(text) AS doc FROM {lines}) l").format(
            stage=STAGE, max=L(REPORT_VALUE_MAX), lines=LINES))
        self.execute(S("DROP TABLE {}").format(LINES))
        return count

    # -- check and convert -------------------------------------------------------------------
    def _text(self, i: int, column: FileColumn) -> tuple[sql.Composable, sql.Composable]:
        """(raw text as read, prepared text the conversion reads) of a column in a staged row."""
        conv = imports.conversion_for(column.type, column.enum_values)
        if self.jsonl:
            j = S("(doc -> {})").format(L(str(column.source if column.source is not None else column.name)))
            raw: sql.Composable = conv.json_text(j, S("jsonb_typeof({})").format(j))
            shown = S("({} #>> '{{}}')").format(j)
        else:
            raw = Id(f"c{column.index}")
            shown = raw
        text = raw
        prepared = column.case or column.remap or column.thousands_separator or column.decimal_separator \
            or column.format
        if column.trim and (prepared or column.type not in SELF_TRIMMING):
            text = S("btrim({}, {})").format(text, imports.WS)
        if column.case:
            text = S("{}({})").format(S(column.case), text)
        if column.remap:
            whens = S(" ").join(S("WHEN {} THEN {}").format(L(k), L(v) if v is not None else S("NULL::text"))
                                for k, v in column.remap.items())
            text = S("(CASE {} {} ELSE {} END)").format(text, whens, text)
        if column.thousands_separator:
            text = S("replace({}, {}, '')").format(text, L(column.thousands_separator))
        if column.decimal_separator and column.decimal_separator != ".":
            text = S("replace({}, {}, '.')").format(text, L(column.decimal_separator))
        if column.format:
            pattern, replacement = _date_pattern(column.format, column.type)
            text = S("(CASE WHEN {t} ~ {p} THEN regexp_replace({t}, {p}, {r}) ELSE '?' END)").format(
                t=text, p=L(pattern), r=L(replacement))
        return shown, S("nullif({}, '')").format(text)

    def _typed(self, column: FileColumn, conv: Any, t: sql.Composable, n: sql.Composable) -> sql.Composable:
        """The column's typed value of a row whose value fits (`conv.ok`, not empty): numbers are
        cast from their checked, normalised text (no detour through the JSON a record stores)."""
        match column.type:
            case FieldType.INTEGER:
                return S("({})::bigint").format(n)
            case FieldType.DECIMAL:
                return S("({})::numeric").format(n)
        value = conv.value(t, n)
        match column.type:
            case FieldType.DATE:
                return S("schemas_to_date({})").format(value)
            case FieldType.DATETIME:
                return S("({})::timestamptz").format(value)
        return value

    def _default(self, column: FileColumn) -> sql.Composable:
        if column.default is None:
            return S("NULL::{}").format(S(column.pg_type))
        if column.type == FieldType.JSON:
            import json

            return S("{}::jsonb").format(L(json.dumps(column.default)))
        return S("{}::{}").format(L(column.default), S(column.pg_type))

    def _check(self) -> int:
        """One pass over the staged lines: each value is prepared, checked and converted; a line
        is rejected at its first value that does not fit (per the column's `on_error`)."""
        items = [S("line"), S("shape_reason"), S("shape_value")] + ([S("doc")] if self.jsonl else [])
        conversions = []
        for i, column in enumerate(self.columns):
            shown, text = self._text(i, column)
            items += [S("{} AS {}").format(text, Id(f"t{i}")), S("{} AS {}").format(shown, Id(f"r{i}"))]
            conversions.append((i, imports.conversion_for(column.type, column.enum_values)))
        where = S(" WHERE doc IS NOT NULL OR shape_reason IS NOT NULL") if self.jsonl else S("")
        staged = S("SELECT {} FROM {}{} OFFSET 0").format(S(", ").join(items), STAGE, where)
        layered = imports.with_normalised(staged, conversions)

        # Each value's checks are computed once per row (a layer of its own), then read by the
        # value, the line's verdict and its first problem.
        flags, values = [S("s.*")], []
        problems = [(S("s.shape_reason IS NOT NULL"), S("NULL::text"), S("s.shape_value"), S("s.shape_reason"))]
        for (i, conv), column in zip(conversions, self.columns, strict=True):
            t, n = S("s.{}").format(Id(f"t{i}")), S("s.{}").format(Id(f"n{i}"))
            ok = S("coalesce({}, false)").format(conv.ok(t, n))
            reason: sql.Composable = conv.reason(t, n)
            if column.format:
                reason = L(f"not a {'date' if column.type == FieldType.DATE else 'date and time'} "
                           f"in the format {column.format}")
            if self.jsonl:
                j = S("(s.doc -> {})").format(L(str(column.source if column.source is not None else column.name)))
                shape = S("coalesce({}, false)").format(conv.json_shape_ok(j, S("jsonb_typeof({})").format(j)))
                ok = S("({} AND {})").format(shape, ok)
                article = "an" if column.type[0] in "aeiou" else "a"
                reason = S("(CASE WHEN NOT {} THEN {} ELSE {} END)").format(
                    shape, L(f"not {article} {column.type} value"), reason)
            flags += [S("{} AS {}").format(ok, Id(f"ok{i}")),
                      S("coalesce({}, true) AS {}").format(conv.empty(t, n), Id(f"e{i}"))]
            ok, empty = S("s.{}").format(Id(f"ok{i}")), S("s.{}").format(Id(f"e{i}"))
            fallback = self._default(column) if column.on_error == "default" else S("NULL::{}").format(
                S(column.pg_type))
            values.append(S("(CASE WHEN {ok} AND NOT {empty} THEN {value} ELSE {fallback} END) AS {name}").format(
                ok=ok, empty=empty, value=self._typed(column, conv, t, n), fallback=fallback, name=Id(f"v{i}")))
            shown = S("s.{}").format(Id(f"r{i}"))
            if column.on_error == "reject":
                problems.append((S("NOT {}").format(ok), L(column.label), shown, reason))
            if not column.nullable and column.on_error != "default":
                missing = empty if column.on_error == "reject" else S("({} OR NOT {})").format(empty, ok)
                problems.append((missing, L(column.label), shown, L("no value (the column is not nullable)")))
        layered = S("SELECT {} FROM ({}) s OFFSET 0").format(S(", ").join(flags), layered)
        first = S(" ").join(S("WHEN {} THEN {}").format(cond, L(k)) for k, (cond, *_rest) in enumerate(problems))
        pick = S("(CASE {} END)").format(first)
        chosen = [S("(CASE {} END)").format(S(" ").join(S("WHEN {} THEN {}").format(cond, part[p])
                                                          for cond, *part in problems)) for p in range(3)]
        self.execute(S(
            "CREATE TEMP TABLE {checked} ON COMMIT DROP AS "
            "SELECT s.line, ({pick}) IS NULL AS ok, {column} AS bad_column, {value} AS bad_value, "
            "{reason} AS reason, {values} FROM ({layered}) s").format(
            checked=CHECKED, pick=pick, column=chosen[0], value=S("({})::text").format(chosen[1]),
            reason=chosen[2], values=S(", ").join(values), layered=layered))
        return self.execute(S("SELECT count(*) FROM {} WHERE NOT ok").format(CHECKED)).fetchone()[0]


def rejects_report(cursor: Any, population: Population, first: str = "line") -> Iterator[bytes]:
    """A rejects population (key, column, value, reason) as CSV, streamed with COPY, in key order
    (shorter keys first: line numbers in order); the key's column is headed `first`. Cells a
    spreadsheet would run as formulas start with a single quote."""
    from apps.campaigns.populations import table_ident

    raw = getattr(cursor, "cursor", cursor)
    cells = [S("key AS {}").format(Id(first))] + [
        S("CASE WHEN left({c}, 1) IN ({p}) THEN '''' || {c} ELSE {c} END AS {c}").format(
            c=Id(c), p=S(", ").join(L(p) for p in imports.FORMULA_PREFIXES)) for c in ("column", "value", "reason")]
    copy = S("COPY (SELECT {} FROM {} ORDER BY length(key), key) TO STDOUT (FORMAT csv, HEADER true)").format(
        S(", ").join(cells), table_ident(population.table))
    with raw.copy(copy) as data:
        for chunk in data:
            yield bytes(chunk)


INFERRED_TYPES = (FieldType.INTEGER, FieldType.DECIMAL, FieldType.BOOLEAN, FieldType.DATE, FieldType.DATETIME,
                  FieldType.EMAIL)


def infer_columns(path: Path, name: str, config: dict[str, Any], lines: int = SAMPLE_LINES) -> list[dict[str, Any]]:
    """Columns proposed from a sample file, for the `columns` of a Load file: one per header cell
    (per key of the first JSON lines), typed by the narrowest type every non-empty value of its
    first `lines` lines fits (as types.coerce reads them), else text."""
    options = _options(config, name)
    jsonl = _format_of(config, name) == "jsonl"
    handle, header, _ = _open_at_data(path, options, jsonl=jsonl)
    samples: list[list[Any]] = []
    with handle:
        text = io.TextIOWrapper(handle, encoding=_python_codec(options["encoding"]), newline="")
        try:
            if jsonl:
                import json

                keys: list[str] = []
                rows = []
                for number, raw in enumerate(text):
                    if number >= lines:
                        break
                    with contextlib.suppress(ValueError):
                        doc = json.loads(raw)
                        if isinstance(doc, dict):
                            keys += [k for k in doc if k not in keys]
                            rows.append(doc)
                columns = [{"name": c["name"], "source": key} for c, key in zip(header_columns(keys), keys, strict=True)]
                samples = [[row.get(k) for k in keys] for row in rows]
            else:
                reader = csv.reader(text, delimiter=options["delimiter"], quotechar=options["quote"])
                for number, row in enumerate(reader):
                    if number >= lines:
                        break
                    samples.append(row)
                if header is None:
                    width = max((len(r) for r in samples), default=0)
                    columns = [{"name": f"column_{i + 1}", "source": i + 1} for i in range(width)]
                else:
                    columns = header_columns(header)
        except UnicodeDecodeError as exc:
            raise FileProblem(f"the sample is not valid {options['encoding']} ({exc.reason}).") from None
        finally:
            text.detach()
    for index, column in enumerate(columns):
        values = [row[index] for row in samples if index < len(row) and row[index] not in (None, "")]
        column["type"] = next((kind for kind in INFERRED_TYPES if values and all(_fits(kind, v) for v in values)),
                              FieldType.STRING)
    return columns


def _fits(kind: str, value: Any) -> bool:
    if kind == FieldType.BOOLEAN and isinstance(value, str) and value.strip().isdigit():
        return False  # 0/1 columns read better as numbers
    if kind == FieldType.DATETIME and isinstance(value, str) and len(value.strip()) <= 10:
        return False  # a date alone is a date
    try:
        return coerce(kind, value if not isinstance(value, str) else value.strip()) is not None
    except InvalidValue:
        return False
