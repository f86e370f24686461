"""Celery tasks: kicks that carry ids, load fresh state and call the engine or a service."""

from __future__ import annotations

from celery import shared_task

from apps.tenants.scoping import tenant_task


@shared_task(name="campaigns.advance_run")
@tenant_task
def advance_run(*, run_id: int, tenant_id: int) -> None:
    from apps.campaigns import engine

    engine.advance(run_id)


@shared_task(name="campaigns.advance_runs_of")
def advance_runs_of(*, runs: list[list]) -> None:
    """One kick for runs of several tenants started together by a schedule dispatch: `runs` is
    [[tenant_id, [run_id, ...]], ...]; each tenant's runs are advanced inside its own scope."""
    from apps.campaigns import engine
    from apps.tenants.models import Tenant
    from apps.tenants.scoping import tenant_scope

    tenants = Tenant.objects.in_bulk([tenant_id for tenant_id, _ in runs])
    for tenant_id, run_ids in runs:
        with tenant_scope(tenants[tenant_id]):
            for run_id in run_ids:
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


@shared_task(name="campaigns.fan_out_due_schedules")
def fan_out_due_schedules() -> int:
    """Periodic (one beat entry, every SCHEDULE_DISPATCH_SECONDS): send the tenants with due
    schedules, in batches, to `dispatch_due_schedules_of`. Reads ids across tenants on purpose."""
    from apps.campaigns import schedules

    return schedules.dangerously_fan_out()


@shared_task(name="campaigns.dispatch_due_schedules_of")
def dispatch_due_schedules_of(*, tenant_ids: list[int]) -> int:
    """Start the due scheduled runs of these tenants (a batch of the fan-out). Crosses tenants on
    purpose, like the sweeper: every row it writes takes its tenant from the schedule row."""
    from apps.campaigns import schedules

    return schedules.dangerously_dispatch_due(tenant_ids)


@shared_task(name="campaigns.dispatch_due_schedules")
@tenant_task
def dispatch_due_schedules(*, tenant_id: int) -> int:
    """Start one tenant's due scheduled runs now (by hand; the fan-out batches tenants)."""
    from apps.campaigns import schedules
    from apps.tenants.scoping import current_tenant

    return schedules.dispatch_due(tenant=current_tenant())


@shared_task(name="campaigns.purge_expired_runs")
def purge_expired_runs() -> int:
    """Daily: drop the working populations of runs past their retention period."""
    from apps.campaigns import services

    return services.dangerously_purge_expired_runs()
