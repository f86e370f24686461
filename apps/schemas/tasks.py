"""Celery tasks of the schemas app: kicks that carry ids and call a service."""

from __future__ import annotations

from celery import shared_task

from apps.tenants.scoping import current_tenant, tenant_task


@shared_task(name="schemas.run_import", acks_late=True)
@tenant_task
def run_import(*, job_id: int, tenant_id: int) -> None:
    """Run bulk import `job_id` (idempotent: a finished job is left alone)."""
    from apps.schemas.imports import import_run

    import_run(tenant=current_tenant(), job_id=job_id)
