"""Audiences as users of schemas, fields and links (see apps/schemas/references.py): an audience
uses its schema; a dynamic audience's saved query uses the fields and links it names, in its own
schema and, through links, in others."""

from __future__ import annotations

from typing import Any

from apps.audiences.models import Audience, AudienceKind
from apps.schemas.models import DataSchema
from apps.schemas.references import filter_references, link_map, register_reference_finder, uses
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


@register_reference_finder
def audiences_using(tenant: Tenant, schema: DataSchema, name: str | None) -> list[dict[str, Any]]:
    with tenant_scope(tenant):
        audiences = Audience.objects.filter(tenant=tenant).select_related("schema")
        if name is None:
            return [_ref(a) for a in audiences.filter(schema_id=schema.pk)]
        dynamic = list(audiences.filter(kind=AudienceKind.DYNAMIC))
    links = link_map(tenant_id=tenant.pk)
    found = []
    for audience in dynamic:
        references = filter_references(schema=audience.schema, tree=audience.filter, links=links)
        if uses(references, schema, name):
            found.append(_ref(audience))
    return found


def _ref(audience: Audience) -> dict[str, Any]:
    return {"type": "audience", "id": audience.pk, "name": audience.name}
