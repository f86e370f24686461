"""Tasks API: the inbox (list with filters), one task with its snapshot and decisions, and the
actions approve, reject, assign, claim, complete; approver groups; a campaign's named approvers.
Views parse, call one service or selector, and shape the answer."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import ViewSet

from apps.approvals import selectors, services
from apps.approvals.api import serializers as s
from apps.campaigns.selectors import campaign_get
from apps.core.api.pagination import PagePagination
from apps.tenants.api.base import TenantAPIMixin


class TaskViewSet(TenantAPIMixin, ViewSet):
    capabilities = {
        "list": "tasks.read", "retrieve": "tasks.read", "approve": "tasks.decide", "reject": "tasks.decide",
        "assign": "tasks.assign", "claim": "tasks.decide", "complete": "tasks.read",
    }

    def lookup_object(self, pk: int) -> Any:
        return selectors.task_get(tenant=self.tenant, id=pk)

    def _detail(self, task: Any, request: Request) -> Response:
        task = selectors.task_get(tenant=self.tenant, id=task.pk)
        return Response(s.TaskDetailSerializer(task, context={"user": request.user}).data)

    @extend_schema(responses=s.TaskSerializer(many=True))
    def list(self, request: Request) -> Response:
        """Filters: `status` (comma-separated), `assignee` (`me` or a user id), `campaign`, `run`,
        `kind`, `due_before`."""
        qs = selectors.task_list(tenant=self.tenant, user=request.user, filters=request.query_params)
        paginator = PagePagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(s.TaskSerializer(page, many=True).data)

    @extend_schema(responses=s.TaskDetailSerializer)
    def retrieve(self, request: Request, pk: int) -> Response:
        return self._detail(self.object, request)

    @extend_schema(request=s.CommentSerializer, responses=s.TaskDetailSerializer)
    def approve(self, request: Request, pk: int) -> Response:
        data = s.CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_approve(tenant=self.tenant, task=self.object, by=request.user,
                                     comment=data.validated_data["comment"])
        return self._detail(task, request)

    @extend_schema(request=s.RejectSerializer, responses=s.TaskDetailSerializer)
    def reject(self, request: Request, pk: int) -> Response:
        data = s.RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_reject(tenant=self.tenant, task=self.object, by=request.user,
                                    comment=data.validated_data["comment"])
        return self._detail(task, request)

    @extend_schema(request=s.CommentSerializer, responses=s.TaskDetailSerializer)
    def complete(self, request: Request, pk: int) -> Response:
        data = s.CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_complete(tenant=self.tenant, task=self.object, by=request.user,
                                      comment=data.validated_data["comment"])
        return self._detail(task, request)

    @extend_schema(request=s.AssignSerializer, responses=s.TaskDetailSerializer)
    def assign(self, request: Request, pk: int) -> Response:
        data = s.AssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_assign(tenant=self.tenant, task=self.object, by=request.user, **data.validated_data)
        return self._detail(task, request)

    @extend_schema(request=None, responses=s.TaskDetailSerializer)
    def claim(self, request: Request, pk: int) -> Response:
        task = services.task_claim(tenant=self.tenant, task=self.object, by=request.user)
        return self._detail(task, request)


class ApproverGroupViewSet(TenantAPIMixin, ViewSet):
    capabilities = {"list": "tasks.read", "create": "users.manage", "retrieve": "tasks.read",
                    "members": "users.manage"}

    def lookup_object(self, pk: int) -> Any:
        return selectors.approver_group_get(tenant=self.tenant, id=pk)

    @extend_schema(responses=s.ApproverGroupSerializer(many=True))
    def list(self, request: Request) -> Response:
        return Response(s.ApproverGroupSerializer(selectors.approver_group_list(tenant=self.tenant), many=True).data)

    @extend_schema(request=s.ApproverGroupWriteSerializer, responses={201: s.ApproverGroupSerializer})
    def create(self, request: Request) -> Response:
        data = s.ApproverGroupWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = services.approver_group_create(tenant=self.tenant, by=request.user, **data.validated_data)
        return Response(s.ApproverGroupSerializer(group).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.ApproverGroupSerializer)
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(s.ApproverGroupSerializer(self.object).data)

    @extend_schema(request=s.MembersSerializer, responses=s.ApproverGroupSerializer)
    def members(self, request: Request, pk: int) -> Response:
        data = s.MembersSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = services.approver_group_set_members(tenant=self.tenant, group=self.object, by=request.user,
                                                    members=data.validated_data["members"])
        return Response(s.ApproverGroupSerializer(group).data)


class CampaignApproversViewSet(TenantAPIMixin, ViewSet):
    """Who may approve a campaign's tasks (guardian object permissions). Empty lists: anyone with
    the approver role, as assigned."""

    capabilities = {"retrieve": "campaigns.read", "update": "users.manage"}

    def lookup_object(self, pk: int) -> Any:
        return campaign_get(tenant=self.tenant, id=pk)

    @extend_schema(responses=s.CampaignApproversSerializer)
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(selectors.campaign_approvers(campaign=self.object))

    @extend_schema(request=s.CampaignApproversSerializer, responses=s.CampaignApproversSerializer)
    def update(self, request: Request, pk: int) -> Response:
        data = s.CampaignApproversSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.campaign_approvers_set(tenant=self.tenant, campaign=self.object, by=request.user,
                                        **data.validated_data)
        return Response(selectors.campaign_approvers(campaign=self.object))
