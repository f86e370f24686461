"""The durable engine (DESIGN §5).

Run state lives in PostgreSQL. A Celery message only says "look at run X now" (`advance`) or
"run node N of run X now" (`execute_node`); both are idempotent and safe to deliver twice.

- `advance` locks the run row, marks the nodes whose inputs are all finished as ready (or skipped,
  when no active transition reaches them), wakes waiting nodes whose time has come, completes the
  run, and dispatches ready nodes within the tenant's parallelism cap.
- `execute_node` marks the node running in a short transaction, then does the node's work in a
  second transaction that holds the node's row lock for its whole duration and commits the
  outputs and `done` together. A worker killed mid-work leaves the row `running` but unlocked:
  the sweeper finds such rows (they can be locked with SKIP LOCKED) and dispatches them again.
  The work transaction re-checks the status under the lock, so a node's work commits once.
- The sweeper (`sweep`) re-kicks every run whose `next_check_at` has passed: lost messages,
  restarted workers and broker outages delay a run, never lose or repeat a step.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.activities import registry
from apps.activities.base import Done, ExecutionContext, NodeError, Population, Wait
from apps.campaigns.graph import Graph
from apps.campaigns.models import (
    FINISHED_NODE_STATUSES,
    CampaignStatus,
    NodeState,
    NodeStatus,
    Run,
    RunLog,
    RunStatus,
)
from apps.campaigns.populations import PopulationStore
from apps.tenants.models import Tenant
from apps.tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

STALL_SECONDS = 60          # a dispatched node not started by then is dispatched again
THROTTLED_RECHECK_SECONDS = 5
DEFAULT_MAX_CONCURRENT_RUNS = 5
DEFAULT_MAX_PARALLEL_NODES = 2


def now() -> dt.datetime:
    return timezone.now()


# Kicks -----------------------------------------------------------------------------------------

def kick_run(run: Run) -> None:
    """Ask a worker to look at `run` once the current transaction commits."""
    from apps.campaigns import tasks

    run_id, tenant_id = run.pk, run.tenant_id
    transaction.on_commit(lambda: tasks.advance_run.delay(run_id=run_id, tenant_id=tenant_id))


def _dispatch_node(run: Run, node_id: str) -> None:
    from apps.campaigns import tasks

    run_id, tenant_id = run.pk, run.tenant_id
    transaction.on_commit(lambda: tasks.execute_node.delay(run_id=run_id, node_id=node_id, tenant_id=tenant_id))


def log(run: Run, message: str, *, node_id: str = "", level: str = "info", **data: Any) -> None:
    RunLog.objects.create(tenant_id=run.tenant_id, run=run, node_id=node_id, level=level, message=message,
                          data=data)


# Advance ---------------------------------------------------------------------------------------

def _tenant_setting(tenant: Tenant, name: str, default: int) -> int:
    try:
        return max(1, int((tenant.settings or {}).get(name, default)))
    except (TypeError, ValueError):
        return default


def advance(run_id: int) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("tenant", "campaign").filter(pk=run_id).first()
        if run is None:
            return
        current = now()
        if run.status == RunStatus.QUEUED:
            cap = _tenant_setting(run.tenant, "max_concurrent_runs", DEFAULT_MAX_CONCURRENT_RUNS)
            running = Run.objects.filter(status=RunStatus.RUNNING).exclude(pk=run.pk).count()
            if running >= cap:
                run.next_check_at = current + dt.timedelta(seconds=THROTTLED_RECHECK_SECONDS)
                run.save(update_fields=["next_check_at"])
                return
            run.status = RunStatus.RUNNING
            run.started_at = current
            log(run, f"Run started ({run.get_trigger_display().lower()}{', test mode' if run.is_test else ''}).")
        if run.status != RunStatus.RUNNING:
            run.next_check_at = None
            run.save(update_fields=["status", "started_at", "next_check_at"])
            return

        graph = Graph(run.graph)
        nodes = {n.node_id: n for n in NodeState.objects.select_for_update().filter(run=run)}
        changed = True
        while changed:  # skipping a node can make its successors decidable
            changed = False
            for node_id, node in nodes.items():
                if node.status != NodeStatus.PENDING:
                    continue
                incoming = graph.incoming.get(node_id, [])
                if not incoming:
                    _mark(node, NodeStatus.READY)
                    changed = True
                    continue
                sources = [nodes[e.source] for e in incoming]
                if any(s.status not in FINISHED_NODE_STATUSES for s in sources):
                    continue
                active = [e for e in incoming if nodes[e.source].status == NodeStatus.DONE
                          and e.port in (nodes[e.source].outputs or {})]
                _mark(node, NodeStatus.READY if active else NodeStatus.SKIPPED)
                changed = True

        for node in nodes.values():
            if node.status == NodeStatus.WAITING and node.wake_at is not None and node.wake_at <= current:
                _mark(node, NodeStatus.READY)

        statuses = {n.status for n in nodes.values()}
        if statuses <= set(FINISHED_NODE_STATUSES):
            _finish_run(run, RunStatus.COMPLETED)
            return

        # Dispatch ready nodes within the tenant's parallelism cap; re-dispatch stale ones.
        cap = _tenant_setting(run.tenant, "max_parallel_nodes", DEFAULT_MAX_PARALLEL_NODES)
        stale = current - dt.timedelta(seconds=STALL_SECONDS)
        busy = NodeState.objects.filter(
            Q(status=NodeStatus.RUNNING) | Q(status=NodeStatus.READY, queued_at__gt=stale),
            run__status=RunStatus.RUNNING,
        ).exclude(run=run).count()
        busy += sum(1 for n in nodes.values() if n.status == NodeStatus.RUNNING
                    or (n.status == NodeStatus.READY and n.queued_at and n.queued_at > stale))
        throttled = False
        for node in nodes.values():
            if node.status != NodeStatus.READY or (node.queued_at and node.queued_at > stale):
                continue
            if busy >= cap:
                throttled = True
                break
            node.queued_at = current
            node.save(update_fields=["queued_at"])
            _dispatch_node(run, node.node_id)
            busy += 1

        wakes = [n.wake_at for n in nodes.values() if n.status == NodeStatus.WAITING and n.wake_at]
        checks = wakes + [current + dt.timedelta(seconds=THROTTLED_RECHECK_SECONDS if throttled else STALL_SECONDS)]
        if not any(n.status in (NodeStatus.READY, NodeStatus.RUNNING) for n in nodes.values()) and wakes:
            checks = wakes
        run.next_check_at = min(checks)
        run.save(update_fields=["status", "started_at", "next_check_at"])


def _mark(node: NodeState, status: str) -> None:
    node.status = status
    fields = ["status"]
    if status == NodeStatus.SKIPPED:
        node.finished_at = now()
        fields.append("finished_at")
    if status == NodeStatus.READY:
        node.queued_at = None
        fields.append("queued_at")
    node.save(update_fields=fields)


def _finish_run(run: Run, status: str, *, error: str = "", error_node: str = "") -> None:
    run.status = status
    run.finished_at = now()
    run.next_check_at = None
    run.error = error
    run.error_node = error_node
    run.save(update_fields=["status", "finished_at", "next_check_at", "error", "error_node"])
    log(run, f"Run {status}.", level="error" if status == RunStatus.FAILED else "info",
        **({"node": error_node, "error": error} if error else {}))
    campaign = run.campaign
    if not run.is_test and status == RunStatus.COMPLETED and campaign.status == CampaignStatus.LIVE:
        from apps.campaigns.schedules import campaign_is_recurring

        if not campaign_is_recurring(campaign):
            campaign.status = CampaignStatus.COMPLETED
            campaign.save(update_fields=["status", "updated_at"])
    if not run.is_test and status == RunStatus.FAILED and campaign.status == CampaignStatus.LIVE:
        campaign.status = CampaignStatus.FAILED
        campaign.save(update_fields=["status", "updated_at"])
    if status == RunStatus.FAILED:
        from apps.campaigns.notifications import notify_supervisors

        notify_supervisors(run)
    # The tenant's next queued run may start now.
    nxt = Run.objects.filter(status=RunStatus.QUEUED).exclude(pk=run.pk).order_by("created_at").first()
    if nxt is not None:
        kick_run(nxt)


# Execute ---------------------------------------------------------------------------------------

def execute_node(run_id: int, node_id: str) -> None:
    with transaction.atomic():
        node = (NodeState.objects.select_for_update(skip_locked=True)
                .filter(run_id=run_id, node_id=node_id).first())
        if node is None or node.status not in (NodeStatus.READY, NodeStatus.RUNNING):
            return
        run = Run.objects.get(pk=run_id)
        if run.status != RunStatus.RUNNING:
            return
        node.status = NodeStatus.RUNNING
        node.attempts += 1
        node.started_at = node.started_at or now()
        node.save(update_fields=["status", "attempts", "started_at"])

    try:
        with transaction.atomic():
            node = (NodeState.objects.select_for_update(skip_locked=True)
                    .filter(run_id=run_id, node_id=node_id).first())
            if node is None or node.status != NodeStatus.RUNNING:
                return
            run = Run.objects.select_related("campaign", "tenant").get(pk=run_id)
            _do_work(run, node)
    except Exception as exc:  # the work rolled back; record why, per the campaign's error policy
        _handle_failure(run_id, node_id, exc)


def _inputs(run: Run, graph: Graph, node_id: str) -> tuple[list[Population], list[str]]:
    """The populations on the node's active incoming transitions, and their source activities."""
    incoming = graph.incoming.get(node_id, [])
    sources = {n.node_id: n for n in NodeState.objects.filter(run=run, node_id__in={e.source for e in incoming})}
    populations, names = [], []
    for edge in incoming:
        source = sources[edge.source]
        if source.status == NodeStatus.DONE and edge.port in (source.outputs or {}):
            populations.append(Population.from_dict(source.outputs[edge.port]))
            names.append(edge.source)
    return populations, names


