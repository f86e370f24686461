"""Portal pages of tasks: the inbox (waiting on me, open, due soon, decided), a task's decision
page (the campaign's graph with the waiting activity, counts, sample recipients, rendered content,
decisions) with approve / reject with a comment / claim / complete, and the signed link from the
e-mails. Views parse, call one service or selector, and render."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.approvals import notifications, selectors, services
from apps.approvals.models import TaskStatus
from apps.core.errors import ApplicationError
from apps.portal.views import portal_page
from apps.tenants.middleware import SESSION_KEY
from apps.tenants.roles import Role
from apps.tenants.selectors import membership_resolve

TABS = [
    ("mine", "Waiting on me"),
    ("open", "All open"),
    ("due", "Due soon"),
    ("decided", "Decided"),
]


def _tab_filters(tab: str) -> dict[str, Any]:
    if tab == "mine":
        return {"status": "open", "assignee": "me"}
    if tab == "open":
        return {"status": "open"}
    if tab == "due":
        return {"status": "open", "due_before": (services.now() + dt.timedelta(hours=24)).isoformat()}
    return {"status": ",".join(s for s in TaskStatus.values if s != TaskStatus.OPEN)}


@portal_page(capability="tasks.read")
def inbox(request: HttpRequest) -> HttpResponse:
    tab = request.GET.get("tab") or "mine"
    if tab not in dict(TABS):
        tab = "mine"
    qs = selectors.task_list(tenant=request.tenant, user=request.user, filters=_tab_filters(tab))
    if tab == "decided":
        qs = qs.order_by("-decided_at", "-id")
    elif tab in ("due", "mine"):
        qs = qs.order_by("due_at", "-created_at")
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    counts = {name: selectors.task_list(tenant=request.tenant, user=request.user, filters=_tab_filters(name)).count()
              for name, _ in TABS if name != "decided"}
    return render(request, "portal/tasks.html", {
        "tabs": [{"name": name, "label": label, "count": counts.get(name), "is_current": name == tab}
                 for name, label in TABS],
        "tab": tab, "page": page, "role_label": Role(request.membership.role).label,
        "empty_title": {"mine": "Nothing waiting for a decision", "open": "No open task",
                        "due": "Nothing due in the next 24 hours", "decided": "No decided task yet"}[tab],
    })


@portal_page(capability="tasks.read")
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    task = selectors.task_get(tenant=request.tenant, id=task_id)
    context: dict[str, Any] = {
        "task": task,
        "decisions": selectors.task_decisions(task=task),
        "can_do": selectors.task_abilities(task=task, user=request.user),
        "snapshot": task.snapshot or {},
        "campaign": task.campaign,
        "run": task.run,
    }
    if context["can_do"]["assign"]:
        context["assignees"] = _assignee_choices(request, task)
    if task.run is not None:
        from apps.portal.campaign_views import graph_context

        context.update(graph_context(task.campaign, task.run, []))
        context["waiting_node"] = task.node_id
    return render(request, "approvals/task.html", context)


def _assignee_choices(request: HttpRequest, task: Any) -> list[tuple[str, str]]:
    """People who could answer the task (for an approval: roles that may decide), then groups."""
    from apps.tenants.models import Membership
    from apps.tenants.roles import CAPABILITIES

    roles = CAPABILITIES["tasks.decide"] if task.kind == "approval" else CAPABILITIES["tasks.read"]
    people = Membership.objects.filter(tenant=request.tenant, is_active=True, role__in=list(roles)).select_related(
        "user").order_by("user__email")
    return ([(f"user:{m.user_id}", f"{m.user.email} ({m.get_role_display().lower()})") for m in people]
            + [(f"group:{g.pk}", f"group {g.name}") for g in selectors.approver_group_list(tenant=request.tenant)])


def _assign(request: HttpRequest, task: Any) -> None:
    kind, _, ref = request.POST.get("assignee", "").partition(":")
    if kind not in ("user", "group") or not ref.isdigit():
        raise ApplicationError("Choose a person or a group.", fields={"assignee": ["Choose a person or a group."]})
    services.task_assign(tenant=request.tenant, task=task, by=request.user, **{kind: ref})


def _act(request: HttpRequest, task_id: int, action: str) -> HttpResponse:
    task = selectors.task_get(tenant=request.tenant, id=task_id)
    comment = request.POST.get("comment", "")
    try:
        if action == "approve":
            services.task_approve(tenant=request.tenant, task=task, by=request.user, comment=comment)
            messages.success(request, "Approved: the campaign goes on.")
        elif action == "reject":
            services.task_reject(tenant=request.tenant, task=task, by=request.user, comment=comment)
            messages.success(request, "Rejected: the campaign takes its reject path.")
        elif action == "claim":
            services.task_claim(tenant=request.tenant, task=task, by=request.user)
            messages.success(request, "The task is yours now.")
        elif action == "assign":
            _assign(request, task)
            messages.success(request, "Task reassigned; the new assignees are notified.")
        elif action == "complete":
            services.task_complete(tenant=request.tenant, task=task, by=request.user, comment=comment)
            messages.success(request, "Marked done: the campaign goes on.")
        else:
            raise Http404("No such action.")
    except ApplicationError as exc:
        details = "; ".join(m for ms in exc.fields.values() for m in ms)
        messages.error(request, f"{exc.message}{' ' + details if details else ''}")
    return redirect("approvals-portal:task", task_id=task.pk)


@require_POST
@portal_page(capability="tasks.read")
def task_action(request: HttpRequest, task_id: int, action: str) -> HttpResponse:
    return _act(request, task_id, action)


def task_link(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the e-mails: log in first (if needed), switch to the task's workspace when the
    person belongs to it, then open the task. A forged or stale link leads to the inbox."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    data = notifications.task_link_read(token)
    if data is None:
        messages.error(request, "This link is not valid any more; here are your tasks.")
        return redirect("approvals-portal:inbox")
    membership = membership_resolve(user=request.user, tenant_id=data["tenant"])
    if membership is None or membership.tenant_id != data["tenant"]:
        raise Http404("No such task.")
    request.session[SESSION_KEY] = membership.tenant_id
    return redirect("approvals-portal:task", task_id=data["task"])
