"""Campaign pages of the portal: the list, a campaign's page (actions, the graph of a run drawn
as SVG, transition previews, the run log, the draft's JSON editor). Views are thin: they call the
campaign services and selectors and shape the answer; a service's refusal is a flash message."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from apps.campaigns import selectors, services, why
from apps.campaigns.models import Campaign, CampaignStatus, NodeState, Run
from apps.core.errors import ApplicationError
from apps.portal.confirmation_views import confirmation_context
from apps.portal.graph_layout import layout
from apps.portal.views import portal_page
from apps.tenants.roles import Role, role_can

CAMPAIGNS_PER_PAGE = 25
RUNS_IN_SELECTOR = 30
LOG_LEVELS = ("debug", "info", "warning", "error")

# Node status -> (text label, glyph). Colour is never the only carrier of the status.
NODE_STATUS = {
    "pending": ("Pending", "○"),
    "ready": ("Ready", "◔"),
    "running": ("Running", "▶"),
    "waiting": ("Waiting", "‖"),
    "done": ("Done", "✓"),
    "skipped": ("Skipped", "↷"),
    "failed": ("Failed", "✕"),
    "cancelled": ("Cancelled", "⊘"),
    "draft": ("Draft", "✎"),
}


# A record's fate at an activity (apps/campaigns/why.py) -> (text, glyph, status style).
WHY_STATUS = {
    "passed": ("Passed", "✓", "done"),
    "dropped": ("Dropped", "✕", "failed"),
    "not_reached": ("Not reached", "○", "queued"),
    "unknown": ("Cannot tell", "?", "waiting"),
}


# --- Forms ---------------------------------------------------------------------------------------


class CampaignCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class DraftForm(forms.Form):
    graph = forms.CharField(widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false"}),
                            error_messages={"required": "Enter the graph as JSON."})
    revision = forms.IntegerField(widget=forms.HiddenInput, min_value=1)

    def clean_graph(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["graph"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc.msg} (line {exc.lineno}, "
                                        f"column {exc.colno}).") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The graph must be a JSON object with `nodes` and `edges`.")
        return value


class WhyForm(forms.Form):
    key = forms.CharField(max_length=255, label="Record key", error_messages={
        "required": "Enter the key of the record to look for.",
        "max_length": "At most %(limit_value)d characters."},
        widget=forms.TextInput(attrs={"placeholder": "e.g. a profile id", "autocomplete": "off"}))


class LogFilterForm(forms.Form):
    level = forms.ChoiceField(required=False, choices=[("", "All levels")] + [(v, v.title()) for v in LOG_LEVELS])
    search = forms.CharField(required=False, max_length=200,
                             widget=forms.TextInput(attrs={"placeholder": "Search the log", "type": "search"}))


# --- Helpers -------------------------------------------------------------------------------------


def _can(request: HttpRequest, capability: str) -> bool:
    return role_can(request.membership.role, capability)


def _require(request: HttpRequest, capability: str) -> None:
    if not _can(request, capability):
        raise PermissionDenied("Your role cannot do this.")


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _campaign_run(request: HttpRequest, campaign: Campaign, run_id: Any) -> Run:
    run = selectors.run_get(tenant=request.tenant, id=run_id)
    if run.campaign_id != campaign.pk:
        raise Http404("No such run.")
    return run


def _graph_parts(graph: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Nodes and edges of a graph that may be an invalid draft (skip what cannot be drawn)."""
    graph = graph if isinstance(graph, dict) else {}
    nodes, seen = [], set()
    for node in graph.get("nodes") or []:
        if isinstance(node, dict) and isinstance(node.get("id"), str) and node["id"] not in seen:
            seen.add(node["id"])
            nodes.append(node)
    edges = []
    for edge in graph.get("edges") or []:
        if isinstance(edge, dict) and isinstance(edge.get("from"), str) and isinstance(edge.get("to"), str):
            edges.append((edge["from"], str(edge.get("port") or "out"), edge["to"]))
        else:
            edges.append(("", "", ""))  # keeps the indexes of the other edges
    return nodes, edges


