"""Portal tenant resolution: the tenant chosen in the session (tenant switcher), else the
user's only or first tenant. The request runs inside that tenant's scope."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.tenants.scoping import tenant_scope
from apps.tenants.selectors import dangerously_membership_list_for_user, membership_resolve

SESSION_KEY = "tenant_id"


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None
        request.membership = None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        # The tenant chosen in the session; if that choice is stale (membership deactivated since),
        # the user's first tenant.
        membership = (membership_resolve(user=user, tenant_id=request.session.get(SESSION_KEY))
                      or dangerously_membership_list_for_user(user=user).first())
        if membership is None:
            return self.get_response(request)
        if request.session.get(SESSION_KEY) != membership.tenant_id:
            request.session[SESSION_KEY] = membership.tenant_id
        request.tenant = membership.tenant
        request.membership = membership
        with tenant_scope(membership.tenant):
            return self.get_response(request)
