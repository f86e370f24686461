"""Campaigns API: build, validate, publish, start, test, pause, resume, stop, trigger, and
monitor runs. Views parse, call one service or selector, and shape the answer."""

from __future__ import annotations

import zoneinfo
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from apps.activities import registry
from apps.campaigns import engine, schedules, selectors, services, why
from apps.campaigns.api import serializers as s
from apps.core.api.pagination import PagePagination
from apps.core.errors import ApplicationError
from apps.tenants.api.base import TenantAPIMixin


def _paginated(view: Any, request: Request, qs: Any, serializer: Any) -> Response:
    paginator = PagePagination()
    page = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def _run_body(run: Any) -> dict[str, Any]:
    return s.RunSerializer(run).data


class CampaignViewSet(TenantAPIMixin, ViewSet):
    capabilities = {
        "list": "campaigns.read", "retrieve": "campaigns.read", "create": "campaigns.build",
        "partial_update": "campaigns.build", "draft": "campaigns.read", "save_draft": "campaigns.build",
        "validate": "campaigns.read", "publish": "campaigns.build", "duplicate": "campaigns.build",
        "archive": "campaigns.build", "back_to_draft": "campaigns.build", "versions": "campaigns.read",
        "start": "campaigns.run", "test": "campaigns.run", "pause": "campaigns.run", "resume": "campaigns.run",
        "stop": "campaigns.run", "trigger": "campaigns.run", "run_now": "campaigns.run",
        "runs": "campaigns.read", "schedule": "campaigns.read",
    }

    def lookup_object(self, pk: int) -> Any:
        return selectors.campaign_get(tenant=self.tenant, id=pk)

    @extend_schema(responses=s.CampaignSerializer(many=True))
    def list(self, request: Request) -> Response:
        qs = selectors.campaign_list(tenant=self.tenant, filters=request.query_params)
        return _paginated(self, request, qs, s.CampaignSerializer)

    @extend_schema(request=s.CampaignWriteSerializer, responses={201: s.CampaignSerializer})
    def create(self, request: Request) -> Response:
        data = s.CampaignWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = services.campaign_create(tenant=self.tenant, by=request.user, **data.validated_data)
        return Response(s.CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.CampaignSerializer)
    def retrieve(self, request: Request, pk: int) -> Response:
        return Response(s.CampaignSerializer(self.object).data)

    @extend_schema(request=s.CampaignPatchSerializer, responses=s.CampaignSerializer)
    def partial_update(self, request: Request, pk: int) -> Response:
        data = s.CampaignPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = services.campaign_update(tenant=self.tenant, campaign=self.object, by=request.user,
                                            **data.validated_data)
        return Response(s.CampaignSerializer(campaign).data)

    @extend_schema(responses=s.VersionSerializer)
    def draft(self, request: Request, pk: int) -> Response:
        version = services.draft_version(self.object)
        body = s.VersionSerializer(version).data
        body["problems"] = services.graph_problems(self.object, version.graph)
        return Response(body)

    @extend_schema(request=s.DraftWriteSerializer, responses=s.VersionSerializer)
    def save_draft(self, request: Request, pk: int) -> Response:
        data = s.DraftWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.draft_update(tenant=self.tenant, campaign=self.object, by=request.user,
                                        **data.validated_data)
        body = s.VersionSerializer(version).data
        body["problems"] = services.graph_problems(self.object, version.graph)
        return Response(body)

    @extend_schema(request=None, responses={200: dict})
    def validate(self, request: Request, pk: int) -> Response:
        graph = request.data.get("graph") if isinstance(request.data, dict) and request.data.get("graph") else None
        graph = graph or services.draft_version(self.object).graph
        problems = services.graph_problems(self.object, graph)
        return Response({"valid": not problems, "problems": problems})

    @extend_schema(request=None, responses=s.VersionSerializer)
    def publish(self, request: Request, pk: int) -> Response:
        version = services.campaign_publish(tenant=self.tenant, campaign=self.object, by=request.user)
        return Response(s.VersionSerializer(version).data)

    @extend_schema(request=s.VariablesSerializer, responses=s.CampaignSerializer)
    def start(self, request: Request, pk: int) -> Response:
        data = s.VariablesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.campaign_start(tenant=self.tenant, campaign=self.object, by=request.user,
                                      variables=data.validated_data["variables"])
        self.object.refresh_from_db()
        return Response({"campaign": s.CampaignSerializer(self.object).data,
                         "run": _run_body(run) if run else None})

    def _new_run(self, request: Request, service: Any) -> Response:
        data = s.VariablesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = service(tenant=self.tenant, campaign=self.object, by=request.user,
                      variables=data.validated_data["variables"])
        return Response(_run_body(run), status=status.HTTP_201_CREATED)

    @extend_schema(request=s.VariablesSerializer, responses={201: s.RunSerializer})
    def test(self, request: Request, pk: int) -> Response:
        """Run the draft in test mode: real counts, nothing sent or written."""
        return self._new_run(request, services.campaign_test)

    @extend_schema(request=s.VariablesSerializer, responses={201: s.RunSerializer})
    def trigger(self, request: Request, pk: int) -> Response:
        """An API trigger with event variables, validated against the declarations."""
        return self._new_run(request, services.campaign_trigger)

    @extend_schema(request=s.VariablesSerializer, responses={201: s.RunSerializer})
    def run_now(self, request: Request, pk: int) -> Response:
        """One extra run of a live scheduled campaign."""
        return self._new_run(request, services.campaign_run_now)

    def _state_change(self, request: Request, service: Any) -> Response:
        campaign = service(tenant=self.tenant, campaign=self.object, by=request.user)
        return Response(s.CampaignSerializer(campaign).data)

    @extend_schema(request=None, responses=s.CampaignSerializer)
    def pause(self, request: Request, pk: int) -> Response:
        return self._state_change(request, services.campaign_pause)

    @extend_schema(request=None, responses=s.CampaignSerializer)
    def resume(self, request: Request, pk: int) -> Response:
        return self._state_change(request, services.campaign_resume)

    @extend_schema(request=None, responses=s.CampaignSerializer)
    def stop(self, request: Request, pk: int) -> Response:
        return self._state_change(request, services.campaign_stop)

    @extend_schema(request=None, responses=s.CampaignSerializer)
    def archive(self, request: Request, pk: int) -> Response:
        return self._state_change(request, services.campaign_archive)

    @extend_schema(request=None, responses=s.CampaignSerializer)
    def back_to_draft(self, request: Request, pk: int) -> Response:
        return self._state_change(request, services.campaign_back_to_draft)

    @extend_schema(request=None, responses={201: s.CampaignSerializer})
    def duplicate(self, request: Request, pk: int) -> Response:
        name = request.data.get("name") if isinstance(request.data, dict) else None
        copy = services.campaign_duplicate(tenant=self.tenant, campaign=self.object, by=request.user, name=name)
        return Response(s.CampaignSerializer(copy).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.VersionSerializer(many=True))
    def versions(self, request: Request, pk: int) -> Response:
        return _paginated(self, request, selectors.version_list(campaign=self.object), s.VersionSerializer)

    @extend_schema(responses=s.RunSerializer(many=True))
    def runs(self, request: Request, pk: int) -> Response:
        qs = selectors.run_list(tenant=self.tenant, campaign=self.object, filters=request.query_params)
        return _paginated(self, request, qs, s.RunSerializer)

    @extend_schema(responses={200: dict})
    def schedule(self, request: Request, pk: int) -> Response:
        campaign = self.object
        entry = selectors.campaign_schedule(campaign=campaign)
        version = campaign.live_version or services.draft_version(campaign)
        found = schedules.start_spec(version.graph)
        spec = found[1] if found else {"mode": "asap"}
        tz = schedules.campaign_time_zone(campaign, spec)
        upcoming = []
        if spec.get("mode") in schedules.SCHEDULED_MODES:
            upcoming = [t.isoformat() for t in schedules.preview(spec, tz, engine.now())]
        return Response({"mode": spec.get("mode", "asap"), "time_zone": tz, "is_armed": entry is not None,
                         "next_fire_at": entry.next_fire_at.isoformat() if entry and entry.next_fire_at else None,
                         "upcoming": upcoming})


