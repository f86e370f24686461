"""Files uploaded to a campaign, read by its Load file activities (apps/activities/load_file.py).

The bytes live under MEDIA_ROOT/campaign-files/<tenant>/; the row says whose they are."""

from __future__ import annotations

from django.db import models

from apps.tenants.scoping import TenantOwnedModel


class CampaignFile(TenantOwnedModel):
    campaign = models.ForeignKey("campaigns.Campaign", on_delete=models.CASCADE, related_name="files",
                                 db_index=False)
    name = models.CharField(max_length=255, help_text="The file's name as uploaded.")
    path = models.CharField(max_length=500, help_text="Where the bytes are, relative to MEDIA_ROOT.")
    size = models.BigIntegerField(default=0)
    content_type = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey("tenants.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwnedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "campaign", "name"], name="files_campaignfile_name_idx")]

    def __str__(self) -> str:
        return self.name
