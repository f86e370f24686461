"""The base of every tenant API view: it resolves the tenant from the authenticated user's
membership (header `X-Tenant: <slug>` when they have several), runs the view inside that
tenant's scope, and checks the capability the action needs against the member's role."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.tenants.roles import role_can
from apps.tenants.scoping import _current_tenant
from apps.tenants.selectors import dangerously_membership_list_for_user, membership_resolve

TENANT_HEADER = "HTTP_X_TENANT"


class HasCapability(permissions.BasePermission):
    """Grants what the member's role allows for the capability the view names for this action."""

    message = "Your role does not allow this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        capability = view.required_capability(request)
        if capability is None:
            return True
        membership = getattr(request, "membership", None)
        return membership is not None and role_can(membership.role, capability)


class TenantAPIMixin:
    """Mix into any DRF view. Declare `capabilities = {"list": "data.read", ...}` keyed by viewset
    action (or HTTP method, lower case), with `"*"` as the fallback.

    A view whose URL names an object defines `lookup_object(**url_kwargs)`, which loads it within
    the tenant (raising NotFound otherwise). It runs before the role check, so a user of another
    tenant always gets 404, whatever their role; the handler finds the object in `self.object`."""

    capabilities: dict[str, str | None] = {}
    permission_classes = [permissions.IsAuthenticated, HasCapability]

    def required_capability(self, request: Request) -> str | None:
        key = getattr(self, "action", None) or request.method.lower()
        if key in self.capabilities:
            return self.capabilities[key]
        if "*" in self.capabilities:
            return self.capabilities["*"]
        raise exceptions.PermissionDenied(f"No capability declared for {type(self).__name__}.{key}")

    @property
    def tenant(self) -> Any:
        return self.request.tenant

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.perform_authentication(request)
        request.tenant = None
        request.membership = None
        if request.user and request.user.is_authenticated:
            membership = self._resolve_membership(request)
            request.tenant = membership.tenant
            request.membership = membership
            request._request.tenant = membership.tenant
            request._request.membership = membership
            self._scope_token = _current_tenant.set(membership.tenant)
            if kwargs and hasattr(self, "lookup_object"):
                self.object = self.lookup_object(**kwargs)
        super().initial(request, *args, **kwargs)

    def _resolve_membership(self, request: Request) -> Any:
        slug = request.META.get(TENANT_HEADER)
        if slug:
            membership = membership_resolve(user=request.user, slug=slug.strip())
            if membership is None:
                raise exceptions.PermissionDenied(f"You are not a member of tenant {slug!r}.")
            return membership
        session_tenant = None
        if getattr(request, "_authenticator", None).__class__.__name__ == "SessionAuthentication":
            session_tenant = request.session.get("tenant_id")
        if session_tenant:
            membership = membership_resolve(user=request.user, tenant_id=session_tenant)
            if membership is not None:
                return membership
        memberships = list(dangerously_membership_list_for_user(user=request.user)[:2])
        if not memberships:
            raise exceptions.PermissionDenied("You are not a member of any active tenant.")
        if len(memberships) > 1:
            raise exceptions.ValidationError(
                {"X-Tenant": ["You belong to several tenants: name one with the X-Tenant header."]}
            )
        return memberships[0]

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        self._scope_token = None
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # Whatever happened (even an unhandled error), the tenant scope ends with the request.
            if self._scope_token is not None:
                _current_tenant.reset(self._scope_token)
                self._scope_token = None


class TenantAPIView(TenantAPIMixin, APIView):
    pass
