from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.channels.models import ChannelSettings, Delivery, Message, SmtpSecurity


class ChannelSettingsSerializer(serializers.ModelSerializer):
    """What the API shows: every setting, and for each secret only whether it is set."""

    class Meta:
        model = ChannelSettings
        fields = ["smtp_host", "smtp_port", "smtp_security", "smtp_username", "has_smtp_password", "from_email",
                  "from_name", "reply_to", "sending_domain", "sms_webhook_url", "has_sms_webhook_secret",
                  "sms_sender", "push_webhook_url", "has_push_webhook_secret", "send_rate_per_second",
                  "pressure_max_per_day", "pressure_max_per_week", "updated_at"]


class ChannelSettingsUpdateSerializer(serializers.Serializer):
    smtp_host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    smtp_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    smtp_security = serializers.ChoiceField(choices=SmtpSecurity.choices, required=False)
    smtp_username = serializers.CharField(max_length=255, required=False, allow_blank=True)
    smtp_password = serializers.CharField(max_length=1000, required=False, allow_blank=True, write_only=True,
                                          trim_whitespace=False, help_text='Write only; "" removes it.')
    from_email = serializers.EmailField(required=False, allow_blank=True)
    from_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    reply_to = serializers.EmailField(required=False, allow_blank=True)
    sending_domain = serializers.CharField(max_length=253, required=False, allow_blank=True)
    sms_webhook_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    sms_webhook_secret = serializers.CharField(max_length=500, required=False, allow_blank=True, write_only=True,
                                               trim_whitespace=False)
    sms_sender = serializers.CharField(max_length=32, required=False, allow_blank=True)
    push_webhook_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    push_webhook_secret = serializers.CharField(max_length=500, required=False, allow_blank=True, write_only=True,
                                                trim_whitespace=False)
    send_rate_per_second = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    pressure_max_per_day = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    pressure_max_per_week = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class TestEmailSerializer(serializers.Serializer):
    to = serializers.EmailField()


class TestSmsSerializer(serializers.Serializer):
    to = serializers.RegexField(r"^\+?[0-9]{6,15}$", help_text="A phone number in E.164 form.")


class TestPushSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=4096, help_text="A device token.")


class TestSendResultSerializer(serializers.Serializer):
    sent = serializers.BooleanField()
    channel = serializers.CharField()
    message_id = serializers.CharField()




CHANNELS = ["email", "sms", "push", "file"]
SENDING_CHANNELS = ["email", "sms", "push"]


# Choices are described by a pattern, not an enum: drf-spectacular names enums after the field,
# and "channel" and "status" are choices of other components too (consents, campaigns, runs).
def _choice_field(choices: list[str]) -> type[serializers.ChoiceField]:
    @extend_schema_field({"type": "string", "pattern": "^(" + "|".join(choices) + ")$",
                          "description": " or ".join(choices)})
    class Field(serializers.ChoiceField):
        def __init__(self, **kwargs):
            super().__init__(choices=choices, **kwargs)

    return Field


ChannelField = _choice_field(CHANNELS)
SendingChannelField = _choice_field(SENDING_CHANNELS)


class ContentValidateSerializer(serializers.Serializer):
    channel = ChannelField()
    content = serializers.JSONField(help_text="email: subject, preheader, html, text; sms: text; push: title, body, "
                                              "deep_link, data; file: columns [{name, value}].")
    schema = serializers.CharField(max_length=63, required=False, default="profile")
    variables = serializers.ListField(child=serializers.CharField(max_length=63), required=False, allow_null=True,
                                      default=None, help_text="Declared event variable names (omit: not checked).")


class ContentPreviewSerializer(serializers.Serializer):
    channel = ChannelField()
    content = serializers.JSONField()
    schema = serializers.CharField(max_length=63, required=False, default="profile")
    key = serializers.CharField(max_length=255, help_text="The record (profile) to render the message for.")
    variables = serializers.DictField(required=False, default=dict)
    row = serializers.DictField(required=False, default=dict, help_text="Population columns to render with.")


class ProofSerializer(ContentPreviewSerializer):
    channel = SendingChannelField()
    to = serializers.ListField(child=serializers.CharField(max_length=4096), min_length=1, max_length=20,
                               help_text="Test addresses: e-mails, phone numbers or device tokens.")

    def validate(self, data):
        if data["channel"] == "email":
            field = serializers.EmailField()
            for address in data["to"]:
                field.run_validation(address)
        return data


class ProblemSerializer(serializers.Serializer):
    path = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class ContentValidationSerializer(serializers.Serializer):
    is_valid = serializers.BooleanField()
    problems = ProblemSerializer(many=True)


class DeliverySerializer(serializers.ModelSerializer):
    campaign_name = serializers.CharField(source="campaign.name", read_only=True)
    channel = serializers.CharField(read_only=True, help_text="email, sms, push or file")
    status = serializers.CharField(read_only=True, help_text="awaiting_confirmation, sending, done or cancelled")
    decided_by = serializers.EmailField(source="decided_by.email", read_only=True, default=None,
                                        help_text="who confirmed or cancelled it (when it waited for confirmation)")
    has_file = serializers.SerializerMethodField()

    class Meta:
        model = Delivery
        fields = ["id", "campaign", "campaign_name", "run", "node_id", "channel", "dimension", "status", "targeted",
                  "rate_per_second", "window_starts_at", "window_ends_at", "counts", "created_at", "finished_at",
                  "decided_by", "decided_at", "has_file"]

    def get_has_file(self, obj) -> bool:
        return obj.channel == "file" and obj.status == "done"


class MessageSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="pending, sending, sent, failed, excluded or cancelled")

    class Meta:
        model = Message
        fields = ["id", "recipient_key", "address", "status", "reason", "error", "idempotency_key", "attempts",
                  "queued_at", "sent_at"]