def _do_work(run: Run, node: NodeState) -> None:
    graph = Graph(run.graph)
    activity = registry.get(node.type)
    config = graph.config(node.node_id)
    inputs, input_sources = _inputs(run, graph, node.node_id)
    with connection.cursor() as cursor:
        ctx = ExecutionContext(
            tenant=run.tenant, run=run, campaign=run.campaign, node_id=node.node_id, config=config,
            variables=run.variables or {}, is_test=run.is_test, now=now(), state=dict(node.state or {}),
            store=PopulationStore(cursor=cursor, run_id=run.pk, node_pk=node.pk),
            dimension=run.campaign.dimension, input_sources=input_sources,
        )
        result = activity.execute(config, ctx, inputs)
    for level, message, data in ctx.logs:
        log(run, message, node_id=node.node_id, level=level, **data)
    node.count_in = sum(p.count for p in inputs if not p.is_token) if inputs else None
    if isinstance(result, Wait):
        node.status = NodeStatus.WAITING
        node.wake_at = result.until
        node.state = result.state
        node.save(update_fields=["status", "wake_at", "state", "count_in"])
        log(run, result.reason or "Waiting.", node_id=node.node_id,
            **({"until": result.until.isoformat()} if result.until else {}))
    elif isinstance(result, Done):
        node.status = NodeStatus.DONE
        node.outputs = {port: population.as_dict() for port, population in result.outputs.items()}
        node.count_out = sum(p.count for p in result.outputs.values() if not p.is_token) if result.outputs else 0
        node.summary = result.summary
        node.finished_at = now()
        node.executions += 1
        node.wake_at = None
        node.error = ""
        node.save(update_fields=["status", "outputs", "count_in", "count_out", "summary", "finished_at",
                                 "executions", "wake_at", "error"])
        if run.consecutive_errors:
            Run.objects.filter(pk=run.pk).update(consecutive_errors=0)
        log(run, f"{activity.label or node.type} done.", node_id=node.node_id,
            counts={port: p.count for port, p in result.outputs.items()})
    else:
        raise NodeError(f"activity {node.type} returned {type(result).__name__}")
    kick_run(run)


