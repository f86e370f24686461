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
from apps.schemas.references import filter_references, link_map, register_reference_finder, uses
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

# Config keys whose values name fields of the activity's dimension (a name or a list of names).
FIELD_KEYS = ("fields", "match_on", "by")


@register_reference_finder
def campaigns_using(tenant: Tenant, schema: DataSchema, name: str | None) -> list[dict[str, Any]]:
    from apps.campaigns.services import validation_context

    with tenant_scope(tenant):
        campaigns = list(Campaign.objects.filter(tenant=tenant).exclude(status=CampaignStatus.ARCHIVED)
                         .select_related("live_version"))
        schemas = {s.name: s.pk for s in DataSchema.objects.filter(tenant=tenant)}
        links = link_map(tenant_id=tenant.pk)
        found = []
        for campaign in campaigns:
            graphs = [v.graph for v in campaign.versions.order_by("-number")[:1]]
            if campaign.live_version is not None:
                graphs.append(campaign.live_version.graph)
            ctx = validation_context(campaign)
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
        references = filter_references(schema=DataSchema(pk=schema_id, tenant_id=schema.tenant_id), tree=config,
                                       links=links) if schema_id is not None else set()
        references |= {(schema_id, field) for field in _field_names(config)} if schema_id is not None else set()
        if uses(references, schema, name):
            return True
    return False


def _dimension(activity_type: str, config: dict[str, Any], inputs: list[Shape] | None,
               campaign_dimension: str) -> str | None:
    """The dimension an activity reads: its own `dimension` setting, else what arrives on its
    inputs, else the campaign's."""
    if isinstance(config.get("dimension"), str):
        return config["dimension"]
    for shape in inputs or []:
        if not shape.is_token:
            return shape.dimension
    return campaign_dimension if registry.exists(activity_type) else None


def _field_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in FIELD_KEYS:
                if isinstance(value, str):
                    names.add(value)
                elif isinstance(value, list):
                    names |= {v for v in value if isinstance(v, str)}
            names |= _field_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= _field_names(item)
    return names
