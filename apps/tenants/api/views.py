"""Authentication, the current user, tenant administration and the operators' tenant API."""

from __future__ import annotations

from typing import Any

from axes.exceptions import AxesBackendPermissionDenied
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, status
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from apps.core.api.pagination import PagePagination
from apps.tenants import selectors, services
from apps.tenants.api import serializers as s
from apps.tenants.api.base import TenantAPIMixin


class TokenView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    def get_authenticate_header(self, request: Request) -> str:
        return "Token"

    @extend_schema(request=s.TokenRequestSerializer, responses=s.TokenSerializer, auth=[])
    def post(self, request: Request) -> Response:
        data = s.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = authenticate(request._request, username=data.validated_data["username"],
                                password=data.validated_data["password"])
        except AxesBackendPermissionDenied:
            user = None
        if getattr(request._request, "axes_locked_out", False):
            raise exceptions.Throttled(detail="Too many failed logins: this account is locked for a while.")
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Unable to log in with these credentials.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class MeView(APIView):
    """Who am I, and in which tenants."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        user = request.user
        memberships = selectors.dangerously_membership_list_for_user(user=user)
        return Response({
            "id": user.id, "email": user.email, "first_name": user.first_name, "last_name": user.last_name,
            "is_operator": user.is_operator,
            "memberships": s.MeMembershipSerializer(memberships, many=True).data,
        })


class CurrentTenantView(TenantAPIMixin, APIView):
    """The tenant the request acts in; admins change its settings."""

    capabilities = {"get": "tenant.read", "patch": "tenant.manage"}

    @extend_schema(responses=s.TenantSerializer)
    def get(self, request: Request) -> Response:
        return Response(s.TenantSerializer(self.tenant).data)

    @extend_schema(request=s.TenantUpdateSerializer, responses=s.TenantSerializer)
    def patch(self, request: Request) -> Response:
        data = s.TenantUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_update(tenant=self.tenant, by=request.user, **data.validated_data)
        return Response(s.TenantSerializer(tenant).data)


class UserViewSet(TenantAPIMixin, ViewSet):
    """The people of the current tenant. Tenant admins add people, change roles and deactivate
    memberships; a person may belong to several tenants."""

    capabilities = {
        "list": "users.manage", "retrieve": "users.manage", "create": "users.manage",
        "partial_update": "users.manage", "deactivate": "users.manage", "activate": "users.manage",
    }
    lookup_value_regex = "[0-9]+"

    def lookup_object(self, pk: str) -> Any:
        return selectors.member_get(tenant=self.tenant, user_id=pk)

    @extend_schema(responses=s.MemberSerializer(many=True))
    def list(self, request: Request) -> Response:
        qs = selectors.member_list(tenant=self.tenant, filters={
            "role": request.query_params.get("role"),
            "search": request.query_params.get("search"),
        })
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.MemberSerializer(page, many=True).data)

    @extend_schema(responses=s.MemberSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.MemberSerializer(self.object).data)

    @extend_schema(request=s.MemberCreateSerializer, responses={201: s.MemberSerializer})
    def create(self, request: Request) -> Response:
        data = s.MemberCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership, generated = services.member_create(tenant=self.tenant, by=request.user, **data.validated_data)
        body = s.MemberSerializer(membership).data
        if generated:
            body["password"] = generated
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = s.MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.member_update(tenant=self.tenant, membership=self.object, by=request.user,
                                            **data.validated_data)
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(request=None, responses=s.MemberSerializer)
    def deactivate(self, request: Request, pk: str) -> Response:
        membership = services.member_update(tenant=self.tenant, membership=self.object, by=request.user,
                                            is_active=False)
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(request=None, responses=s.MemberSerializer)
    def activate(self, request: Request, pk: str) -> Response:
        membership = services.member_update(tenant=self.tenant, membership=self.object, by=request.user,
                                            is_active=True)
        return Response(s.MemberSerializer(membership).data)


class IsOperator(permissions.BasePermission):
    """Platform operators only; to anyone else the route does not exist (404)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.user and request.user.is_authenticated and request.user.is_operator:
            return True
        if request.user and request.user.is_authenticated:
            raise exceptions.NotFound()
        return False


class OperatorTenantViewSet(ViewSet):
    """Operators create, list and (de)activate tenants."""

    permission_classes = [permissions.IsAuthenticated, IsOperator]
    lookup_value_regex = "[0-9]+"

    @extend_schema(responses=s.TenantSerializer(many=True))
    def list(self, request: Request) -> Response:
        paginator = PagePagination()
        page = paginator.paginate_queryset(selectors.tenant_list(), request, view=self)
        return paginator.get_paginated_response(s.TenantSerializer(page, many=True).data)

    @extend_schema(responses=s.TenantSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.TenantSerializer(selectors.tenant_get(id=pk)).data)

    @extend_schema(request=s.TenantCreateSerializer, responses={201: s.TenantSerializer})
    def create(self, request: Request) -> Response:
        data = s.TenantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_create(by=request.user, **data.validated_data)
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.OperatorTenantUpdateSerializer, responses=s.TenantSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = s.OperatorTenantUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_update(tenant=selectors.tenant_get(id=pk), by=request.user,
                                        **data.validated_data)
        return Response(s.TenantSerializer(tenant).data)
