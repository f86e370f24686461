"""Pages of the hosted portal. Views are thin: they parse a form, call one service or selector,
and redirect with a message; business errors come back as `ApplicationError` and are shown on
the form, never as a 500."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import ApplicationError, NotFound
from apps.portal.dashboard import dashboard_cards, greeting
from apps.portal.forms import (
    LoginForm,
    MemberAddForm,
    MemberFilterForm,
    MemberRoleForm,
    SwitchTenantForm,
    TenantSettingsForm,
    add_application_error,
)
from apps.tenants.middleware import SESSION_KEY
from apps.tenants.models import Membership
from apps.tenants.roles import Role, role_can
from apps.tenants.selectors import member_get, member_list, membership_resolve, role_counts
from apps.tenants.services import member_create, member_update, tenant_update

View = Callable[..., HttpResponse]


def portal_page(*, capability: str | None = None) -> Callable[[View], View]:
    """Every portal page: the user is logged in and acts through a membership of the current
    tenant (else a friendly "no workspace" page); with `capability`, the member's role must
    hold it, else 404 so that the page's existence is not revealed. Dates render in the
    workspace's time zone, and a selector's NotFound becomes a 404."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.membership is None:
                return render(request, "portal/no_tenant.html")
            if capability and not role_can(request.membership.role, capability):
                raise Http404("No such page.")
            with timezone.override(zoneinfo.ZoneInfo(request.tenant.time_zone)):
                try:
                    return view(request, *args, **kwargs)
                except NotFound as exc:
                    raise Http404(exc.message) from None

        return login_required(wrapper)

    return decorator


