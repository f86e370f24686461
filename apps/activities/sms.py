"""SMS: personalized text messages through the tenant's signed SMS webhook."""

from __future__ import annotations

from apps.activities.registry import register
from apps.channels.activity import ChannelActivity, channel_config_schema


@register
class SmsActivity(ChannelActivity):
    type = "sms"
    label = "SMS"
    channel = "sms"
    description = ("Sends a personalized SMS to each recipient with a phone number and SMS opt-in, within the "
                   "marketing pressure cap. Ports: sent, excluded, failed.")
    config_schema = channel_config_schema("sms")
