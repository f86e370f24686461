"""Admin-driven assignment (issue: "open tasks of the tenant with filters and bulk actions"). A
tenant admin sees their tenant's tasks (open ones first: the status filter starts on "open"),
filters them by status, kind, campaign, group and due date, and assigns them in bulk to a user or
a group, or extends their due date. Every change goes through the services (validation, audit,
notifications, waking the waiting node); tasks themselves are read-only here. Operators see every
tenant's tasks; a bulk action over several tenants applies to each task within its own tenant."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.approvals import permissions, services
from apps.approvals.models import ApproverGroup, Decision, Task, TaskApprover, TaskStatus
from apps.campaigns.models import Campaign
from apps.core.admin_site import TenantOwnedAdmin, is_tenant_admin
from apps.core.errors import ApplicationError
from apps.tenants.models import User
from apps.tenants.scoping import tenant_scope


def _tenant_ids(request: HttpRequest, queryset: QuerySet | None = None) -> list[int]:
    if request.user.is_superuser and queryset is not None:
        return sorted(set(queryset.values_list("tenant_id", flat=True)))
    return [request.tenant.pk] if getattr(request, "tenant", None) else []


class StatusFilter(admin.SimpleListFilter):
    """Starts on the open tasks; "All" shows every status."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("all", "All"), *[(s.value, s.label) for s in TaskStatus]]

    def value(self) -> str:
        return super().value() or TaskStatus.OPEN

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {"selected": self.value() == lookup, "display": title,
                   "query_string": changelist.get_query_string({self.parameter_name: lookup})}

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset if self.value() == "all" else queryset.filter(status=self.value())


class _TenantChoiceFilter(admin.SimpleListFilter):
    """A foreign-key filter whose choices are the tenant's own rows (never another tenant's)."""

    model: Any = None
    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = self.model.dangerously_unscoped.all()
        if not request.user.is_superuser:
            rows = rows.filter(tenant_id=request.tenant.pk)
        return [(str(row.pk), str(row)) for row in rows.order_by("pk")[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.field}_id": int(value)})
        return queryset


class CampaignFilter(_TenantChoiceFilter):
    title = "campaign"
    parameter_name = "campaign"
    model = Campaign
    field = "campaign"


class GroupFilter(_TenantChoiceFilter):
    title = "assigned group"
    parameter_name = "group"
    model = ApproverGroup
    field = "assignee_group"


class DueFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "Overdue"), ("24h", "Within 24 hours"), ("7d", "Within 7 days"), ("none", "No due date")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = services.now()
        value = self.value()
        if value == "overdue":
            return queryset.filter(due_at__lte=now)
        if value == "24h":
            return queryset.filter(due_at__gt=now, due_at__lte=now + dt.timedelta(hours=24))
        if value == "7d":
            return queryset.filter(due_at__gt=now, due_at__lte=now + dt.timedelta(days=7))
        if value == "none":
            return queryset.filter(due_at__isnull=True)
        return queryset


