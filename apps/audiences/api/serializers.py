from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.audiences.models import Audience, AudienceKind


# Described by a pattern, not an enum: drf-spectacular names enums after the field, and "kind"
# is also a choice of links.
@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(AudienceKind.values) + ")$",
                      "description": " or ".join(AudienceKind.values)})
class AudienceKindField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=AudienceKind.choices, **kwargs)


class AudienceSerializer(serializers.ModelSerializer):
    kind = AudienceKindField(read_only=True)
    schema = serializers.CharField(source="schema.name", read_only=True)
    created_by = serializers.EmailField(source="created_by.email", default=None, read_only=True)

    class Meta:
        model = Audience
        fields = ["id", "name", "description", "schema", "kind", "filter", "count", "created_by", "created_at",
                  "updated_at", "last_computed_at"]


class AudienceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    schema = serializers.CharField(max_length=63, required=False, default="profile",
                                   help_text="Name of the schema whose records the audience holds.")
    kind = AudienceKindField()
    filter = serializers.JSONField(required=False, allow_null=True, default=None,
                                   help_text="Dynamic: the saved query. Static: build the list from it.")
    keys = serializers.ListField(child=serializers.CharField(max_length=255), required=False, allow_null=True,
                                 default=None, help_text="Static: the keys of the members.")


class AudienceUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    filter = serializers.JSONField(required=False, help_text="Dynamic audiences only.")


class AudiencePreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField())
