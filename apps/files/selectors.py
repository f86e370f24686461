"""Reads of campaign files: the same NotFound for a missing file and another tenant's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.files import storage
from apps.files.models import CampaignFile
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope


def campaign_file_list(*, tenant: Tenant, campaign: Any) -> QuerySet[CampaignFile]:
    with tenant_scope(tenant):
        return (CampaignFile.objects.filter(tenant=tenant, campaign_id=campaign.pk).select_related("created_by")
                .order_by("-created_at", "-id"))


def campaign_file_get(*, tenant: Tenant, campaign: Any | None, id: Any) -> CampaignFile:
    """File `id` of `campaign` (of any campaign of the tenant when `campaign` is None)."""
    try:
        pk = int(id)
    except (TypeError, ValueError):
        raise NotFound("No such file.") from None
    with tenant_scope(tenant):
        qs = CampaignFile.objects.filter(tenant=tenant, pk=pk)
        if campaign is not None:
            qs = qs.filter(campaign_id=campaign.pk)
        found = qs.first()
    if found is None:
        raise NotFound("No such file.")
    return found


def campaign_file_find(*, tenant: Tenant, campaign: Any, reference: Any) -> CampaignFile:
    """The file a variable names: an id, or a name (the latest upload of that name)."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        return campaign_file_get(tenant=tenant, campaign=campaign, id=reference)
    if not isinstance(reference, str) or not reference.strip():
        raise NotFound("No such file.")
    with tenant_scope(tenant):
        found = (CampaignFile.objects.filter(tenant=tenant, campaign_id=campaign.pk, name=reference.strip())
                 .order_by("-created_at", "-id").first())
    if found is None:
        if reference.strip().isdigit():
            return campaign_file_get(tenant=tenant, campaign=campaign, id=reference.strip())
        raise NotFound("No such file.")
    return found


def campaign_file_path(file: CampaignFile) -> Path:
    return storage.absolute(file.path)
