"""E-mail: personalized messages over the tenant's SMTP server, one per recipient (DESIGN §6)."""

from __future__ import annotations

from apps.activities.registry import register
from apps.channels.activity import ChannelActivity, channel_config_schema


@register
class EmailActivity(ChannelActivity):
    type = "email"
    label = "E-mail"
    channel = "email"
    description = ("Sends a personalized e-mail to each recipient with an address and consent, within the marketing "
                   "pressure cap. Ports: sent, excluded, failed.")
    config_schema = channel_config_schema("email")