def _readable(exc: Exception) -> str:
    if isinstance(exc, NodeError):
        return str(exc)
    from apps.core.errors import ApplicationError

    if isinstance(exc, ApplicationError):
        return exc.message
    return f"Internal error ({type(exc).__name__}): {exc}"


def _handle_failure(run_id: int, node_id: str, exc: Exception) -> None:
    if not isinstance(exc, NodeError):
        logger.error("node %s of run %s failed\n%s", node_id, run_id, traceback.format_exc())
    reason = _readable(exc)
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("campaign").get(pk=run_id)
        node = NodeState.objects.select_for_update().get(run=run, node_id=node_id)
        if node.status != NodeStatus.RUNNING:
            return
        node.status = NodeStatus.FAILED
        node.error = reason
        node.finished_at = now()
        node.save(update_fields=["status", "error", "finished_at"])
        log(run, f"Failed: {reason}", node_id=node_id, level="error")
        policy = (run.campaign.settings or {}).get("error_handling") or {}
        mode = policy.get("mode", "abort")
        if mode == "ignore":
            run.consecutive_errors += 1
            limit = int(policy.get("max_consecutive_errors", 3))
            if run.consecutive_errors <= limit:
                node.status = NodeStatus.SKIPPED
                node.save(update_fields=["status"])
                run.save(update_fields=["consecutive_errors"])
                log(run, f"Error ignored ({run.consecutive_errors} of {limit} in a row); its branch is skipped.",
                    node_id=node_id, level="warning")
                kick_run(run)
                return
        if mode == "suspend":
            run.status = RunStatus.SUSPENDED
            run.error, run.error_node = reason, node_id
            run.next_check_at = None
            run.save(update_fields=["status", "error", "error_node", "next_check_at", "consecutive_errors"])
            log(run, "Run suspended: fix the cause, then retry the failed activity.", node_id=node_id,
                level="warning")
            from apps.campaigns.notifications import notify_supervisors

            notify_supervisors(run)
            return
        for other in NodeState.objects.filter(run=run, status__in=[
                NodeStatus.PENDING, NodeStatus.READY, NodeStatus.WAITING]):
            other.status = NodeStatus.CANCELLED
            other.save(update_fields=["status"])
        _finish_run(run, RunStatus.FAILED, error=reason, error_node=node_id)


