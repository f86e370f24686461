from __future__ import annotations

from rest_framework import serializers

from apps.profiles.models import ConsentChannel, ProfileConsentEvent


class ConsentEventSerializer(serializers.ModelSerializer):
    by = serializers.EmailField(source="by.email", default=None, read_only=True)

    class Meta:
        model = ProfileConsentEvent
        fields = ["id", "channel", "opted_in", "source", "at", "by"]


class ConsentSetSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=ConsentChannel.choices)
    opted_in = serializers.BooleanField()
    source = serializers.CharField(max_length=100, required=False, default="api")