class RunViewSet(TenantAPIMixin, ViewSet):
    capabilities = {"list": "campaigns.read", "retrieve": "campaigns.read", "log": "campaigns.read",
                    "transitions": "campaigns.read", "sample": "campaigns.read", "stop": "campaigns.run",
                    "retry": "campaigns.run", "why": "campaigns.read"}

    def lookup_object(self, pk: int, index: int | None = None) -> Any:
        return selectors.run_get(tenant=self.tenant, id=pk)

    @extend_schema(responses=s.RunSerializer(many=True))
    def list(self, request: Request) -> Response:
        return _paginated(self, request, selectors.run_list(tenant=self.tenant, filters=request.query_params),
                          s.RunSerializer)

    @extend_schema(responses={200: dict})
    def retrieve(self, request: Request, pk: int) -> Response:
        run = self.object
        body = _run_body(run)
        body["nodes"] = s.NodeStateSerializer(selectors.run_nodes(run=run), many=True).data
        body["transitions"] = selectors.run_transitions(run=run)
        body["graph"] = run.graph
        return Response(body)

    @extend_schema(responses=s.RunLogSerializer(many=True))
    def log(self, request: Request, pk: int) -> Response:
        q = request.query_params
        entries = selectors.run_log(run=self.object, level=q.get("level"), node_id=q.get("node"),
                                    search=q.get("search"))
        return Response(s.RunLogSerializer(entries, many=True).data)

    @extend_schema(responses={200: dict})
    def transitions(self, request: Request, pk: int) -> Response:
        return Response(selectors.run_transitions(run=self.object))

    @extend_schema(responses={200: dict})
    def sample(self, request: Request, pk: int, index: int) -> Response:
        try:
            limit = int(request.query_params.get("limit", 20))
            offset = int(request.query_params.get("offset", 0))
        except ValueError:
            raise ApplicationError("limit and offset must be integers.",
                                   fields={"limit": ["Not an integer."]}) from None
        return Response(selectors.transition_sample(run=self.object, index=index, limit=limit, offset=offset))

    @extend_schema(responses={200: dict})
    def why(self, request: Request, pk: int) -> Response:
        """Where the record `?key=` went in this run: each activity in flow order (docs/engine.md)."""
        return Response(why.run_why(tenant=self.tenant, run=self.object, key=request.query_params.get("key")))

    @extend_schema(request=None, responses=s.RunSerializer)
    def stop(self, request: Request, pk: int) -> Response:
        return Response(_run_body(services.run_stop(tenant=self.tenant, run=self.object, by=request.user)))

    @extend_schema(request=None, responses=s.RunSerializer)
    def retry(self, request: Request, pk: int) -> Response:
        return Response(_run_body(services.run_retry(tenant=self.tenant, run=self.object, by=request.user)))


