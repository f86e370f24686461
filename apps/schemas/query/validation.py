"""Validation of a filter tree against a tenant's schemas: the JSON a user sent becomes the
typed nodes of `nodes.py`, or a `FilterError` listing every problem with the path of its node.

Nothing from the tree reaches SQL as text: names are looked up in the schema (and the schema's
own objects are what the compiler uses), values are coerced to the field's type and later bound
as parameters. Hostile or absurd input (non-objects, huge nesting or fan-out, numbers for names,
giant numbers) ends here as a problem, never as another exception."""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from apps.schemas.models import FieldType
from apps.schemas.query.catalog import Catalog, FieldDef, SchemaDef
from apps.schemas.query.errors import FilterError, Problem
from apps.schemas.query.nodes import (
    AGGREGATES,
    OPERATORS,
    All,
    Any_,
    Condition,
    Constant,
    LinkCondition,
    Node,
    Not,
)
from apps.schemas.types import MAX_STRING, InvalidValue, coerce

MAX_DEPTH = 32          # levels of nesting (all/any/not/link each add one)
MAX_NODES = 1000        # conditions in one tree, composite ones included
MAX_LIST = 10_000       # values of one in / not_in
MAX_PROBLEMS = 50       # problems reported at once
MAX_DURATION = 100_000  # amount of a within_last duration

TEXT_TYPES = frozenset({FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.ENUM})
NUMERIC_TYPES = frozenset({FieldType.INTEGER, FieldType.DECIMAL})
TEMPORAL_TYPES = frozenset({FieldType.DATE, FieldType.DATETIME})

NO_VALUE_OPS = frozenset({"is_null", "is_not_null"})
LIST_OPS = frozenset({"in", "not_in"})
PATTERN_OPS = frozenset({"contains", "starts_with", "ends_with"})
COMPARISON_OPS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "between"})
TEMPORAL_OPS = frozenset({"within_last", "before", "after"})

_BASE = frozenset({"eq", "ne", "is_null", "is_not_null"})
_OPS_BY_TYPE: dict[str, frozenset[str]] = {
    **{t: _BASE | LIST_OPS | PATTERN_OPS for t in TEXT_TYPES},
    FieldType.BOOLEAN: _BASE | LIST_OPS,
    **{t: _BASE | LIST_OPS | COMPARISON_OPS for t in NUMERIC_TYPES},
    **{t: _BASE | LIST_OPS | COMPARISON_OPS | TEMPORAL_OPS for t in TEMPORAL_TYPES},
    FieldType.JSON: _BASE,
}

TYPE_WORDS = {
    FieldType.STRING: "text", FieldType.EMAIL: "e-mail", FieldType.PHONE: "phone", FieldType.ENUM: "choice",
    FieldType.INTEGER: "integer", FieldType.DECIMAL: "decimal", FieldType.BOOLEAN: "yes/no",
    FieldType.DATE: "date", FieldType.DATETIME: "date and time", FieldType.JSON: "JSON",
}

NODE_KEYS = {
    "field": frozenset({"field", "op", "value", "case_insensitive"}),
    "all": frozenset({"all"}),
    "any": frozenset({"any"}),
    "not": frozenset({"not"}),
    "link": frozenset({"link", "where", "having"}),
}
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
DURATION = re.compile(r"^([0-9]{1,6})(mo|m|h|d|w|y)$")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def ops_for(field_type: str) -> frozenset[str]:
    """The operators a field of `field_type` accepts."""
    return _OPS_BY_TYPE.get(field_type, frozenset())


class _Unknown:
    """The value of a variable whose value is not known yet (validation at publish time)."""

    def __repr__(self) -> str:
        return "<unknown variable>"


UNKNOWN = _Unknown()
_BAD = object()  # a value already reported as a problem


