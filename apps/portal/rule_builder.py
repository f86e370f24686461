"""The audience builder's rules: a tree of groups, conditions and link conditions edited as a
plain HTML form, turned into the filter language's JSON (docs/filter-language.md) and back.

The builder adds no rule of its own: it only writes JSON, and the filter compiler
(apps/schemas/query) validates it. `to_filter` remembers where each rule landed in the JSON so
that the compiler's problems (`{"path": "all[1].value", ...}`) are shown on the rule they are
about.

Form encoding: every rule has a path, `r` for the root group, `r-0`, `r-0-2`... for its
descendants (the last number orders siblings), and sends `<path>.<attribute>` fields:
`kind` (group, cond, link), `match` (all, any, none), `field`, `op`, `value`, `value2`, `ci`,
`link`, `having` (exists, none, count), `count_op`, `count_value`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from apps.schemas.models import FieldType
from apps.schemas.query.validation import NO_VALUE_OPS, PATTERN_OPS, ops_for

ROOT = "r"
PATH = re.compile(r"^r(-[0-9]{1,3}){0,8}$")
MAX_GROUP_DEPTH = 4     # groups and links nested in the root
MAX_RULES = 200

MATCHES = {"all": "All of", "any": "Any of", "none": "None of"}
HAVINGS = {"exists": "at least one", "none": "none", "count": "a number of"}
COUNT_OPS = {"eq": "exactly", "ne": "not", "gte": "at least", "gt": "more than", "lte": "at most", "lt": "fewer than"}

# Operators in the order the menu shows them, with their wording.
OPERATOR_LABELS = {
    "eq": "is", "ne": "is not", "in": "is one of", "not_in": "is none of",
    "contains": "contains", "starts_with": "starts with", "ends_with": "ends with",
    "gt": "is greater than", "gte": "is at least", "lt": "is less than", "lte": "is at most",
    "between": "is between", "before": "is before", "after": "is after", "within_last": "is within the last",
    "is_null": "is empty", "is_not_null": "is not empty",
}

BUILTIN_COLUMNS = [("_key", "Key", FieldType.STRING), ("_created_at", "Created", FieldType.DATETIME),
                   ("_updated_at", "Updated", FieldType.DATETIME)]


class NotRepresentable(Exception):
    """A filter the rule builder cannot show (it is then edited as JSON)."""


# Catalog ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldInfo:
    name: str
    label: str
    type: str
    enum_values: tuple[str, ...] = ()

    @property
    def operators(self) -> list[tuple[str, str]]:
        allowed = ops_for(self.type)
        return [(op, label) for op, label in OPERATOR_LABELS.items() if op in allowed]


@dataclass(frozen=True)
class LinkInfo:
    name: str
    label: str
    target: str
    kind: str


@dataclass
class SchemaInfo:
    name: str
    label: str
    fields: dict[str, FieldInfo]
    links: dict[str, LinkInfo]


def catalog_of(schemas: Any) -> dict[str, SchemaInfo]:
    """What the builder offers for each schema (DataSchemas with their fields and links
    prefetched, as `apps.schemas.selectors.schema_list` gives them)."""
    result = {}
    for schema in schemas:
        fields = {f.name: FieldInfo(f.name, f.label or f.name, f.type, tuple(str(v) for v in f.enum_values or ()))
                  for f in schema.fields.all()}
        for name, label, field_type in BUILTIN_COLUMNS:
            fields.setdefault(name, FieldInfo(name, label, field_type))
        links = {link.name: LinkInfo(link.name, link.label or link.name, link.target.name, link.kind)
                 for link in schema.links.all()}
        result[schema.name] = SchemaInfo(schema.name, schema.label, fields, links)
    return result


# Rules --------------------------------------------------------------------------------------------

@dataclass
class Rule:
    path: str = ROOT
    kind: str = "group"           # group | cond | link
    match: str = "all"            # group and link (its `where`): all | any | none
    field: str = ""
    op: str = ""
    value: str = ""
    value2: str = ""
    ci: bool = False
    link: str = ""
    having: str = "exists"        # link: exists | none | count
    count_op: str = "gte"
    count_value: str = "1"
    children: list[Rule] = dataclass_field(default_factory=list)
    problems: list[str] = dataclass_field(default_factory=list)
    schema: str = ""              # the schema the rule's fields belong to (set by `fit`)
    ui: dict[str, Any] = dataclass_field(default_factory=dict)  # what its menus offer (set by `fit`)

    @property
    def is_group(self) -> bool:
        return self.kind in ("group", "link")

    def walk(self) -> list[Rule]:
        found = [self]
        for child in self.children:
            found += child.walk()
        return found

    def find(self, path: str) -> Rule | None:
        return next((rule for rule in self.walk() if rule.path == path), None)

    def depth(self) -> int:
        return self.path.count("-")


def empty_root() -> Rule:
    return Rule()


def from_form(data: Mapping[str, Any]) -> Rule:
    """The rule tree a builder form sent (unknown or malformed keys are ignored)."""
    def text(key: str, default: str = "") -> str:
        value = data.get(key, default)
        return str(value)[:10_000] if value is not None else default

    paths = {ROOT}
    for key in data:
        path, _, attribute = str(key).partition(".")
        if attribute == "kind" and PATH.match(path):
            paths.add(path)
    rules: dict[str, Rule] = {}
    for path in sorted(paths, key=_path_key)[:MAX_RULES]:
        kind = "group" if path == ROOT else text(f"{path}.kind")
        if kind not in ("group", "cond", "link"):
            continue
        rules[path] = Rule(
            path=path, kind=kind, match=_choice(text(f"{path}.match", "all"), MATCHES, "all"),
            field=text(f"{path}.field"), op=text(f"{path}.op"), value=text(f"{path}.value"),
            value2=text(f"{path}.value2"), ci=text(f"{path}.ci") in ("on", "true", "1"),
            link=text(f"{path}.link"), having=_choice(text(f"{path}.having", "exists"), HAVINGS, "exists"),
            count_op=_choice(text(f"{path}.count_op", "gte"), COUNT_OPS, "gte"),
            count_value=text(f"{path}.count_value", "1"))
    root = rules[ROOT]
    for path in sorted(rules, key=_path_key):
        if path == ROOT:
            continue
        parent = rules.get(path.rsplit("-", 1)[0])
        if parent is not None and parent.is_group and path in rules and _attached(parent, rules, root):
            parent.children.append(rules[path])
    return renumber(root)


def _attached(rule: Rule, rules: dict[str, Rule], root: Rule) -> bool:
    """Whether `rule` hangs from the root (its ancestors all exist and are groups)."""
    path = rule.path
    while path != ROOT:
        path = path.rsplit("-", 1)[0]
        ancestor = rules.get(path)
        if ancestor is None or not ancestor.is_group:
            return False
    return True


def _path_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in path.split("-")[1:])


def _choice(value: str, allowed: Mapping[str, Any], default: str) -> str:
    return value if value in allowed else default


def renumber(root: Rule) -> Rule:
    """Give the rules compact paths again (after rules were removed)."""
    def visit(rule: Rule, path: str) -> None:
        rule.path = path
        for index, child in enumerate(rule.children):
            visit(child, f"{path}-{index}")

    visit(root, ROOT)
    return root


# Editing ------------------------------------------------------------------------------------------

def apply_action(root: Rule, action: str, schema: SchemaInfo, catalog: Mapping[str, SchemaInfo]) -> str | None:
    """Apply a structural change (`add-cond:<path>`, `add-group:<path>`, `add-link:<path>`,
    `remove:<path>`) in place. Returns a message when the change cannot be made."""
    verb, _, path = action.partition(":")
    target = root.find(path)
    if target is None:
        return None
    if verb == "remove":
        if target is root:
            root.children = []
        else:
            parent = root.find(path.rsplit("-", 1)[0])
            if parent is not None:
                parent.children = [child for child in parent.children if child is not target]
        renumber(root)
        return None
    if not target.is_group or verb not in ("add-cond", "add-group", "add-link"):
        return None
    if len(root.walk()) >= MAX_RULES:
        return f"A filter built here has at most {MAX_RULES} rules; edit it as JSON for more."
    if verb in ("add-group", "add-link") and target.depth() + 1 > MAX_GROUP_DEPTH:
        return f"Groups nest at most {MAX_GROUP_DEPTH} levels deep here."
    fit(root, schema, catalog)
    scope = catalog.get(target.schema) or schema
    child_path = f"{target.path}-{len(target.children)}"
    if verb == "add-cond":
        target.children.append(new_condition(scope, child_path))
    elif verb == "add-group":
        target.children.append(Rule(path=child_path, kind="group", match="any",
                                    children=[new_condition(scope, f"{child_path}-0")]))
    else:
        if not scope.links:
            return f"The schema {scope.name} has no links."
        link = next(iter(scope.links.values()))
        target.children.append(Rule(path=child_path, kind="link", link=link.name, match="all"))
    fit(root, schema, catalog)
    return None


def new_condition(schema: SchemaInfo, path: str) -> Rule:
    """A condition on the schema's first field of its own (not its key, if it has others)."""
    own = [f for f in schema.fields.values() if not f.name.startswith("_")]
    chosen = own[1] if len(own) > 1 else (own[0] if own else schema.fields["_key"])
    rule = Rule(path=path, kind="cond", field=chosen.name)
    _fit_condition(rule, schema)
    return rule


