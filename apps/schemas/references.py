"""Who uses a schema, a field or a link: the registry that lets schema changes refuse to break
a saved audience or a campaign.

Apps register a finder with `register_reference_finder(func)`; a finder is called as
`func(tenant, schema, name)` and answers a list of `{"type", "id", "name"}`, one per object that
uses field or link `name` of `schema` (or, when `name` is None, that uses the schema at all).
Removing a field, a link or a schema that something uses is refused with that list."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.schemas.models import DataSchema
    from apps.tenants.models import Tenant

ReferenceFinder = Callable[["Tenant", "DataSchema", "str | None"], list[dict[str, Any]]]
_FINDERS: list[ReferenceFinder] = []


def register_reference_finder(func: ReferenceFinder) -> ReferenceFinder:
    """Register `func` (usable as a decorator); registering the same function twice is a no-op."""
    if func not in _FINDERS:
        _FINDERS.append(func)
    return func


def references_find(*, tenant: Tenant, schema: DataSchema, name: str | None) -> list[dict[str, Any]]:
    """Every registered user of `schema`'s field or link `name` (of the schema itself when None),
    without duplicates, in a stable order."""
    found: dict[tuple[str, Any], dict[str, Any]] = {}
    for finder in _FINDERS:
        for ref in finder(tenant, schema, name) or []:
            found.setdefault((ref["type"], ref["id"]), {"type": ref["type"], "id": ref["id"], "name": ref["name"]})
    return sorted(found.values(), key=lambda ref: (ref["type"], str(ref["name"]), str(ref["id"])))


def filter_references(*, schema: DataSchema, tree: Any, links: dict[int, dict[str, int]] | None = None
                      ) -> set[tuple[int, str]]:
    """The (schema id, field or link name) pairs a filter tree names, starting at `schema`.

    Inside a `{"link": name, ...}` node every field named (in `where`, in aggregates of `having`)
    belongs to the link's target schema, so the walk follows links. `links` maps schema id ->
    {link name: target schema id}; it is loaded from the database when not given. The walk is
    deliberately generic (any dict with `field` or `link`) so that it keeps up with the filter
    language without knowing every operator."""
    if links is None:
        links = link_map(tenant_id=schema.tenant_id)
    found: set[tuple[int, str]] = set()
    _walk(tree, schema.pk, links, found)
    return found


def link_map(*, tenant_id: int) -> dict[int, dict[str, int]]:
    from apps.schemas.models import Link

    result: dict[int, dict[str, int]] = {}
    for schema_id, name, target_id in Link.dangerously_unscoped.filter(tenant_id=tenant_id).values_list(
        "schema_id", "name", "target_id"
    ):
        result.setdefault(schema_id, {})[name] = target_id
    return result


def _walk(node: Any, schema_id: int | None, links: dict[int, dict[str, int]], found: set[tuple[int, str]]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, schema_id, links, found)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("link"), str):
        name = node["link"]
        if schema_id is not None:
            found.add((schema_id, name))
        target = links.get(schema_id, {}).get(name) if schema_id is not None else None
        for key, value in node.items():
            if key != "link":
                _walk(value, target, links, found)
        return
    if isinstance(node.get("field"), str) and schema_id is not None:
        found.add((schema_id, node["field"]))
    for key, value in node.items():
        if key not in ("field", "value"):
            _walk(value, schema_id, links, found)


def uses(references: Iterable[tuple[int, str]], schema: DataSchema, name: str | None) -> bool:
    """Whether `references` (from `filter_references`) touch `schema` (its field or link `name`)."""
    return any(sid == schema.pk and (name is None or ref == name) for sid, ref in references)
