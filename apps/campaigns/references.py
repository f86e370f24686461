"""Campaigns as users of schemas, fields and links (see apps/schemas/references.py): a campaign
that is not archived uses what its newest version and its live version name: its targeting
dimension, the schema each activity works on, and the fields and links in the activities'
configs (filters, wherever they sit, and the field names of keys such as `fields`, `match_on`,
`by`), each read in the dimension arriving at that activity."""

from __future__ import annotations

from typing import Any

from apps.activities import registry
from apps.activities.base import Shape
from apps.campaigns.graph import Graph, node_inputs, validate_structure
from apps.campaigns.models import Campaign, CampaignStatus
from apps.schemas.models import DataSchema
from apps.schemas.references import link_map, register_reference_finder, uses
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

# Config keys whose values name fields of the activity's dimension (a name or a list of names).
FIELD_KEYS = ("fields", "match_on", "by")  # (and `field`, `order_by`, read one by one)


@register_reference_finder
def campaigns_using(tenant: Tenant, schema: DataSchema, name: str | None) -> list[dict[str, Any]]:
    from apps.campaigns.services import validation_context

    with tenant_scope(tenant):
        campaigns = list(Campaign.objects.filter(tenant=tenant).exclude(status=CampaignStatus.ARCHIVED)
                         .select_related("live_version"))
        # the schemas are read once for every campaign's validation context
        definitions = {s.name: s for s in DataSchema.objects.filter(tenant=tenant).prefetch_related("fields", "links")}
        schemas = {name: s.pk for name, s in definitions.items()}
        links = link_map(tenant_id=tenant.pk)
        found = []
        for campaign in campaigns:
            graphs = [v.graph for v in campaign.versions.order_by("-number")[:1]]
            if campaign.live_version is not None:
                graphs.append(campaign.live_version.graph)
            ctx = validation_context(campaign, definitions)
            if any(_uses(graph, ctx, schemas, links, schema, name) for graph in graphs):
                found.append({"type": "campaign", "id": campaign.pk, "name": campaign.name})
    return found


def _uses(graph: Any, ctx: Any, schemas: dict[str, int], links: dict[int, dict[str, int]], schema: DataSchema,
          name: str | None) -> bool:
    if name is None and ctx.dimension == schema.name:
        return True
    if validate_structure(graph):
        return False
    parsed = Graph(graph)
    inputs = node_inputs(graph, ctx)
    for node_id in parsed.nodes:
        config = parsed.config(node_id)
        dimension = _dimension(parsed.type(node_id), config, inputs.get(node_id), ctx.dimension)
        if name is None and dimension == schema.name:
            return True
        schema_id = schemas.get(dimension or "")
        if schema_id is None:
            continue
        found: set[tuple[int, str]] = set()
        _walk(config, schema_id, links, found, top=True)
        if uses(found, schema, name):
            return True
    return False


def _dimension(activity_type: str, config: dict[str, Any], inputs: list[Shape] | None,
               campaign_dimension: str) -> str | None:
    """The schema an activity's config names fields of: its own `schema` (Reconciliation, Update
    data) or `dimension` setting, else what arrives on its inputs, else the campaign's."""
    for key in ("schema", "dimension"):
        if isinstance(config.get(key), str):
            return config[key]
    for shape in inputs or []:
        if not shape.is_token:
            return shape.dimension
    return campaign_dimension if registry.exists(activity_type) else None


def _walk(node: Any, schema_id: int | None, links: dict[int, dict[str, int]], found: set[tuple[int, str]],
          top: bool = False) -> None:
    """Collect (schema id, field or link name) pairs. A `field` and the names under FIELD_KEYS
    belong to the schema in hand; inside a dict naming a `link` (a filter's link condition, an
    enrichment column) they belong to the link's target, and so does everything nested in it. At
    the top of a config a `link` (Change dimension's) is recorded, and its siblings stay in the
    activity's own dimension."""
    if isinstance(node, list):
        for item in node:
            _walk(item, schema_id, links, found)
        return
    if not isinstance(node, dict) or schema_id is None:
        return
    here = schema_id
    if isinstance(node.get("link"), str):
        found.add((schema_id, node["link"]))
        if not top:
            here = links.get(schema_id, {}).get(node["link"])  # None: a join name, not a link
            if here is None:
                return
    for key in ("field", "order_by"):
        if isinstance(node.get(key), str):
            found.add((here, node[key]))
    for key in FIELD_KEYS:
        value = node.get(key)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        found |= {(here, n) for n in names if isinstance(n, str)}
    for key, value in node.items():
        if key != "value" and isinstance(value, dict | list):
            _walk(value, here, links, found)