def fit(root: Rule, schema: SchemaInfo, catalog: Mapping[str, SchemaInfo]) -> Rule:
    """Make every rule name something its schema has, as the menus will show it: an unknown
    field becomes the schema's first one, an operator the field's type does not take becomes its
    first operator; the schema each rule's fields belong to is noted on it (links lead to
    another schema)."""
    def visit(rule: Rule, scope: SchemaInfo) -> None:
        rule.schema = scope.name
        if rule.kind == "cond":
            _fit_condition(rule, scope)
            rule.ui = _condition_ui(rule, scope)
            return
        can_nest = rule.depth() + 1 <= MAX_GROUP_DEPTH
        if rule.kind == "link":
            if rule.link not in scope.links and scope.links:
                rule.link = next(iter(scope.links))
            target = catalog.get(scope.links[rule.link].target) if rule.link in scope.links else None
            inner = target or scope
            rule.ui = {"links": [(link.name, link.label) for link in scope.links.values()],
                       "target": inner.label, "can_nest": can_nest, "has_links": bool(inner.links)}
            for child in rule.children:
                visit(child, inner)
            return
        rule.ui = {"can_nest": can_nest, "has_links": bool(scope.links)}
        for child in rule.children:
            visit(child, scope)

    visit(root, schema)
    return root


