from __future__ import annotations

from rest_framework import serializers

from apps.campaigns.models import Campaign, CampaignVersion, NodeState, Run, RunLog


class CampaignSerializer(serializers.ModelSerializer):
    owner = serializers.EmailField(source="owner.email", read_only=True, default=None)
    live_version = serializers.IntegerField(source="live_version.number", read_only=True, default=None)

    class Meta:
        model = Campaign
        fields = ["id", "name", "description", "tags", "owner", "dimension", "variables", "settings", "status",
                  "live_version", "has_run", "last_triggered_at", "created_at", "updated_at"]
        read_only_fields = fields


class CampaignWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)
    dimension = serializers.CharField(max_length=63, required=False, default="profile")
    variables = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    settings = serializers.DictField(required=False, default=dict)
    graph = serializers.DictField(required=False)


class CampaignPatchSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    dimension = serializers.CharField(max_length=63, required=False)
    variables = serializers.ListField(child=serializers.DictField(), required=False)
    settings = serializers.DictField(required=False)


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    edited_by = serializers.EmailField(source="edited_by.email", read_only=True, default=None)
    published_by = serializers.EmailField(source="published_by.email", read_only=True, default=None)

    class Meta:
        model = CampaignVersion
        fields = ["number", "status", "revision", "graph", "created_by", "edited_by", "published_by",
                  "created_at", "updated_at", "published_at"]


class DraftWriteSerializer(serializers.Serializer):
    graph = serializers.DictField()
    revision = serializers.IntegerField(required=False, min_value=1)


class VariablesSerializer(serializers.Serializer):
    variables = serializers.DictField(required=False, default=dict)


class NodeStateSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeState
        fields = ["node_id", "type", "status", "attempts", "executions", "count_in", "count_out", "summary",
                  "wake_at", "error", "started_at", "finished_at"]


class RunSerializer(serializers.ModelSerializer):
    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    started_by = serializers.EmailField(source="started_by.email", read_only=True, default=None)

    class Meta:
        model = Run
        fields = ["id", "campaign", "campaign_name", "version", "trigger", "is_test", "variables", "status",
                  "schedule_key", "started_by", "error", "error_node", "created_at", "started_at", "finished_at",
                  "purged_at"]


class RunLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunLog
        fields = ["created_at", "node_id", "level", "message", "data"]


class SchedulePreviewSerializer(serializers.Serializer):
    spec = serializers.DictField()
    time_zone = serializers.CharField(required=False)
