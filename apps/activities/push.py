"""Push: personalized notifications to the recipients' device tokens through the tenant's signed
push webhook."""

from __future__ import annotations

from apps.activities.registry import register
from apps.channels.activity import ChannelActivity, channel_config_schema


@register
class PushActivity(ChannelActivity):
    type = "push"
    label = "Push notification"
    channel = "push"
    description = ("Sends a personalized push notification to the device tokens of each recipient, within the "
                   "marketing pressure cap. Ports: sent, excluded, failed.")
    config_schema = channel_config_schema("push")