PLACEHOLDERS = {
    FieldType.INTEGER: "42", FieldType.DECIMAL: "12.5", FieldType.DATE: "2025-06-15",
    FieldType.DATETIME: "2025-06-15T10:00:00Z", FieldType.EMAIL: "ann@example.org", FieldType.PHONE: "+33612345678",
    FieldType.JSON: '{"a": 1}',
}


def _condition_ui(rule: Rule, schema: SchemaInfo) -> dict[str, Any]:
    """The menus and the value input of a condition."""
    info = schema.fields[rule.field]
    own = [(f.name, f.label) for f in schema.fields.values() if not f.name.startswith("_")]
    builtin = [(f.name, f.label) for f in schema.fields.values() if f.name.startswith("_")]
    if rule.op in NO_VALUE_OPS:
        widget = "none"
    elif rule.op in ("eq", "ne") and info.type == FieldType.BOOLEAN:
        widget = "bool"
    elif rule.op in ("eq", "ne") and info.type == FieldType.ENUM and info.enum_values:
        widget = "enum"
    elif rule.op == "between":
        widget = "two"
    elif rule.op in ("in", "not_in"):
        widget = "list"
    elif rule.op == "within_last":
        widget = "duration"
    else:
        widget = "text"
    input_type = "date" if info.type == FieldType.DATE and widget in ("text", "two") else "text"
    placeholder = {"list": "a, b, c", "duration": "30d"}.get(widget) or PLACEHOLDERS.get(info.type, "")
    if widget == "list" and info.enum_values:
        placeholder = ", ".join(info.enum_values[:3])
    return {"fields": own, "builtin_fields": builtin, "operators": info.operators, "widget": widget,
            "input_type": input_type, "placeholder": placeholder, "enum_values": info.enum_values,
            "type": info.type, "pattern": rule.op in PATTERN_OPS}


def _fit_condition(rule: Rule, schema: SchemaInfo) -> None:
    info = schema.fields.get(rule.field)
    if info is None:
        info = next(iter(schema.fields.values()))
        rule.field = info.name
    operators = [op for op, _ in info.operators]
    if rule.op not in operators:
        rule.op = operators[0] if operators else ""
    if info.type == FieldType.BOOLEAN and rule.op in ("eq", "ne") and rule.value not in ("true", "false"):
        rule.value = "true"
    if info.type == FieldType.ENUM and rule.op in ("eq", "ne") and rule.value not in info.enum_values \
            and info.enum_values:
        rule.value = info.enum_values[0]
    if rule.op not in PATTERN_OPS:
        rule.ci = False


# Rules -> filter JSON -----------------------------------------------------------------------------

