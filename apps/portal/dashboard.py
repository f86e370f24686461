"""The dashboard is a list of cards, each built by a function registered here.

A card builder takes the request (with `request.tenant` and `request.membership` set) and returns
a `Card`, or None to stay hidden (e.g. when the member's role may not see it). Cards appear in
ascending `order`; a builder must only read (call selectors), never change state.

Later apps add their card with a builder in this module, next to the built-in ones:

    @dashboard_card("campaigns", order=10)
    def campaigns_card(request):
        counts = campaign_selectors.campaign_counts(tenant=request.tenant)
        return Card(title="Campaigns", template="portal/cards/campaigns.html", data={"counts": counts},
                    span=6, link=("All campaigns", reverse("portal:campaigns")))

Built-in orders: 10-40 are kept for campaigns, audiences, profiles and tasks; team, workspace and
access come after them, recent activity last."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from apps.campaigns.models import CampaignStatus
from apps.campaigns.selectors import campaign_list, run_list
from apps.portal.selectors import deliveries_awaiting_confirmation, membership_emails
from apps.tenants.models import AuditEntry
from apps.tenants.roles import Role, role_can
from apps.tenants.selectors import audit_list, role_counts


@dataclass(frozen=True)
class Card:
    title: str
    template: str  # renders the card's body; it sees `card`, and `card.data`
    data: dict[str, Any] = field(default_factory=dict)
    span: int = 4  # columns of the 12-column dashboard grid (4, 6, 8 or 12)
    link: tuple[str, str] | None = None  # (label, url) shown in the card's header
    key: str = ""


CardBuilder = Callable[[HttpRequest], Card | None]

_builders: dict[str, tuple[int, CardBuilder]] = {}


def dashboard_card(key: str, *, order: int) -> Callable[[CardBuilder], CardBuilder]:
    """Register `builder` as the dashboard card `key`. A key can be registered once."""

    def register(builder: CardBuilder) -> CardBuilder:
        if key in _builders:
            raise ValueError(f"dashboard card {key!r} is already registered")
        _builders[key] = (order, builder)
        return builder

    return register


def dashboard_cards(request: HttpRequest) -> list[Card]:
    cards = []
    for key, (_order, builder) in sorted(_builders.items(), key=lambda item: (item[1][0], item[0])):
        card = builder(request)
        if card is not None:
            cards.append(replace(card, key=key))
    return cards


# --- Built-in cards ----------------------------------------------------------------------------


@dashboard_card("campaigns", order=10)
def campaigns_card(request: HttpRequest) -> Card:
    campaigns = campaign_list(tenant=request.tenant)
    counts = dict(campaigns.order_by().values_list("status").annotate(n=Count("id")))
    rows = [{"status": status, "label": label, "count": counts.get(status, 0)}
            for status, label in CampaignStatus.choices if counts.get(status)]
    recent = list(run_list(tenant=request.tenant)[:5])
    return Card(title="Campaigns", template="portal/campaigns/_card.html", span=6,
                data={"total": sum(counts.values()), "rows": rows, "recent": recent},
                link=("All campaigns", reverse("portal:campaigns")))


@dashboard_card("confirmations", order=15)
def confirmations_card(request: HttpRequest) -> Card | None:
    """Deliveries of one-off campaigns waiting for someone to confirm their send; hidden when none."""
    waiting = deliveries_awaiting_confirmation(tenant=request.tenant)
    if not waiting:
        return None
    rows = [{"delivery": d, "to_send": (d.counts or {}).get("pending"),
             "url": reverse("portal:campaign-detail", kwargs={"campaign_id": d.campaign_id}) + f"?run={d.run_id}"}
            for d in waiting[:10]]
    return Card(title="Waiting for confirmation", template="portal/cards/confirmations.html", span=6,
                data={"rows": rows, "total": len(waiting)})


@dashboard_card("team", order=50)
def team_card(request: HttpRequest) -> Card:
    counts = role_counts(tenant=request.tenant)
    total = sum(counts.values())
    rows = [
        {"role": role.value, "label": role.label, "count": counts.get(role.value, 0),
         "percent": round(100 * counts.get(role.value, 0) / total) if total else 0}
        for role in Role
    ]
    link = None
    if role_can(request.membership.role, "users.manage"):
        link = ("Manage users", reverse("portal:user-list"))
    return Card(title="Team", template="portal/cards/team.html", data={"total": total, "roles": rows},
                link=link)


@dashboard_card("workspace", order=60)
def workspace_card(request: HttpRequest) -> Card:
    tenant = request.tenant
    link = ("Settings", reverse("portal:settings"))
    return Card(title="Workspace", template="portal/cards/workspace.html", link=link, data={
        "time_zone": tenant.time_zone,
        "local_now": timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(tenant.time_zone)),
        "retention_days": tenant.data_retention_days,
        "created_at": tenant.created_at,
    })


CAPABILITY_LABELS = [
    ("campaigns.build", "Build and edit campaigns"),
    ("campaigns.run", "Start, pause and stop campaign runs"),
    ("audiences.write", "Create and edit audiences"),
    ("data.write", "Import and update data"),
    ("tasks.decide", "Approve or reject tasks"),
    ("tasks.assign", "Assign tasks to people"),
    ("schemas.manage", "Define data schemas"),
    ("channels.manage", "Configure delivery channels"),
    ("users.manage", "Manage users and roles"),
    ("tenant.manage", "Change workspace settings"),
]


@dashboard_card("access", order=70)
def access_card(request: HttpRequest) -> Card:
    role = request.membership.role
    granted = [label for capability, label in CAPABILITY_LABELS if role_can(role, capability)]
    return Card(title="Your access", template="portal/cards/access.html",
                data={"role": role, "role_label": Role(role).label, "granted": granted})


# --- Recent activity ---------------------------------------------------------------------------

FIELD_LABELS = {"name": "name", "time_zone": "time zone", "data_retention_days": "data retention",
                "settings": "advanced settings", "is_active": "status"}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _member_update_phrase(entry: AuditEntry, who: str) -> str:
    data = entry.data or {}
    parts = []
    if "role" in data:
        parts.append(f"changed the role of {who} to {Role(data['role']).label}"
                     if data["role"] in Role.values else f"changed the role of {who}")
    if data.get("is_active") is True:
        parts.append(f"reactivated {who}")
    elif data.get("is_active") is False:
        parts.append(f"deactivated {who}")
    if "first_name" in data or "last_name" in data:
        parts.append(f"renamed {who}")
    return _join(parts) if parts else f"updated {who}"


def describe_activity(entry: AuditEntry, *, emails: dict[str, str]) -> str:
    """One readable sentence (after the actor's name) for an audit entry. Later apps add a branch
    or a phrase for their actions; unknown actions fall back to their code."""
    data = entry.data or {}
    who = emails.get(entry.object_id, "a member")
    if entry.action == "tenant.create":
        return "created the workspace"
    if entry.action == "tenant.update":
        changed = [FIELD_LABELS.get(name, name) for name in (data.get("after") or {})]
        return f"changed the workspace {_join(changed)}" if changed else "updated the workspace"
    if entry.action == "member.create":
        role = data.get("role")
        label = Role(role).label if role in Role.values else role
        return f"added {data.get('email') or who} as {label}"
    if entry.action == "member.update":
        return _member_update_phrase(entry, who)
    if entry.action == "delivery.confirm":
        return f"confirmed delivery #{entry.object_id} ({data.get('to_send', '?')} to send)"
    if entry.action == "delivery.cancel":
        return f"cancelled delivery #{entry.object_id} (nothing sent)"
    return entry.action.replace(".", " ").replace("_", " ")


ACTIVITY_ICONS = {"tenant": "sliders", "member": "users"}


@dashboard_card("activity", order=90)
def activity_card(request: HttpRequest) -> Card:
    entries = audit_list(tenant=request.tenant, limit=12)
    member_ids = [e.object_id for e in entries if e.action.startswith("member.")]
    emails = membership_emails(tenant=request.tenant, ids=member_ids)
    items = [{
        "actor": e.actor,
        "summary": describe_activity(e, emails=emails),
        "at": e.created_at,
        "icon": ACTIVITY_ICONS.get(e.action.split(".")[0], "activity"),
    } for e in entries]
    return Card(title="Recent activity", template="portal/cards/activity.html", span=12,
                data={"items": items, "time_zone": request.tenant.time_zone})


def greeting(now: datetime) -> str:
    if now.hour < 5 or now.hour >= 18:
        return "Good evening"
    return "Good morning" if now.hour < 12 else "Good afternoon"