def show(value: Any) -> str:
    """A short rendering of user input for a message (never raises, never huge)."""
    if isinstance(value, str):
        return json.dumps(value[:60] + ("…" if len(value) > 60 else ""), ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        try:
            text = repr(value)
        except ValueError:
            return "a very large number"
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a value of an unsupported type"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def months_back(moment: dt.datetime, months: int) -> dt.datetime:
    """`moment` minus calendar months, the day clamped to the end of the month."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    if year < 1:
        raise OverflowError("before year 1")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def duration_bounds(text: str, field_type: str, now: dt.datetime, tz: dt.tzinfo) -> tuple[Any, Any]:
    """The inclusive bounds [now - duration, now] of `within_last` for a date or datetime field.
    Minutes and hours are elapsed time; days, weeks, months and years are calendar steps back to
    the same wall-clock time in the tenant's time zone (a day across a change to summer time is
    23 hours). For a date field the bounds are the tenant's local dates."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(text)
    amount, unit = int(match.group(1)), match.group(2)
    if not 1 <= amount <= MAX_DURATION:
        raise ValueError(text)
    local_now = now.astimezone(tz)
    if unit in ("m", "h"):
        start = (now - dt.timedelta(**{DURATION_UNITS[unit]: amount})).astimezone(tz)
    elif unit in ("d", "w"):
        start = local_now - dt.timedelta(**{DURATION_UNITS[unit]: amount})  # wall-clock arithmetic
    else:
        start = months_back(local_now, amount * (12 if unit == "y" else 1))
    if field_type == FieldType.DATE:
        return start.date(), local_now.date()
    return start.astimezone(dt.UTC), now.astimezone(dt.UTC)


def typed_value(field_type: str, canonical: Any) -> Any:
    """The Python value bound as a parameter for the canonical JSON value of a field type."""
    match field_type:
        case FieldType.INTEGER:
            return int(canonical)
        case FieldType.DECIMAL:
            number = decimal.Decimal(str(canonical))
            if not number.is_finite():
                raise InvalidValue("out of range")
            return number
        case FieldType.BOOLEAN:
            return bool(canonical)
        case FieldType.DATE:
            return dt.date.fromisoformat(canonical)
        case FieldType.DATETIME:
            return dt.datetime.fromisoformat(canonical.replace("Z", "+00:00"))
        case FieldType.JSON:
            return canonical
    return str(canonical)


