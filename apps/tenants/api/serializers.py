from __future__ import annotations

from rest_framework import serializers

from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "time_zone", "data_retention_days", "settings", "is_active", "created_at"]
        read_only_fields = ["id", "created_at"]


class TenantUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    time_zone = serializers.CharField(max_length=64, required=False)
    data_retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    settings = serializers.JSONField(required=False)


class OperatorTenantUpdateSerializer(TenantUpdateSerializer):
    is_active = serializers.BooleanField(required=False)


class TenantCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=63)
    time_zone = serializers.CharField(max_length=64, default="UTC")
    data_retention_days = serializers.IntegerField(min_value=1, max_value=3650, default=30)
    settings = serializers.JSONField(required=False, default=dict)


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="user.id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    first_name = serializers.CharField(source="user.first_name", read_only=True)
    last_name = serializers.CharField(source="user.last_name", read_only=True)
    last_login = serializers.DateTimeField(source="user.last_login", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "first_name", "last_name", "role", "is_active", "last_login", "created_at"]


class MemberCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    first_name = serializers.CharField(max_length=150, required=False, default="")
    last_name = serializers.CharField(max_length=150, required=False, default="")
    password = serializers.CharField(required=False, write_only=True, trim_whitespace=False)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_active = serializers.BooleanField(required=False)
    first_name = serializers.CharField(max_length=150, required=False)
    last_name = serializers.CharField(max_length=150, required=False)


class MeMembershipSerializer(serializers.Serializer):
    tenant = serializers.CharField(source="tenant.slug")
    tenant_name = serializers.CharField(source="tenant.name")
    role = serializers.CharField()
