"""Campaigns as users of fields, links and schemas: removing what a campaign names is refused with
the campaign in the list; archiving the campaign releases it."""

from __future__ import annotations

import pytest

from apps.campaigns import services
from apps.core.errors import Conflict
from apps.schemas.models import DataSchema, Field, Link
from apps.schemas.services import field_remove, link_remove
from apps.tenants.scoping import tenant_scope
from tests.campaigns.conftest import make_campaign

START = {"id": "start", "type": "scheduler", "config": {"mode": "asap"}}


@pytest.fixture
def model(acme):
    with tenant_scope(acme):
        profile = DataSchema.objects.get(name="profile")
        purchase = DataSchema.objects.create(name="purchase", label="Purchases", primary_key="id")
        for position, (name, kind) in enumerate([("id", "string"), ("profile_id", "string"), ("amount", "decimal"),
                                                 ("purchased_at", "datetime"), ("total", "decimal"),
                                                 ("discount", "decimal")]):
            Field.objects.create(schema=purchase, name=name, type=kind, position=position)
        Link.objects.create(schema=purchase, name="profile", target=profile, kind="many_to_one",
                            source_field="profile_id", target_field="id")
        for position, name in enumerate(["age", "score", "segment", "unused", "vip"]):
            Field.objects.create(schema=profile, name=name, type="integer", position=100 + position)
        link = Link.objects.create(schema=profile, name="purchases", target=purchase, kind="one_to_many",
                                   source_field="id", target_field="profile_id")
    return profile, purchase, link


def graph(*nodes, edges):
    return {"nodes": [START, *nodes], "edges": [{"from": a, "port": p, "to": b} for a, p, b in edges]}


def test_fields_and_links_a_campaign_names_cannot_be_removed(acme, people, model):
    profile, purchase, link = model
    marketer, admin = people["acme"]["marketer"].user, people["acme"]["admin"].user
    g = graph(
        {"id": "build", "type": "build_audience", "config": {"filter": {"all": [
            {"field": "age", "op": "gte", "value": 18},
            {"link": "purchases", "having": {"count": {"op": "gte", "value": 1}},
             "where": {"field": "amount", "op": "gt", "value": 10}}]}}},
        {"id": "dedup", "type": "dedup", "config": {"fields": ["email"], "rule": "largest", "by": "score"}},
        {"id": "split", "type": "split", "config": {"subsets": [
            {"code": "a", "filter": {"field": "segment", "op": "eq", "value": 1}}]}},
        {"id": "enrich", "type": "enrichment", "config": {"columns": [
            {"alias": "last", "link": "purchases", "collect": 2, "order_by": "purchased_at", "fields": ["id"]},
            {"alias": "total", "link": "purchases", "aggregate": "sum", "field": "total"}]}},
        {"id": "to_purchases", "type": "change_dimension", "config": {"link": "purchases"}},
        {"id": "recent", "type": "split", "config": {"subsets": [
            {"code": "big", "filter": {"field": "amount", "op": "gt", "value": 10}}]}},
        {"id": "back", "type": "change_dimension", "config": {"link": "profile", "keep": "first",
                                                              "order_by": "discount"}},
        {"id": "flag", "type": "split", "config": {"subsets": [
            {"code": "v", "filter": {"field": "vip", "op": "eq", "value": 1}}]}},
        edges=[("start", "out", "build"), ("build", "out", "dedup"), ("dedup", "out", "split"),
               ("split", "a", "enrich"), ("enrich", "out", "to_purchases"), ("to_purchases", "out", "recent"),
               ("recent", "big", "back"), ("back", "out", "flag")])
    campaign = make_campaign(acme, marketer, g, name="Spring")
    with tenant_scope(acme):
        # fields of the dimension, of a link's target in a filter and in an enrichment column (its
        # collected rows' order and fields), and of the dimension reached by Change dimension
        for schema, name in [(profile, "age"), (profile, "score"), (profile, "segment"), (purchase, "amount"),
                             (purchase, "purchased_at"), (purchase, "total"), (purchase, "discount"),
                             (profile, "vip")]:
            with pytest.raises(Conflict) as refused:
                field_remove(tenant=acme, schema=schema, field=Field.objects.get(schema=schema, name=name), by=admin)
            assert {"type": "campaign", "id": campaign.pk, "name": "Spring"} in refused.value.fields["users"], name
        with pytest.raises(Conflict):
            link_remove(tenant=acme, schema=profile, link=link, by=admin)
        field_remove(tenant=acme, schema=profile, field=Field.objects.get(schema=profile, name="unused"), by=admin)

        services.campaign_archive(tenant=acme, campaign=campaign, by=marketer)
        field_remove(tenant=acme, schema=profile, field=Field.objects.get(schema=profile, name="age"), by=admin)
        assert not Field.objects.filter(schema=profile, name="age").exists()