def _json_literal(value: Any, depth: int = 0) -> bool:
    """Whether `value` is plain, finite, reasonably shaped JSON."""
    if depth > MAX_DEPTH:
        return False
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return len(value) <= MAX_LIST and all(_json_literal(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= MAX_LIST and all(
            isinstance(k, str) and _json_literal(v, depth + 1) for k, v in value.items())
    return False


class _Parser:
    def __init__(self, catalog: Catalog, variables: Mapping[str, Any] | None, now: dt.datetime,
                 tz: dt.tzinfo) -> None:
        self.catalog = catalog
        self.variables = variables
        self.now = now
        self.tz = tz
        self.problems: list[Problem] = []
        self.nodes = 0
        self.overflowed = False
        self.used_variables: set[str] = set()

    def fail(self, path: str, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append({"path": path, "message": message})

    # Nodes ----------------------------------------------------------------------------------

    def node(self, raw: Any, schema: SchemaDef, path: str, depth: int) -> Node | None:
        if self.overflowed:
            return None
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.overflowed = True
            self.fail(path, f"The filter has more than {MAX_NODES} conditions.")
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"The filter is nested more than {MAX_DEPTH} levels deep.")
            return None
        if not isinstance(raw, dict):
            self.fail(path, f"A condition must be a JSON object, not {show(raw)}.")
            return None
        if not raw:
            return Constant(True)
        kinds = [kind for kind in NODE_KEYS if kind in raw]
        if not kinds:
            self.fail(path, "A condition needs one of the keys field, all, any, not or link.")
            return None
        if len(kinds) > 1:
            self.fail(path, f"A condition has one of field, all, any, not or link, not both {kinds[0]} and {kinds[1]}.")
            return None
        kind = kinds[0]
        unknown = [key for key in raw if key not in NODE_KEYS[kind]]
        if unknown:
            allowed = ", ".join(sorted(NODE_KEYS[kind]))
            self.fail(_join(path, str(unknown[0])[:60]), f"Unknown key {show(unknown[0])}; this condition takes {allowed}.")
            return None
        if kind in ("all", "any"):
            return self._group(raw[kind], kind, schema, _join(path, kind), depth)
        if kind == "not":
            child = self.node(raw["not"], schema, _join(path, "not"), depth + 1)
            return None if child is None else Not(child)
        if kind == "link":
            return self._link(raw, schema, path, depth)
        return self._condition(raw, schema, path)

    def _group(self, items: Any, kind: str, schema: SchemaDef, path: str, depth: int) -> Node | None:
        if not isinstance(items, list):
            self.fail(path, f"{kind} takes a list of conditions.")
            return None
        children = []
        for index, item in enumerate(items):
            if self.overflowed:
                return None
            children.append(self.node(item, schema, f"{path}[{index}]", depth + 1))
        if any(child is None for child in children):
            return None
        if not children:
            return Constant(kind == "all")
        if len(children) == 1:
            return children[0]
        return All(tuple(children)) if kind == "all" else Any_(tuple(children))

    def _field(self, name: Any, schema: SchemaDef, path: str) -> FieldDef | None:
        if not isinstance(name, str):
            self.fail(path, f"A field is named by a string, not {show(name)}.")
            return None
        field = schema.field_named(name)
        if field is None:
            self.fail(path, f"Unknown field {show(name)} in schema {schema.name!r}.")
        return field

    def _condition(self, raw: dict[str, Any], schema: SchemaDef, path: str) -> Node | None:
        field = self._field(raw["field"], schema, _join(path, "field"))
        if field is None:
            return None
        op = self._operator(raw, ops_for(field.type), f"{TYPE_WORDS.get(field.type, field.type)} field {field.name!r}",
                            path)
        if op is None:
            return None
        insensitive = raw.get("case_insensitive", False)
        if not isinstance(insensitive, bool):
            self.fail(_join(path, "case_insensitive"), "case_insensitive is true or false.")
            return None
        if insensitive and op not in PATTERN_OPS:
            self.fail(_join(path, "case_insensitive"), "case_insensitive applies to contains, starts_with and "
                                                       "ends_with only.")
            return None
        values = self._operand(raw, field.type, field.enum_values, op, path, f"field {field.name!r}")
        if values is None:
            return None
        return Condition(field, op, values, insensitive)

    def _operator(self, raw: dict[str, Any], allowed: frozenset[str], subject: str, path: str) -> str | None:
        op_path = _join(path, "op")
        if "op" not in raw:
            self.fail(op_path, "An operator (op) is required.")
            return None
        op = raw["op"]
        if not isinstance(op, str) or op not in OPERATORS:
            self.fail(op_path, f"Unknown operator {show(op)}.")
            return None
        if op not in allowed:
            self.fail(op_path, f"The operator {op} does not apply to {subject}.")
            return None
        return op

    # Links ----------------------------------------------------------------------------------

    def _link(self, raw: dict[str, Any], schema: SchemaDef, path: str, depth: int) -> Node | None:
        link_path = _join(path, "link")
        name = raw["link"]
        if not isinstance(name, str):
            self.fail(link_path, f"A link is named by a string, not {show(name)}.")
            return None
        link = schema.links.get(name)
        if link is None:
            self.fail(link_path, f"Unknown link {show(name)} of schema {schema.name!r}.")
            return None
        target = self.catalog.schemas.get(link.target_id)
        if target is None or link.source_field not in schema.fields or link.target_field not in target.fields:
            self.fail(link_path, f"The link {name!r} of schema {schema.name!r} names a field that does not exist.")
            return None
        where: Node | None = Constant(True)
        if raw.get("where") is not None:
            where = self.node(raw["where"], target, _join(path, "where"), depth + 1)
        having = self._having(raw.get("having"), target, _join(path, "having"))
        if where is None or having is None:
            return None
        aggregate, field, op, values = having
        return LinkCondition(link, schema, target, where, aggregate, field, op, values)

    def _having(self, raw: Any, target: SchemaDef, path: str) -> tuple[str, FieldDef | None, str | None,
                                                                        tuple[Any, ...]] | None:
        if raw is None:
            return "exists", None, None, (True,)
        if not isinstance(raw, dict) or len(raw) != 1:
            self.fail(path, f"having takes exactly one of {', '.join(AGGREGATES)}.")
            return None
        ((aggregate, spec),) = raw.items()
        if aggregate not in AGGREGATES:
            self.fail(path, f"Unknown aggregate {show(aggregate)}; use one of {', '.join(AGGREGATES)}.")
            return None
        agg_path = _join(path, aggregate)
        if aggregate == "exists":
            if not isinstance(spec, bool):
                self.fail(agg_path, "exists is true or false.")
                return None
            return "exists", None, None, (spec,)
        keys = {"op", "value"} if aggregate == "count" else {"field", "op", "value"}
        if not isinstance(spec, dict):
            self.fail(agg_path, f"{aggregate} takes an object with {', '.join(sorted(keys))}.")
            return None
        unknown = [key for key in spec if key not in keys]
        if unknown:
            self.fail(_join(agg_path, str(unknown[0])[:60]),
                      f"Unknown key {show(unknown[0])}; {aggregate} takes {', '.join(sorted(keys))}.")
            return None
        if aggregate == "count":
            field, value_type, subject = None, FieldType.INTEGER, "count"
        else:
            if "field" not in spec:
                self.fail(_join(agg_path, "field"), f"{aggregate} needs the field it aggregates.")
                return None
            field = self._field(spec["field"], target, _join(agg_path, "field"))
            if field is None:
                return None
            numeric = field.type in NUMERIC_TYPES
            if not (numeric or (aggregate in ("min", "max") and field.type in TEMPORAL_TYPES)):
                kinds = "a number" if aggregate in ("sum", "avg") else "a number, a date or a date and time"
                self.fail(_join(agg_path, "field"), f"{aggregate} applies to {kinds}; {field.name!r} is "
                                                    f"{TYPE_WORDS.get(field.type, field.type)}.")
                return None
            value_type = FieldType.DECIMAL if aggregate in ("sum", "avg") else field.type
            subject = f"{aggregate} of {field.name!r}"
        allowed = COMPARISON_OPS | (TEMPORAL_OPS if value_type in TEMPORAL_TYPES else frozenset())
        op = self._operator(spec, allowed, subject, agg_path)
        if op is None:
            return None
        values = self._operand(spec, value_type, (), op, agg_path, subject)
        if values is None:
            return None
        return aggregate, field, op, values

    # Values ---------------------------------------------------------------------------------

    def _resolve(self, raw: Any, path: str) -> Any:
        """The literal `raw`, or the value of the variable it references."""
        if isinstance(raw, dict) and "var" in raw:
            name = raw["var"]
            if len(raw) != 1 or not isinstance(name, str) or not VARIABLE_NAME.match(name):
                self.fail(path, 'A variable is referenced as {"var": "<name>"} (letters, digits, _ . -).')
                return _BAD
            self.used_variables.add(name)
            if self.variables is None:
                return UNKNOWN
            if name not in self.variables:
                self.fail(path, f"The variable {name!r} is not set.")
                return _BAD
            return self.variables[name]
        return raw

    def _operand(self, raw: dict[str, Any], field_type: str, enum_values: tuple[str, ...], op: str, path: str,
                 subject: str) -> tuple[Any, ...] | None:
        value_path = _join(path, "value")
        if op in NO_VALUE_OPS:
            if raw.get("value") is not None:
                self.fail(value_path, f"{op} takes no value.")
                return None
            return ()
        if "value" not in raw:
            self.fail(value_path, f"{op} needs a value.")
            return None
        value = self._resolve(raw["value"], value_path)
        if value is _BAD:
            return None
        if value is UNKNOWN:
            return (UNKNOWN,)
        if op in LIST_OPS or op == "between":
            if not isinstance(value, list):
                self.fail(value_path, f"{op} takes a list of values." if op in LIST_OPS
                          else "between takes a list of two values [low, high].")
                return None
            if op == "between" and len(value) != 2:
                self.fail(value_path, "between takes a list of two values [low, high].")
                return None
            if len(value) > MAX_LIST:
                self.fail(value_path, f"{op} takes at most {MAX_LIST} values.")
                return None
            items = [self._scalar(self._resolve(item, f"{value_path}[{index}]"), field_type, enum_values,
                                  f"{value_path}[{index}]", subject)
                     for index, item in enumerate(value)]
            if any(item is _BAD for item in items):
                return None
            return (tuple(items),) if op in LIST_OPS else tuple(items)
        if op in PATTERN_OPS:
            if not isinstance(value, str):
                self.fail(value_path, f"{op} takes text, not {show(value)}.")
                return None
            if len(value) > MAX_STRING:
                self.fail(value_path, f"The text is longer than {MAX_STRING} characters.")
                return None
            return (value,)
        if op == "within_last":
            if not isinstance(value, str):
                self.fail(value_path, f'within_last takes a duration such as "30d", not {show(value)}.')
                return None
            try:
                return duration_bounds(value, field_type, self.now, self.tz)
            except (ValueError, OverflowError):
                self.fail(value_path, f"{show(value)} is not a duration: a whole number from 1 to {MAX_DURATION} "
                                      "followed by m (minutes), h, d, w, mo (months) or y, as in 30d.")
                return None
        item = self._scalar(value, field_type, enum_values, value_path, subject)
        return None if item is _BAD else (item,)

    def _scalar(self, value: Any, field_type: str, enum_values: tuple[str, ...], path: str, subject: str) -> Any:
        if value is _BAD or value is UNKNOWN:
            return value
        if value is None:
            self.fail(path, "A value is required here; is_null and is_not_null test for a missing value.")
            return _BAD
        if field_type == FieldType.JSON:
            if not _json_literal(value):
                self.fail(path, f"The value for {subject} is not plain JSON.")
                return _BAD
            return value
        if isinstance(value, list | dict) or not isinstance(value, str | int | float):
            self.fail(path, f"{subject} takes a single value, not {show(value)}.")
            return _BAD
        if field_type in TEXT_TYPES and isinstance(value, bool):
            self.fail(path, f"{subject} takes text, not {show(value)}.")
            return _BAD
        try:
            canonical = coerce(field_type, value, enum_values=list(enum_values) or None)
            if canonical is None:
                raise InvalidValue("empty")
            return typed_value(field_type, canonical)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            reason = str(exc) if isinstance(exc, InvalidValue) else "not valid"
            self.fail(path, f"{show(value)} is not a valid value for {subject} "
                            f"({TYPE_WORDS.get(field_type, field_type)}): {reason}.")
            return _BAD


def parse_filter(*, catalog: Catalog, schema: SchemaDef, tree: Any, variables: Mapping[str, Any] | None,
                 now: dt.datetime, tz: dt.tzinfo) -> tuple[Node, set[str]]:
    """The validated nodes of `tree` and the names of the variables it references, or
    FilterError. `variables=None` means "not known yet": references are checked for form only
    (and the nodes carry placeholders, so they must not be compiled)."""
    if variables is not None and not isinstance(variables, Mapping):
        raise FilterError([{"path": "", "message": "Event variables must be an object."}])
    parser = _Parser(catalog, variables, now, tz)
    node = Constant(True) if tree is None else parser.node(tree, schema, "", 1)
    if parser.problems or node is None:
        raise FilterError(parser.problems or [{"path": "", "message": "The filter is not valid."}])
    return node, parser.used_variables
