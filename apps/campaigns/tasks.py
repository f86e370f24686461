"""Celery tasks: kicks that carry ids, load fresh state and call the engine or a service."""

from __future__ import annotations

from celery import shared_task

from apps.tenants.scoping import tenant_task


@shared_task(name="campaigns.advance_run")
@tenant_task
def advance_run(*, run_id: int, tenant_id: int) -> None:
    from apps.campaigns import engine

    engine.advance(run_id)


@shared_task(name="campaigns.execute_node")
@tenant_task
def execute_node(*, run_id: int, node_id: str, tenant_id: int) -> None:
    from apps.campaigns import engine

    engine.execute_node(run_id, node_id)


@shared_task(name="campaigns.sweep_stalled_runs")
def sweep_stalled_runs() -> int:
    """Periodic (every few seconds): re-kick runs whose next step is due. Works across tenants
    on purpose: it only reads ids and sends kicks, each of which runs in its tenant's scope."""
    from apps.campaigns import engine

    return engine.sweep()


@shared_task(name="campaigns.dispatch_due_schedules")
@tenant_task
def dispatch_due_schedules(*, tenant_id: int) -> int:
    """Periodic, one django-celery-beat entry per tenant: start the tenant's due scheduled runs."""
    from apps.campaigns import schedules
    from apps.tenants.scoping import current_tenant

    return schedules.dispatch_due(tenant=current_tenant())


@shared_task(name="campaigns.purge_expired_runs")
def purge_expired_runs() -> int:
    """Daily: drop the working populations of runs past their retention period."""
    from apps.campaigns import services

    return services.dangerously_purge_expired_runs()