# Sweeper ---------------------------------------------------------------------------------------

def sweep(limit: int = 500) -> int:
    """Kick every run whose next check is due, and re-dispatch nodes whose worker died."""
    current = now()
    kicked = 0
    due = list(Run.dangerously_unscoped.filter(
        status__in=[RunStatus.QUEUED, RunStatus.RUNNING], next_check_at__lte=current,
    ).values_list("pk", "tenant_id")[:limit])
    from apps.campaigns import tasks

    for run_id, tenant_id in due:
        transaction.on_commit(lambda r=run_id, t=tenant_id: tasks.advance_run.delay(run_id=r, tenant_id=t))
        kicked += 1
    # Orphans: `running` rows nobody holds a lock on (their worker died mid-work).
    with transaction.atomic():
        orphans = list(NodeState.dangerously_unscoped.select_for_update(skip_locked=True).filter(
            status=NodeStatus.RUNNING, run__status=RunStatus.RUNNING,
            started_at__lt=current - dt.timedelta(seconds=2),
        ).values_list("run_id", "node_id", "tenant_id")[:limit])
        for run_id, node_id, tenant_id in orphans:
            transaction.on_commit(lambda r=run_id, n=node_id, t=tenant_id: tasks.execute_node.delay(
                run_id=r, node_id=n, tenant_id=t))
            kicked += 1
    return kicked


def advance_in_scope(run_id: int, tenant: Tenant) -> None:
    with tenant_scope(tenant):
        advance(run_id)
