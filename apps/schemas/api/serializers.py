"""Shapes of the schemas and records API. Input serializers only parse; every rule is in
apps/schemas/services.py."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.schemas.models import DataSchema, Field, FieldType, Link, LinkKind, Record


# Described by a pattern, not an enum: drf-spectacular names enums after the field, and "kind"
# is also a choice of audiences.
@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(LinkKind.values) + ")$",
                      "description": " or ".join(LinkKind.values)})
class LinkKindField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=LinkKind.choices, **kwargs)


class FieldSerializer(serializers.ModelSerializer):
    is_primary_key = serializers.SerializerMethodField()

    class Meta:
        model = Field
        fields = ["id", "name", "label", "type", "required", "default", "indexed", "enum_values", "is_builtin",
                  "is_primary_key", "position"]

    def get_is_primary_key(self, obj: Field) -> bool:
        schema = self.context.get("schema") or obj.schema
        return obj.name == schema.primary_key


class LinkSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target.name")
    kind = LinkKindField(read_only=True)

    class Meta:
        model = Link
        fields = ["id", "name", "label", "kind", "target", "source_field", "target_field"]


class SchemaSerializer(serializers.ModelSerializer):
    fields = FieldSerializer(many=True, read_only=True)
    links = LinkSerializer(many=True, read_only=True)

    class Meta:
        model = DataSchema
        fields = ["id", "name", "label", "description", "primary_key", "is_builtin", "fields", "links",
                  "created_at", "updated_at"]


class FieldInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=FieldType.choices)
    required = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False, allow_null=True)
    indexed = serializers.BooleanField(required=False)
    enum_values = serializers.ListField(child=serializers.CharField(max_length=200), required=False)


class FieldUpdateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=FieldType.choices, required=False)
    required = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False, allow_null=True)
    indexed = serializers.BooleanField(required=False)
    enum_values = serializers.ListField(child=serializers.CharField(max_length=200), required=False)


class SchemaCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    primary_key = serializers.JSONField(help_text="The key field's spec ({name, type, label}), or the name of one "
                                                  "of `fields`.")
    fields = serializers.ListField(child=serializers.DictField(), required=False)


class SchemaUpdateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class LinkCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)
    target = serializers.CharField(max_length=63, help_text="Name of the target schema.")
    kind = LinkKindField()
    source_field = serializers.CharField(max_length=63)
    target_field = serializers.CharField(max_length=63)
    reverse_name = serializers.CharField(max_length=63, required=False, allow_null=True,
                                         help_text="Also create the reverse link on the target, under this name.")
    reverse_label = serializers.CharField(max_length=200, required=False, allow_blank=True)


class RecordSerializer(serializers.ModelSerializer):
    values = serializers.JSONField(source="attributes")

    class Meta:
        model = Record
        fields = ["key", "values", "created_at", "updated_at"]


class QuerySerializer(serializers.Serializer):
    filter = serializers.JSONField(required=False, allow_null=True, help_text="A filter tree; none matches all.")
    variables = serializers.DictField(required=False, default=dict)
    sample_size = serializers.IntegerField(min_value=0, max_value=100, required=False, default=20)


class QueryResultSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField())
