"""Celery tasks of the channels app: kicks that carry ids."""

from __future__ import annotations

from celery import shared_task

from apps.tenants.scoping import current_tenant, tenant_task


@shared_task(name="channels.send_delivery")
@tenant_task
def send_delivery(*, delivery_id: int, tenant_id: int) -> str:
    """Send batches of a delivery (see apps/channels/sending.py). Safe to deliver twice: batches
    are claimed under leases."""
    from apps.channels import sending

    return sending.delivery_send(tenant=current_tenant(), delivery_id=delivery_id)


@shared_task(name="channels.close_abandoned_deliveries")
def close_abandoned_deliveries() -> int:
    """Nightly: close what a killed sender left leased in a cancelled delivery."""
    from apps.channels import services

    return services.dangerously_close_abandoned_deliveries()