class ActivityTypesView(TenantAPIMixin, APIView):
    """Every registered activity type with its ports and config schema (to build forms)."""

    capabilities = {"get": "campaigns.read"}

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response([cls.describe() for cls in registry.all_types().values()])


class SchedulePreviewView(TenantAPIMixin, APIView):
    """The next 10 fire times of a Scheduler configuration."""

    capabilities = {"post": "campaigns.read"}

    @extend_schema(request=s.SchedulePreviewSerializer, responses={200: dict})
    def post(self, request: Request) -> Response:
        data = s.SchedulePreviewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        spec = data.validated_data["spec"]
        tz = data.validated_data.get("time_zone") or spec.get("time_zone") or self.tenant.time_zone
        if tz not in zoneinfo.available_timezones():
            raise ApplicationError("Unknown time zone.", fields={"time_zone": ["Unknown time zone."]})
        from apps.activities.base import ValidationContext

        ctx = ValidationContext(tenant=self.tenant, dimension="profile", variables={}, schemas={})
        problems = registry.get("scheduler").check_config(spec, ctx)
        if problems:
            raise ApplicationError("Invalid schedule.", fields={"spec": [p.as_dict() for p in problems]})
        if spec.get("mode") not in schedules.SCHEDULED_MODES:
            return Response({"time_zone": tz, "upcoming": []})
        times = schedules.preview(spec, tz, engine.now())
        return Response({"time_zone": tz, "upcoming": [t.isoformat() for t in times]})
