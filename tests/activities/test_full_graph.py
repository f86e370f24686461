"""The whole chain of the targeting issue on a realistic data set, through the engine (Celery
eager mode: a logic test): load file → reconcile → build → enrich → combine → dedup → split →
save. Every count is computed again here, in plain Python, from the data as generated."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from decimal import Decimal

from django.utils import timezone

from apps.audiences.models import Audience
from apps.schemas.models import DataSchema, Field, Link, Record
from apps.tenants.scoping import tenant_scope
from tests.activities.datafiles import graph, new_campaign, run_campaign, table_rows, upload

PROFILES = 300
SEED = "full"


def sticky(key: str) -> float:
    return int(hashlib.md5(f"{SEED}:{key}".encode()).hexdigest()[:8], 16) / 4294967296


def make_data(tenant) -> tuple[list[dict], list[dict], str]:
    rng = random.Random(7)
    now = timezone.now().astimezone(dt.UTC)
    profiles, purchases = [], []
    for i in range(PROFILES):
        email = f"user{i - 1 if i % 10 == 9 else i}@shop.test"  # every tenth shares the previous email
        profiles.append({"id": f"p{i}", "email": email, "country": rng.choice(["FR", "FR", "DE", "ES"]),
                         "email_opt_in": rng.random() > 0.2})
        for n in range(rng.randrange(0, 6)):
            days = rng.randrange(0, 700)
            purchases.append({"id": f"o{i}-{n}", "profile_id": f"p{i}", "amount": Decimal(rng.randrange(100, 40000)) / 100,
                              "purchased_at": (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "days": days})
    with tenant_scope(tenant):
        profile = DataSchema.objects.get(name="profile")
        purchase = DataSchema.objects.create(name="purchase", label="Purchases", primary_key="id")
        for position, (name, kind) in enumerate([("id", "string"), ("profile_id", "string"), ("amount", "decimal"),
                                                 ("purchased_at", "datetime")]):
            Field.objects.create(schema=purchase, name=name, type=kind, position=position)
        Link.objects.create(schema=profile, name="purchases", target=purchase, kind="one_to_many",
                            source_field="id", target_field="profile_id")
        Record.dangerously_unscoped.bulk_create(
            [Record(tenant=tenant, schema=profile, key=p["id"], attributes=p) for p in profiles]
            + [Record(tenant=tenant, schema=purchase, key=o["id"],
                      attributes={k: (str(v) if isinstance(v, Decimal) else v) for k, v in o.items() if k != "days"})
               for o in purchases])
    # The file: complaints to exclude, by e-mail in any case, plus lines that match nobody or are broken.
    lines = ["E-mail;Reason"]
    complained = [p for p in profiles if rng.random() < 0.15]
    for p in complained:
        lines.append(f"  {p['email'].upper()} ;spam")
    lines += ["ghost@nowhere.test;spam", "not-an-email;spam"]
    return profiles, purchases, "\n".join(lines) + "\n", complained


def test_load_reconcile_build_enrich_combine_dedup_split_save(acme, people, django_capture_on_commit_callbacks):
    marketer = people["acme"]["marketer"].user
    profiles, purchases, content, complained = make_data(acme)
    campaign = new_campaign(acme, marketer)
    file = upload(acme, campaign, content, name="complaints.csv")
    g = graph(
        {"id": "fork", "type": "fork", "config": {"branches": [{"port": "file"}, {"port": "data"}]}},
        {"id": "load", "type": "load_file", "config": {
            "file": {"upload": file.pk}, "delimiter": ";", "header": True, "max_rejects": 5,
            "columns": [{"name": "mail", "source": "E-mail", "type": "email", "trim": True},
                        {"name": "reason", "source": "Reason", "type": "string"}]}},
        {"id": "reconcile", "type": "reconciliation", "config": {
            "rules": [{"column": "mail", "field": "email", "normalize": ["trim", "lower"]}], "unmatched": "output"}},
        {"id": "build", "type": "build_audience", "config": {"filter": {"all": [
            {"field": "country", "op": "in", "value": ["FR", "DE"]},
            {"field": "email_opt_in", "op": "eq", "value": True}]}}},
        {"id": "enrich", "type": "enrichment", "config": {"columns": [
            {"alias": "spent", "link": "purchases", "aggregate": "sum", "field": "amount",
             "where": {"field": "purchased_at", "op": "within_last", "value": "365d"}},
            {"alias": "orders", "link": "purchases", "aggregate": "count"}]}},
        {"id": "combine", "type": "combine", "config": {"operation": "exclusion", "primary": "enrich"}},
        {"id": "dedup", "type": "dedup", "config": {"fields": ["email"], "rule": "largest", "by": "spent",
                                                    "seed": SEED}},
        {"id": "split", "type": "split", "config": {"seed": SEED, "complement": True, "subsets": [
            {"code": "vip", "filter": {"field": "spent", "op": "gte", "value": 300},
             "limit": {"count": 10}, "sort": {"by": "spent", "direction": "desc"}},
            {"code": "test", "limit": {"percent": 50}}]}},
        {"id": "save", "type": "save_audience", "config": {"name": "VIP"}},
        edges=[("start", "out", "fork"), ("fork", "file", "load"), ("fork", "data", "build"),
               ("load", "out", "reconcile"), ("build", "out", "enrich"), ("enrich", "out", "combine"),
               ("reconcile", "out", "combine"), ("combine", "out", "dedup"), ("dedup", "out", "split"),
               ("split", "vip", "save")])
    run, nodes = run_campaign(acme, marketer, campaign, g, django_capture_on_commit_callbacks)
    assert run.status == "completed", (run.error_node, run.error)

    # The same computation in plain Python.
    by_key = {p["id"]: p for p in profiles}
    assert nodes["load"].outputs["out"]["count"] == len(complained) + 1          # ghost is a valid e-mail
    assert nodes["load"].outputs["rejects"]["count"] == 1                          # not-an-email
    complained_keys = {p["id"] for p in profiles if p["email"] in {c["email"] for c in complained}}
    reconciled = {k for k, *_ in table_rows(nodes["reconcile"].outputs["out"])}
    assert reconciled <= complained_keys and {by_key[k]["email"] for k in reconciled} == {
        c["email"] for c in complained}
    assert nodes["reconcile"].outputs["unmatched"]["count"] == 1

    built = [p for p in profiles if p["country"] in ("FR", "DE") and p["email_opt_in"]]
    assert nodes["build"].outputs["out"]["count"] == len(built)
    spent = {p["id"]: sum((o["amount"] for o in purchases if o["profile_id"] == p["id"] and o["days"] < 365),
                          Decimal(0)) for p in built}
    enriched = {row[0]: row[1] for row in table_rows(nodes["enrich"].outputs["out"])}
    assert enriched == spent

    kept = [p for p in built if p["id"] not in reconciled]
    assert nodes["combine"].outputs["out"]["count"] == len(kept)
    best: dict[str, dict] = {}
    for p in kept:
        other = best.get(p["email"])
        if other is None or (spent[p["id"]], -sticky(p["id"])) > (spent[other["id"]], -sticky(other["id"])):
            best[p["email"]] = p
    deduped = {p["id"] for p in best.values()}
    assert {row[0] for row in table_rows(nodes["dedup"].outputs["out"])} == deduped

    vip = sorted((k for k in deduped if spent[k] >= 300), key=lambda k: (-spent[k], k))[:10]
    rest = deduped - set(vip)
    test = {k for k in rest if sticky(k) < 0.5}
    split = nodes["split"].outputs
    assert [row[0] for row in table_rows(split["vip"], order="2 DESC, 1")] == vip
    assert {row[0] for row in table_rows(split["test"])} == test
    assert {row[0] for row in table_rows(split["complement"])} == rest - test
    with tenant_scope(acme):
        assert Audience.objects.get(name="VIP").count == len(vip)