# --- Authentication ----------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    form_class = LoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    http_method_names = ["post", "options"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are signed out.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "portal/password_change.html"
    success_url = reverse_lazy("portal:password-change-done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "portal/password_change_done.html"


@login_required
@require_POST
def switch_tenant(request: HttpRequest) -> HttpResponse:
    """Make another of the user's tenants the current one. A tenant they are not an active
    member of is a 404, whether it exists or not."""
    form = SwitchTenantForm(request.POST)
    if not form.is_valid():
        raise Http404("No such workspace.")
    tenant_id = form.cleaned_data["tenant_id"]
    membership = membership_resolve(user=request.user, tenant_id=tenant_id)
    if membership is None or membership.tenant_id != tenant_id:
        raise Http404("No such workspace.")
    request.session[SESSION_KEY] = membership.tenant_id
    name = membership.tenant.name
    messages.success(request, f"You are now working in {name}{'' if name.endswith('.') else '.'}")
    return redirect("portal:dashboard")


# --- Dashboard and sections --------------------------------------------------------------------


@portal_page()
def dashboard(request: HttpRequest) -> HttpResponse:
    local_now = timezone.localtime()
    return render(request, "portal/dashboard.html", {
        "cards": dashboard_cards(request),
        "greeting": greeting(local_now),
        "local_now": local_now,
    })


def _section(template: str) -> View:
    @portal_page()
    def view(request: HttpRequest) -> HttpResponse:
        return render(request, template, {"role_label": Role(request.membership.role).label})

    return view


tasks = _section("portal/tasks.html")


# --- Workspace settings ------------------------------------------------------------------------


@portal_page()
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    """Everyone reads the workspace settings; tenant admins change them."""
    tenant = request.tenant
    can_edit = role_can(request.membership.role, "tenant.manage")
    status = 200
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Only workspace admins can change these settings.")
        form = TenantSettingsForm(request.POST, current_time_zone=tenant.time_zone)
        if form.is_valid():
            changes = {k: v for k, v in form.cleaned_data.items() if getattr(tenant, k) != v}
            try:
                if changes:
                    tenant_update(tenant=tenant, by=request.user, **changes)
            except ApplicationError as exc:
                add_application_error(form, exc)
            else:
                messages.success(request, "Workspace settings saved." if changes else "No changes to save.")
                return redirect("portal:settings")
        status = 400
    elif can_edit:
        form = TenantSettingsForm(current_time_zone=tenant.time_zone, initial={
            "name": tenant.name, "time_zone": tenant.time_zone,
            "data_retention_days": tenant.data_retention_days,
        })
    else:
        form = None
    return render(request, "portal/settings.html", {"form": form, "can_edit": can_edit, "tenant": tenant},
                  status=status)


# --- Users (tenant admins) ---------------------------------------------------------------------

MEMBERS_PER_PAGE = 25


def _users_page(request: HttpRequest, *, add_form: MemberAddForm | None = None,
                row_error: tuple[int, str] | None = None, status: int = 200) -> HttpResponse:
    tenant = request.tenant
    filter_form = MemberFilterForm(request.GET or None, auto_id="filter_%s")
    filters = filter_form.filters() if filter_form.is_bound else {}
    page = Paginator(member_list(tenant=tenant, filters=filters), MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    counts = role_counts(tenant=tenant)
    context = {
        "page": page,
        "filter_form": filter_form,
        "is_filtered": any(v not in (None, "") for v in filters.values()),
        "add_form": add_form or MemberAddForm(),
        "roles": Role.choices,
        "row_error": row_error,
        "active_count": sum(counts.values()),
        "admin_count": counts.get(Role.ADMIN, 0),
        "inactive_count": member_list(tenant=tenant, filters={"is_active": False}).count(),
    }
    partial = request.method == "GET" and request.headers.get("HX-Request") == "true"
    template = "portal/users/_members.html" if partial else "portal/users/list.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _refused(request: HttpRequest, membership: Membership, exc: ApplicationError) -> HttpResponse:
    if exc.status == 404:
        raise Http404(exc.message)
    return _users_page(request, row_error=(membership.user_id, exc.message),
                       status=exc.status if exc.status in (400, 409) else 400)


def _after_member_change(request: HttpRequest, membership: Membership) -> HttpResponse:
    # Demoting or deactivating yourself takes the users page away from you.
    if membership.user_id == request.user.pk:
        return redirect("portal:dashboard")
    return redirect("portal:user-list")


@portal_page(capability="users.manage")
@require_http_methods(["GET"])
def user_list(request: HttpRequest) -> HttpResponse:
    return _users_page(request)


@portal_page(capability="users.manage")
@require_POST
def user_add(request: HttpRequest) -> HttpResponse:
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership, password = member_create(tenant=request.tenant, by=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            add_application_error(form, exc)
        else:
            role = Role(membership.role).label
            email = membership.user.email
            if password:
                messages.success(
                    request, f"{email} was added as {role}. Their temporary password is shown below, "
                    "once: share it with them securely; they can change it after signing in.")
                messages.info(request, password, extra_tags="secret")
            else:
                messages.success(request, f"{email} was added as {role}. They already had an account and "
                                 "sign in with their existing password.")
            return redirect("portal:user-list")
    return _users_page(request, add_form=form, status=400)


@portal_page(capability="users.manage")
@require_POST
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    membership = member_get(tenant=request.tenant, user_id=user_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        return _users_page(request, row_error=(membership.user_id, "Choose one of the roles."), status=400)
    try:
        membership = member_update(tenant=request.tenant, membership=membership, by=request.user,
                                   role=form.cleaned_data["role"])
    except ApplicationError as exc:
        return _refused(request, membership, exc)
    messages.success(request, f"{membership.user.email} is now {Role(membership.role).label}.")
    return _after_member_change(request, membership)


def _set_active(request: HttpRequest, user_id: int, *, is_active: bool) -> HttpResponse:
    membership = member_get(tenant=request.tenant, user_id=user_id)
    try:
        membership = member_update(tenant=request.tenant, membership=membership, by=request.user,
                                   is_active=is_active)
    except ApplicationError as exc:
        return _refused(request, membership, exc)
    if is_active:
        messages.success(request, f"{membership.user.email} can sign in to this workspace again.")
    else:
        messages.success(request, f"{membership.user.email} was deactivated and can no longer access "
                         "this workspace.")
    return _after_member_change(request, membership)


@portal_page(capability="users.manage")
@require_POST
def user_deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _set_active(request, user_id, is_active=False)


@portal_page(capability="users.manage")
@require_POST
def user_activate(request: HttpRequest, user_id: int) -> HttpResponse:
    return _set_active(request, user_id, is_active=True)