def to_filter(root: Rule, catalog: Mapping[str, SchemaInfo] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(filter tree, {JSON path of each rule: rule path})."""
    paths: dict[str, str] = {}
    tree = _group_json(root.match, root.children, "", paths, catalog or {})
    paths[""] = root.path
    return tree, paths


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _group_json(match: str, children: list[Rule], path: str, paths: dict[str, str],
                catalog: Mapping[str, SchemaInfo]) -> dict[str, Any]:
    prefix = {"all": _join(path, "all"), "any": _join(path, "any"), "none": _join(path, "not.any")}[match]
    items = [_rule_json(child, f"{prefix}[{index}]", paths, catalog) for index, child in enumerate(children)]
    if match == "none":
        return {"not": {"any": items}}
    return {match: items}


def _rule_json(rule: Rule, path: str, paths: dict[str, str], catalog: Mapping[str, SchemaInfo]) -> dict[str, Any]:
    paths[path] = rule.path
    if rule.kind == "group":
        return _group_json(rule.match, rule.children, path, paths, catalog)
    if rule.kind == "link":
        node: dict[str, Any] = {"link": rule.link}
        if rule.children:
            node["where"] = _group_json(rule.match, rule.children, _join(path, "where"), paths, catalog)
        if rule.having == "none":
            node["having"] = {"exists": False}
        elif rule.having == "count":
            node["having"] = {"count": {"op": rule.count_op, "value": _number(rule.count_value)}}
        return node
    node = {"field": rule.field, "op": rule.op}
    if rule.op not in NO_VALUE_OPS:
        node["value"] = _value(rule, _field_type(rule, catalog))
    if rule.ci and rule.op in PATTERN_OPS:
        node["case_insensitive"] = True
    return node


def _field_type(rule: Rule, catalog: Mapping[str, SchemaInfo]) -> str | None:
    schema = catalog.get(rule.schema)
    info = schema.fields.get(rule.field) if schema else None
    return info.type if info else None


def _value(rule: Rule, field_type: str | None) -> Any:
    """The JSON value of a condition as typed: a list for in / not_in (comma-separated, or a JSON
    list), two values for between, true / false for yes/no fields, else the text (the compiler
    converts text to the field's type and says what does not fit)."""
    if rule.op in ("in", "not_in"):
        text = rule.value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    if rule.op == "between":
        return [rule.value.strip(), rule.value2.strip()]
    if field_type == FieldType.BOOLEAN and rule.value in ("true", "false"):
        return rule.value == "true"
    if field_type in (FieldType.STRING, FieldType.ENUM, FieldType.JSON):
        return rule.value
    return rule.value.strip()


def _number(text: str) -> Any:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,18}", text) else text


def place_problems(root: Rule, problems: list[dict[str, Any]], paths: dict[str, str]) -> None:
    """Pin each problem of the compiler on the rule whose JSON its path points into."""
    for problem in problems:
        path = str(problem.get("path", ""))
        best = ""
        for json_path in paths:
            if json_path and (path == json_path or path.startswith((json_path + ".", json_path + "["))) \
                    and len(json_path) > len(best):
                best = json_path
        rule = root.find(paths.get(best, ROOT))
        if rule is not None:
            rule.problems.append(str(problem.get("message", "")))


# Filter JSON -> rules -----------------------------------------------------------------------------

def from_filter(tree: Any) -> Rule:
    """The rules of a filter tree, if the builder can show it (NotRepresentable otherwise:
    variables, aggregates other than count, nesting deeper than the builder's)."""
    if tree in (None, {}):
        return empty_root()
    root = _as_group(tree, 0)
    if root.kind != "group":
        root = Rule(kind="group", match="all", children=[root])
    if len(root.walk()) > MAX_RULES:
        raise NotRepresentable(f"more than {MAX_RULES} rules")
    return renumber(root)


def _as_group(node: Any, depth: int) -> Rule:
    if depth > MAX_GROUP_DEPTH:
        raise NotRepresentable("nested too deep")
    if not isinstance(node, dict):
        raise NotRepresentable("not an object")
    if set(node) in ({"all"}, {"any"}):
        match = next(iter(node))
        items = node[match]
        if not isinstance(items, list):
            raise NotRepresentable("not a list")
        return Rule(kind="group", match=match, children=[_as_rule(item, depth + 1) for item in items])
    if set(node) == {"not"}:
        inner = node["not"]
        if isinstance(inner, dict) and set(inner) == {"any"} and isinstance(inner["any"], list):
            items = inner["any"]
        else:
            items = [inner]
        return Rule(kind="group", match="none", children=[_as_rule(item, depth + 1) for item in items])
    return _as_rule(node, depth)


def _as_rule(node: Any, depth: int) -> Rule:
    if not isinstance(node, dict):
        raise NotRepresentable("not an object")
    if "field" in node:
        return _as_condition(node)
    if "link" in node:
        return _as_link(node, depth)
    if set(node) & {"all", "any", "not"}:
        if depth > MAX_GROUP_DEPTH:
            raise NotRepresentable("nested too deep")
        return _as_group(node, depth)
    raise NotRepresentable("an unknown condition")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise NotRepresentable("a value the builder cannot show")
    if value is None:
        raise NotRepresentable("null")
    return str(value)


def _as_condition(node: dict[str, Any]) -> Rule:
    if set(node) - {"field", "op", "value", "case_insensitive"} or not isinstance(node.get("field"), str) \
            or not isinstance(node.get("op"), str) or node["op"] not in OPERATOR_LABELS:
        raise NotRepresentable("a condition the builder cannot show")
    rule = Rule(kind="cond", field=node["field"], op=node["op"], ci=node.get("case_insensitive") is True)
    value = node.get("value")
    if rule.op in NO_VALUE_OPS:
        return rule
    if rule.op in ("in", "not_in"):
        if not isinstance(value, list):
            raise NotRepresentable("in takes a list")
        texts = [_scalar(v) for v in value]
        rule.value = json.dumps(value, ensure_ascii=False) if any("," in t for t in texts) else ", ".join(texts)
    elif rule.op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise NotRepresentable("between takes two values")
        rule.value, rule.value2 = _scalar(value[0]), _scalar(value[1])
    else:
        rule.value = _scalar(value)
    return rule


def _as_link(node: dict[str, Any], depth: int) -> Rule:
    if set(node) - {"link", "where", "having"} or not isinstance(node.get("link"), str):
        raise NotRepresentable("a link condition the builder cannot show")
    rule = Rule(kind="link", link=node["link"], match="all")
    where = node.get("where")
    if where not in (None, {}):
        group = _as_group(where, depth + 1)
        if group.kind == "group":
            rule.match, rule.children = group.match, group.children
        else:
            rule.children = [group]
    having = node.get("having")
    if having in (None, {"exists": True}):
        rule.having = "exists"
    elif having == {"exists": False}:
        rule.having = "none"
    elif isinstance(having, dict) and set(having) == {"count"} and isinstance(having["count"], dict) \
            and set(having["count"]) == {"op", "value"} and having["count"]["op"] in COUNT_OPS:
        rule.having, rule.count_op = "count", having["count"]["op"]
        rule.count_value = _scalar(having["count"]["value"])
    else:
        raise NotRepresentable("an aggregate the builder cannot show")
    return rule


# Reading rules --------------------------------------------------------------------------------------

def describe(rule: Rule, schema: str, catalog: Mapping[str, SchemaInfo]) -> dict[str, Any]:
    """The rule in words, for a read-only page: {"text", "children": [...]}, fields and links by
    their labels (names the schema no longer has are shown as they are)."""
    info = catalog.get(schema)
    if rule.kind == "group":
        return {"text": MATCHES[rule.match] + ":", "children": [describe(c, schema, catalog) for c in rule.children],
                "empty": "every record" if rule.match != "any" else "no record"}
    if rule.kind == "link":
        link = info.links.get(rule.link) if info else None
        label = link.label if link else rule.link
        target = link.target if link else schema
        having = {"exists": "at least one", "none": "no"}.get(rule.having) or \
            f"{COUNT_OPS.get(rule.count_op, rule.count_op)} {rule.count_value}"
        text = f"{label}: {having} linked record{'s' if rule.having == 'count' else ''}"
        if rule.children:
            text += " where " + MATCHES[rule.match].lower() + ":"
        return {"text": text, "children": [describe(c, target, catalog) for c in rule.children]}
    field_info = info.fields.get(rule.field) if info else None
    label = field_info.label if field_info else rule.field
    words = OPERATOR_LABELS.get(rule.op, rule.op)
    if rule.op in NO_VALUE_OPS:
        value = ""
    elif rule.op == "between":
        value = f" {rule.value} and {rule.value2}"
    else:
        value = f" {rule.value}"
    suffix = " (ignoring case)" if rule.ci else ""
    return {"text": f"{label} {words}{value}{suffix}", "children": []}
