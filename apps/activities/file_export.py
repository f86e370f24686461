"""File export: a CSV file for direct mail (or a partner), one line per recipient with the
columns the content renders; downloadable from the delivery (GET /api/v1/channels/deliveries/<id>/file)."""

from __future__ import annotations

from apps.activities.base import Done, ExecutionContext, Population, Wait
from apps.activities.registry import register
from apps.channels import sending
from apps.channels.activity import ChannelActivity, channel_config_schema
from apps.channels.models import Delivery


@register
class FileExportActivity(ChannelActivity):
    type = "file_export"
    label = "File export"
    channel = "file"
    description = ("Writes a CSV file with a line per recipient (columns rendered with Liquid), e.g. for direct mail. "
                   "Ports: sent (in the file), excluded, failed.")
    config_schema = channel_config_schema("file")

    def begin(self, delivery: Delivery, ctx: ExecutionContext, population: Population) -> Done | Wait:
        written = sending.export_file(delivery, campaign_name=ctx.campaign.name)
        ctx.log(f"File written: {written} lines.", delivery=delivery.pk)
        return self.follow(delivery, ctx, population)