def _problems_by_node(problems: list[dict[str, Any]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for problem in problems:
        if problem.get("node"):
            result.setdefault(problem["node"], []).append(problem.get("message", ""))
    return result


def graph_context(campaign: Campaign, run: Run | None, problems: list[dict[str, Any]]) -> dict[str, Any]:
    """What the SVG needs: the run's graph (else the draft's), node boxes with status and marks,
    edges with the selected run's counts."""
    graph = run.graph if run is not None else services.draft_version(campaign).graph
    nodes, edges = _graph_parts(graph)
    drawn = layout([n["id"] for n in nodes], edges)
    states: dict[str, NodeState] = {s.node_id: s for s in selectors.run_nodes(run=run)} if run else {}
    transitions = {t["index"]: t for t in selectors.run_transitions(run=run)} if run else {}
    node_problems = _problems_by_node(problems)
    boxes = []
    for node in nodes:
        box = drawn.nodes[node["id"]]
        state = states.get(node["id"])
        status = state.status if state else ("pending" if run else "draft")
        label, glyph = NODE_STATUS.get(status, (status.title(), "•"))
        attention = []
        if status == "failed":
            attention.append(f"Failed: {state.error}" if state and state.error else "Failed")
        if status == "waiting" and node.get("type") == "approval":
            attention.append("Waiting for approval")
        attention.extend(node_problems.get(node["id"], []))
        boxes.append({
            "id": node["id"], "type": str(node.get("type", "?")), "box": box, "status": status,
            "status_label": label, "glyph": glyph, "attention": attention,
            "count_in": state.count_in if state else None, "count_out": state.count_out if state else None,
        })
    paths = []
    for path in drawn.edges:
        transition = transitions.get(path.index)
        count = transition["count"] if transition else None
        paths.append({"path": path, "count": count, "active": bool(transition and transition["active"]),
                      "label": f"{count:,}" if count is not None else path.port})
    return {"graph_nodes": boxes, "graph_edges": paths, "graph_width": drawn.width,
            "graph_height": drawn.height, "run": run, "campaign": campaign}


def _draft_problems(campaign: Campaign, draft: Any) -> list[dict[str, Any]]:
    if draft.is_frozen:
        return []
    try:
        return services.graph_problems(campaign, draft.graph)
    except Exception:  # an unreadable draft: the structure check reports what it can
        return [{"node": None, "path": "", "message": "The draft graph cannot be read."}]


def _actions(request: HttpRequest, campaign: Campaign, draft: Any) -> list[dict[str, str]]:
    build, run = _can(request, "campaigns.build"), _can(request, "campaigns.run")
    status = campaign.status
    has_published = campaign.versions.filter(status="published").exists()
    shown = []
    if status != CampaignStatus.ARCHIVED:
        if build and not draft.is_frozen:
            shown += [("validate", "Validate", "check-square", "secondary"),
                      ("publish", "Publish", "upload", "primary")]
        if run and has_published and status in (CampaignStatus.PUBLISHED, CampaignStatus.COMPLETED,
                                                CampaignStatus.STOPPED, CampaignStatus.FAILED):
            shown.append(("start", "Start", "zap", "primary"))
        if run:
            shown.append(("test", "Test run", "eye", "secondary"))
        if run and status == CampaignStatus.LIVE:
            shown.append(("pause", "Pause", "clock", "secondary"))
        if run and status == CampaignStatus.PAUSED:
            shown.append(("resume", "Resume", "zap", "primary"))
        if run and status in (CampaignStatus.LIVE, CampaignStatus.PAUSED, CampaignStatus.FAILED):
            shown.append(("stop", "Stop", "x", "danger-text"))
    return [{"name": n, "label": label, "icon": icon, "style": style} for n, label, icon, style in shown]


def _campaign_page(request: HttpRequest, campaign: Campaign, *, draft_form: DraftForm | None = None,
                   status: int = 200) -> HttpResponse:
    draft = services.draft_version(campaign)
    problems = _draft_problems(campaign, draft)
    runs = list(selectors.run_list(tenant=request.tenant, campaign=campaign)[:RUNS_IN_SELECTOR])
    run = None
    if request.GET.get("run"):
        run = _campaign_run(request, campaign, request.GET["run"])
        if run not in runs:
            runs.append(run)
    elif runs:
        run = runs[0]
    log_form = LogFilterForm(request.GET or None)
    can_build = _can(request, "campaigns.build")
    if draft_form is None and can_build:
        draft_form = DraftForm(initial={"graph": json.dumps(draft.graph, indent=2), "revision": draft.revision})
    schedule = selectors.campaign_schedule(campaign=campaign)
    context = {
        "campaign": campaign, "draft": draft, "problems": problems, "runs": runs,
        "actions": _actions(request, campaign, draft), "can_build": can_build,
        "draft_form": draft_form, "draft_json": json.dumps(draft.graph, indent=2),
        "schedule": schedule, "next_fires": selectors.schedule_next_fires(schedule=schedule),
        "log_form": log_form, "log": _log_entries(run, log_form) if run else [],
        "role_label": Role(request.membership.role).label,
        **graph_context(campaign, run, problems),
        **confirmation_context(request, run),
    }
    return render(request, "portal/campaigns/detail.html", context, status=status)


def _log_entries(run: Run, form: LogFilterForm) -> list[Any]:
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    return selectors.run_log(run=run, level=filters.get("level") or None, search=filters.get("search") or None)


# --- Pages ---------------------------------------------------------------------------------------


@portal_page()
@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.campaign_list(tenant=request.tenant), CAMPAIGNS_PER_PAGE).get_page(
        request.GET.get("page"))
    rows = []
    for campaign in page:
        schedule = selectors.campaign_schedule(campaign=campaign)
        rows.append({
            "campaign": campaign,
            "last_run": selectors.run_list(tenant=request.tenant, campaign=campaign).first(),
            "schedule": schedule,
            "next_fire": next(iter(selectors.schedule_next_fires(schedule=schedule, count=1)), None),
        })
    return render(request, "portal/campaigns.html", {
        "page": page, "rows": rows, "create_form": CampaignCreateForm(),
        "role_label": Role(request.membership.role).label,
    })


@portal_page(capability="campaigns.build")
@require_POST
def campaign_new(request: HttpRequest) -> HttpResponse:
    form = CampaignCreateForm(request.POST)
    if form.is_valid():
        try:
            campaign = services.campaign_create(tenant=request.tenant, by=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Campaign “{campaign.name}” was created. Design its flow below.")
            return redirect("portal:campaign-detail", campaign_id=campaign.pk)
    page = Paginator(selectors.campaign_list(tenant=request.tenant), CAMPAIGNS_PER_PAGE).get_page(1)
    rows = [{"campaign": c, "last_run": None, "schedule": None} for c in page]
    return render(request, "portal/campaigns.html", {
        "page": page, "rows": rows, "create_form": form, "role_label": Role(request.membership.role).label,
    }, status=400)


@portal_page()
@require_GET
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    return _campaign_page(request, campaign)


@portal_page()
@require_GET
def campaign_graph(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The graph and counts of one run: the fragment that refreshes while the run is active."""
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    draft = services.draft_version(campaign)
    run = _campaign_run(request, campaign, request.GET.get("run")) if request.GET.get("run") else None
    response = render(request, "portal/campaigns/_graph.html",
                      graph_context(campaign, run, _draft_problems(campaign, draft)))
    patch_vary_headers(response, ["HX-Request"])
    return response


ACTIONS = {
    "validate": "campaigns.build", "publish": "campaigns.build", "start": "campaigns.run",
    "test": "campaigns.run", "pause": "campaigns.run", "resume": "campaigns.run", "stop": "campaigns.run",
}


def _problem_text(problems: list[dict[str, Any]]) -> str:
    return "; ".join(f"{p['node']}: {p['message']}" if p.get("node") else p.get("message", "")
                     for p in problems[:10]) + ("; …" if len(problems) > 10 else "")


@portal_page()
@require_POST
def campaign_action(request: HttpRequest, campaign_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("No such action.")
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    _require(request, ACTIONS[action])
    tenant, by = request.tenant, request.user
    target = reverse("portal:campaign-detail", kwargs={"campaign_id": campaign.pk})
    try:
        if action == "validate":
            problems = services.graph_problems(campaign, services.draft_version(campaign).graph)
            if problems:
                messages.error(request, f"The draft has {len(problems)} problem(s): {_problem_text(problems)}")
            else:
                messages.success(request, "The draft is valid: it can be published.")
        elif action == "publish":
            version = services.campaign_publish(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, f"Version {version.number} is published.")
        elif action == "start":
            run = services.campaign_start(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, "The campaign is live." + (" Its run has started." if run else
                                                                 " It starts on its schedule or trigger."))
            if run:
                target += f"?run={run.pk}"
        elif action == "test":
            run = services.campaign_test(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, "A test run has started: nothing is sent in test mode.")
            target += f"?run={run.pk}"
        elif action == "pause":
            services.campaign_pause(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, "The campaign is paused.")
        elif action == "resume":
            services.campaign_resume(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, "The campaign is live again.")
        elif action == "stop":
            services.campaign_stop(tenant=tenant, campaign=campaign, by=by)
            messages.success(request, "The campaign is stopped.")
    except ApplicationError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        problems = exc.fields.get("graph") if isinstance(exc.fields.get("graph"), list) else []
        problems = [p for p in problems if isinstance(p, dict)]
        messages.error(request, f"{exc.message} {_problem_text(problems)}".strip() if problems else exc.message)
    return redirect(target)


@portal_page(capability="campaigns.build")
@require_POST
def campaign_draft_save(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    form = DraftForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The draft was not saved: " + " ".join(
            e for errors in form.errors.values() for e in errors))
        return _campaign_page(request, campaign, draft_form=form, status=400)
    try:
        version = services.draft_update(tenant=request.tenant, campaign=campaign, by=request.user,
                                        graph=form.cleaned_data["graph"], revision=form.cleaned_data["revision"])
    except ApplicationError as exc:
        if exc.status == 403:
            raise PermissionDenied(exc.message) from None
        messages.error(request, exc.message)
        return _campaign_page(request, campaign, draft_form=form, status=409 if exc.status == 409 else 400)
    messages.success(request, f"Draft saved (version {version.number}, revision {version.revision}).")
    return redirect("portal:campaign-detail", campaign_id=campaign.pk)


@portal_page()
@require_GET
def transition_preview(request: HttpRequest, campaign_id: int, run_id: int, index: int) -> HttpResponse:
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    run = _campaign_run(request, campaign, run_id)
    sample = selectors.transition_sample(run=run, index=index, limit=20)
    transition = next((t for t in selectors.run_transitions(run=run) if t["index"] == index), None)
    return render(request, "portal/campaigns/_transition.html",
                  {"sample": sample, "transition": transition, "run": run, "campaign": campaign})


@portal_page()
@require_GET
def run_log(request: HttpRequest, campaign_id: int, run_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    run = _campaign_run(request, campaign, run_id)
    form = LogFilterForm(request.GET or None)
    response = render(request, "portal/campaigns/_log.html",
                      {"log": _log_entries(run, form), "run": run, "campaign": campaign})
    patch_vary_headers(response, ["HX-Request"])
    return response


@portal_page()
@require_GET
def run_why(request: HttpRequest, campaign_id: int, run_id: int) -> HttpResponse:
    """Why / why not: where one record went in this run, activity by activity (no JavaScript)."""
    campaign = selectors.campaign_get(tenant=request.tenant, id=campaign_id)
    run = _campaign_run(request, campaign, run_id)
    form = WhyForm(request.GET if "key" in request.GET else None)
    answer, error, status = None, "", 200
    if form.is_bound:
        if form.is_valid():
            try:
                answer = why.run_why(tenant=request.tenant, run=run, key=form.cleaned_data["key"])
            except ApplicationError as exc:
                if exc.status == 404:
                    raise Http404(exc.message) from None
                error, status = exc.message, exc.status
                for message in exc.fields.get("key", []):
                    form.add_error("key", message)
        else:
            status = 400
    rows = [{**n, "shown": WHY_STATUS.get(n["status"], (n["status"], "•", "queued"))}
            for n in (answer or {}).get("nodes", [])]
    return render(request, "portal/campaigns/why.html", {
        "campaign": campaign, "run": run, "form": form, "answer": answer, "rows": rows, "error": error,
    }, status=status)
