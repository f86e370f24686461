"""A file uploaded to every campaign of the tenant, for the route-walking tests."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.campaigns.models import Campaign
from apps.files.services import campaign_file_upload
from apps.tenants.scoping import tenant_scope
from tests.world import populator


@populator
def campaign_files(tenant, people):
    marketer = people["marketer"].user
    with tenant_scope(tenant):
        for campaign in Campaign.objects.all():
            campaign_file_upload(tenant=tenant, campaign=campaign, by=marketer,
                                 file=SimpleUploadedFile(f"{tenant.slug}-list.csv", b"email,points\na@x.test,1\n"))