class AssignUserForm(forms.Form):
    user = forms.ModelChoiceField(queryset=User.objects.none(), help_text="A member of the task's tenant.")

    def __init__(self, *args: Any, tenant_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = User.objects.filter(
            memberships__tenant_id__in=tenant_ids, memberships__is_active=True, is_active=True,
        ).distinct().order_by("email")


class AssignGroupForm(forms.Form):
    group = forms.ModelChoiceField(queryset=ApproverGroup.dangerously_unscoped.none())

    def __init__(self, *args: Any, tenant_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = ApproverGroup.dangerously_unscoped.filter(
            tenant_id__in=tenant_ids).order_by("name")


class ExtendForm(forms.Form):
    days = forms.IntegerField(min_value=0, max_value=90, initial=1)
    hours = forms.IntegerField(min_value=0, max_value=23, initial=0)

    def __init__(self, *args: Any, tenant_ids: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors and not (data.get("days") or data.get("hours")):
            raise forms.ValidationError("Extend by at least one hour.")
        return data


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    fields = readonly_fields = ["created_at", "user", "verdict", "comment", "data"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The formset narrows to the task shown, which the admin already limited to the tenant.
        return Decision.dangerously_unscoped.select_related("user")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Task)
class TaskAdmin(TenantOwnedAdmin):
    list_display = ["id", "title", "kind", "status", "campaign", "assigned_to", "due_at", "created_at", "tenant"]
    list_display_links = ["id", "title"]
    list_filter = [StatusFilter, "kind", CampaignFilter, GroupFilter, DueFilter, "expiry_action"]
    search_fields = ["title", "campaign__name"]
    ordering = ["due_at", "-created_at"]
    actions = ["assign_to_user", "assign_to_group", "extend_due_date"]
    inlines = [DecisionInline]
    readonly_fields = ["campaign", "run", "node_id", "kind", "title", "instructions", "status", "outcome",
                       "assignee_user", "assignee_group", "requires_each", "due_at", "expiry_action", "escalate_to",
                       "escalated_at", "snapshot", "tolerance", "replaces", "decided_at", "decided_by", "comment",
                       "created_at", "updated_at"]
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("campaign", "assignee_user", "assignee_group", "tenant")

    @admin.display(description="assigned to")
    def assigned_to(self, task: Task) -> str:
        if task.requires_each:
            return ", ".join(a.user.email for a in TaskApprover.dangerously_unscoped.filter(
                task=task).select_related("user"))
        if task.assignee_user_id:
            return task.assignee_user.email
        if task.assignee_group_id:
            return f"group {task.assignee_group.name}"
        return "any approver"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Tasks change through the actions (services), never by editing their fields.
        return obj is None and self._is_allowed(request)

    # Bulk actions ---------------------------------------------------------------------------------

    @admin.action(description="Assign to user…")
    def assign_to_user(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._bulk(request, queryset, "assign_to_user", "Assign to a user", AssignUserForm,
                          lambda task, data, by: services.task_assign(tenant=task.tenant, task=task, by=by,
                                                                      user=str(data["user"].pk)))

    @admin.action(description="Assign to group…")
    def assign_to_group(self, request: HttpRequest, queryset: QuerySet) -> Any:
        return self._bulk(request, queryset, "assign_to_group", "Assign to a group", AssignGroupForm,
                          lambda task, data, by: services.task_assign(tenant=task.tenant, task=task, by=by,
                                                                      group=data["group"].pk))

    @admin.action(description="Extend due date…")
    def extend_due_date(self, request: HttpRequest, queryset: QuerySet) -> Any:
        def extend(task: Task, data: dict[str, Any], by: User | None) -> Task:
            delta = dt.timedelta(days=data["days"], hours=data["hours"])
            base = max(task.due_at or services.now(), services.now())
            return services.task_extend(tenant=task.tenant, task=task, by=by, due_at=base + delta)

        return self._bulk(request, queryset, "extend_due_date", "Extend the due date", ExtendForm, extend)

    def _bulk(self, request: HttpRequest, queryset: QuerySet, action: str, title: str, form_class: type[forms.Form],
              apply: Callable[[Task, dict[str, Any], User | None], Any]) -> Any:
        tasks = list(queryset.select_related("tenant").order_by("pk"))
        form = form_class(request.POST if "apply" in request.POST else None,
                          tenant_ids=_tenant_ids(request, queryset))
        if "apply" in request.POST and form.is_valid():
            done, failed = 0, []
            for task in tasks:
                # Operators act as the system in tenants they are not a member of.
                by = request.user if permissions.membership_of(task.tenant, request.user) else None
                try:
                    with tenant_scope(task.tenant):
                        apply(task, form.cleaned_data, by)
                    done += 1
                except ApplicationError as exc:
                    reasons = "; ".join(m for ms in exc.fields.values() for m in ms) or exc.message
                    failed.append(f"#{task.pk} ({reasons})")
            if done:
                self.message_user(request, f"{title}: {done} task(s) done.", messages.SUCCESS)
            if failed:
                self.message_user(request, f"{title}: not done for {', '.join(failed)}.", messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request), "title": title, "form": form, "tasks": tasks,
            "action": action, "opts": self.model._meta, "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "approvals/admin/bulk_action.html", context)


class ApproverGroupForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(queryset=User.objects.none(), required=False)

    tenant_id: int | None = None  # set by the admin for the form it builds

    class Meta:
        model = ApproverGroup
        fields = ["name"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if ApproverGroup.dangerously_unscoped.filter(tenant_id=self.tenant_id, name=name).exists():
            raise forms.ValidationError("A group with this name exists.")
        return name


@admin.register(ApproverGroup)
class ApproverGroupAdmin(TenantOwnedAdmin):
    """Groups tasks can be assigned to; created and changed through the services."""

    form = ApproverGroupForm
    list_display = ["name", "member_list", "tenant"]
    search_fields = ["name"]

    @admin.display(description="members")
    def member_list(self, group: ApproverGroup) -> str:
        return ", ".join(group.group.user_set.order_by("email").values_list("email", flat=True))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        tenant_id = obj.tenant_id if obj else getattr(request.tenant, "pk", None)
        form.tenant_id = tenant_id
        form.base_fields["members"].queryset = User.objects.filter(
            memberships__tenant_id=tenant_id, memberships__is_active=True).distinct().order_by("email")
        if obj is not None:
            form.base_fields["members"].initial = list(obj.group.user_set.values_list("pk", flat=True))
        return form

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_tenant_admin(request)  # a group belongs to the admin's current tenant

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # tasks may point at it

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: ApproverGroup, form: Any, change: bool) -> None:
        members = [str(u.pk) for u in form.cleaned_data["members"]]
        tenant = obj.tenant if change else request.tenant
        by = request.user if permissions.membership_of(tenant, request.user) else None
        with tenant_scope(tenant):
            if change:
                services.approver_group_set_members(tenant=tenant, group=obj, members=members, by=by)
            else:
                created = services.approver_group_create(tenant=tenant, name=obj.name, members=members, by=by)
                obj.pk, obj.tenant, obj.group = created.pk, created.tenant, created.group

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None  # members were saved by the service
