"""Uploading and removing the files a campaign's Load file activities read."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.core.errors import ApplicationError
from apps.files import storage
from apps.files.models import CampaignFile
from apps.tenants.models import Tenant, User
from apps.tenants.scoping import TenantScopeError, tenant_scope
from apps.tenants.services import audit_record


def _own(tenant: Tenant, *objects: Any) -> None:
    for obj in objects:
        if obj is not None and obj.tenant_id != tenant.pk:
            raise TenantScopeError(f"{type(obj).__name__} {obj.pk} belongs to another tenant")


def campaign_file_upload(*, tenant: Tenant, campaign: Any, file: Any, by: User | None,
                         name: str | None = None) -> CampaignFile:
    """Keep `file` (an uploaded file, read chunk by chunk) for `campaign`."""
    _own(tenant, campaign)
    if file is None:
        raise ApplicationError("Send the file.", fields={"file": ["No file was submitted."]})
    name = (name or str(getattr(file, "name", "") or "")).strip()[:255]
    if not name:
        raise ApplicationError("Name the file.", fields={"name": ["The file has no name: give one."]})
    path = None
    try:
        with transaction.atomic(), tenant_scope(tenant):
            path, size = storage.store(tenant.pk, file)
            if size == 0:
                raise ApplicationError("The file is empty.", fields={"file": ["The file is empty."]})
            stored = CampaignFile.objects.create(
                tenant=tenant, campaign=campaign, name=name, path=storage.relative(path), size=size,
                content_type=str(getattr(file, "content_type", "") or "")[:100],
                created_by=by if by is not None and by.is_authenticated else None)
            audit_record(tenant=tenant, actor=by, action="campaign_file.upload", obj=stored,
                         data={"campaign": campaign.pk, "name": name, "size": size})
    except BaseException:
        storage.remove(path)
        raise
    return stored


def campaign_file_delete(*, tenant: Tenant, file: CampaignFile, by: User | None) -> None:
    _own(tenant, file)
    path = storage.absolute(file.path)
    with transaction.atomic(), tenant_scope(tenant):
        audit_record(tenant=tenant, actor=by, action="campaign_file.delete", obj=file,
                     data={"campaign": file.campaign_id, "name": file.name})
        file.delete()
        transaction.on_commit(lambda: storage.remove(path))
