"""The durable engine (DESIGN §5).

Run state lives in PostgreSQL. A Celery message only says "look at run X now" (`advance`) or
"run node N of run X now" (`execute_node`); both are idempotent and safe to deliver twice.

- `advance` locks the run row, marks the nodes whose inputs are all finished as ready (or skipped,
  when no active transition reaches them), wakes waiting nodes whose time has come, completes the
  run, and dispatches ready nodes within the tenant's parallelism cap. Cheap activities (those that
  set `runs_inline`: the flow ones) are not dispatched: `advance` executes them itself, each under
  its row lock in a savepoint of the same transaction, within a budget of nodes and time; a run of
  fifty trivial nodes then costs one transaction instead of a hundred and fifty.
- `execute_node` marks the node running in a short transaction, then does the node's work in a
  second transaction that holds the node's row lock for its whole duration and commits the
  outputs and `done` together. A worker killed mid-work leaves the row `running` but unlocked:
  the sweeper finds such rows (they can be locked with SKIP LOCKED) and dispatches them again.
  The work transaction re-checks the status under the lock, so a node's work commits once. Then
  the same worker advances the run (no round trip through the broker).
- The sweeper (`sweep`) re-kicks every run whose `next_check_at` has passed: lost messages,
  restarted workers and broker outages delay a run, never lose or repeat a step.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
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
from apps.tenants.scoping import current_tenant

logger = logging.getLogger(__name__)

STALL_SECONDS = 60          # a dispatched node not started by then is dispatched again
THROTTLED_RECHECK_SECONDS = 5
DEFAULT_MAX_CONCURRENT_RUNS = 5
DEFAULT_MAX_PARALLEL_NODES = 2
INLINE_NODES = 200          # cheap nodes one advance may execute in its own transaction...
INLINE_SECONDS = 1.0        # ...and for how long, so that one run does not keep a worker to itself


def now() -> dt.datetime:
    return timezone.now()


# Kicks -----------------------------------------------------------------------------------------

def kick_run(run: Run) -> None:
    """Ask a worker to look at `run` once the current transaction commits."""
    from apps.campaigns import tasks

    run_id, tenant_id = run.pk, run.tenant_id
    transaction.on_commit(lambda: tasks.advance_run.delay(run_id=run_id, tenant_id=tenant_id))


KICK_TENANTS = 10  # tenants per kick message when many runs start together


def kick_runs(runs: list[tuple[int, int]]) -> None:
    """Ask workers to look at these (run id, tenant id) once the current transaction commits, in
    one message per KICK_TENANTS tenants (the runs a schedule dispatch started together)."""
    from apps.campaigns import tasks

    by_tenant: dict[int, list[int]] = {}
    for run_id, tenant_id in runs:
        by_tenant.setdefault(tenant_id, []).append(run_id)
    groups = [[tenant_id, run_ids] for tenant_id, run_ids in by_tenant.items()]
    for index in range(0, len(groups), KICK_TENANTS):
        chunk = groups[index:index + KICK_TENANTS]
        transaction.on_commit(lambda chunk=chunk: tasks.advance_runs_of.delay(runs=chunk))


def _dispatch_node(run: Run, node_id: str) -> None:
    from apps.campaigns import tasks

    run_id, tenant_id = run.pk, run.tenant_id
    transaction.on_commit(lambda: tasks.execute_node.delay(run_id=run_id, node_id=node_id, tenant_id=tenant_id))


def log(run: Run, message: str, *, node_id: str = "", level: str = "info", **data: Any) -> None:
    RunLog.objects.create(tenant_id=run.tenant_id, run=run, node_id=node_id, level=level, message=message,
                          data=data)


def _log_entry(run: Run, message: str, *, node_id: str = "", level: str = "info", **data: Any) -> RunLog:
    """A log row to insert later with others in one statement (`RunLog.objects.bulk_create`)."""
    return RunLog(tenant_id=run.tenant_id, run_id=run.pk, node_id=node_id, level=level, message=message, data=data)


# The frozen graph of a run, parsed once per process: `Run.graph` never changes after creation, so
# the run rows are read without it. Keyed by database name too (tests and benches switch databases).
_GRAPHS: dict[tuple[str, int], Graph] = {}
_GRAPHS_MAX = 512


def _graph(run: Run) -> Graph:
    key = (connection.settings_dict["NAME"], run.pk)
    graph = _GRAPHS.get(key)
    if graph is None:
        data = run.__dict__.get("graph")
        if data is None:
            data = Run.objects.filter(pk=run.pk).values_list("graph", flat=True).get()
        if len(_GRAPHS) >= _GRAPHS_MAX:
            _GRAPHS.clear()
        graph = _GRAPHS[key] = Graph(data)
    return graph


def _runs_inline(node_type: str) -> bool:
    """Whether the activity is cheap enough for `advance` to execute it itself (flow activities
    set `runs_inline = True`; anything that does real work is dispatched to a worker of its own)."""
    try:
        return bool(getattr(registry.get(node_type), "runs_inline", False))
    except registry.UnknownActivity:
        return False


# Advance ---------------------------------------------------------------------------------------

def _tenant_setting(tenant: Tenant, name: str, default: int) -> int:
    try:
        return max(1, int((tenant.settings or {}).get(name, default)))
    except (TypeError, ValueError):
        return default


# What advance reads of the node rows (the rest is read under the node's lock when it executes).
_ADVANCE_FIELDS = ("id", "tenant_id", "run_id", "node_id", "type", "status", "outputs", "wake_at", "queued_at")


class _Failed(Exception):
    """An inline node failed and its failure was recorded: the advance stops here."""


def advance(run_id: int) -> None:
    """Look at the run: settle which nodes are ready, execute the cheap ones inline, dispatch the
    others, finish the run when everything is finished. Idempotent; safe to call any time."""
    with transaction.atomic():
        run = (Run.objects.select_for_update(of=("self",)).select_related("campaign").defer("graph")
               .filter(pk=run_id).first())
        if run is None:
            return
        tenant = current_tenant()
        current = now()
        if run.status == RunStatus.QUEUED:
            cap = _tenant_setting(tenant, "max_concurrent_runs", DEFAULT_MAX_CONCURRENT_RUNS)
            running = Run.objects.filter(status=RunStatus.RUNNING).exclude(pk=run.pk).count()
            if running >= cap:
                run.next_check_at = current + dt.timedelta(seconds=THROTTLED_RECHECK_SECONDS)
                run.save(update_fields=["next_check_at"])
                return
            run.status = RunStatus.RUNNING
            run.started_at = current
            run.save(update_fields=["status", "started_at"])
            log(run, f"Run started ({run.get_trigger_display().lower()}{', test mode' if run.is_test else ''}).")
        if run.status != RunStatus.RUNNING:
            if run.next_check_at is not None:
                run.next_check_at = None
                run.save(update_fields=["next_check_at"])
            return

        graph = _graph(run)
        # Node rows are read without locking them: the run's row lock already serialises
        # advances, and a node's executor holds its row lock for the whole work; locking them
        # here would make a concurrent execute_node (SKIP LOCKED) drop its message.
        nodes = {n.node_id: n for n in NodeState.objects.filter(run=run).only(*_ADVANCE_FIELDS)}
        logs: list[RunLog] = []
        deadline = time.monotonic() + INLINE_SECONDS
        executed = 0
        stale = current - dt.timedelta(seconds=STALL_SECONDS)
        try:
            while True:
                _settle(graph, nodes, current)
                cheap = [n for n in nodes.values() if n.status == NodeStatus.READY and _runs_inline(n.type)
                         and not (n.queued_at and n.queued_at > stale)]
                if not cheap or executed >= INLINE_NODES or time.monotonic() > deadline:
                    break
                for node in cheap:
                    _execute_inline(run, graph, nodes, node, logs)
                    executed += 1
        except _Failed:
            RunLog.objects.bulk_create(logs)
            return
        RunLog.objects.bulk_create(logs)

        if {n.status for n in nodes.values()} <= set(FINISHED_NODE_STATUSES):
            _finish_run(run, RunStatus.COMPLETED)
            return

        throttled = _dispatch_ready(run, tenant, nodes, current)
        wakes = [n.wake_at for n in nodes.values() if n.status == NodeStatus.WAITING and n.wake_at]
        checks = wakes + [current + dt.timedelta(seconds=THROTTLED_RECHECK_SECONDS if throttled else STALL_SECONDS)]
        if not any(n.status in (NodeStatus.READY, NodeStatus.RUNNING) for n in nodes.values()) and wakes:
            checks = wakes
        run.next_check_at = min(checks)
        run.save(update_fields=["next_check_at"])


def _settle(graph: Graph, nodes: dict[str, NodeState], current: dt.datetime) -> None:
    """Mark pending nodes whose inputs are all finished as ready (or skipped when no active
    transition reaches them), and waiting nodes whose time has come as ready."""
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


def _dispatch_ready(run: Run, tenant: Tenant, nodes: dict[str, NodeState], current: dt.datetime) -> bool:
    """Send ready nodes to workers within the tenant's parallelism cap (re-sending those whose
    message went unanswered for STALL_SECONDS). Returns whether the cap held some back."""
    stale = current - dt.timedelta(seconds=STALL_SECONDS)
    due = [n for n in nodes.values()
           if n.status == NodeStatus.READY and not (n.queued_at and n.queued_at > stale)]
    if not due:
        return False
    cap = _tenant_setting(tenant, "max_parallel_nodes", DEFAULT_MAX_PARALLEL_NODES)
    busy = NodeState.objects.filter(
        Q(status=NodeStatus.RUNNING) | Q(status=NodeStatus.READY, queued_at__gt=stale),
        run__status=RunStatus.RUNNING,
    ).exclude(run=run).count()
    busy += sum(1 for n in nodes.values() if n.status == NodeStatus.RUNNING
                or (n.status == NodeStatus.READY and n.queued_at and n.queued_at > stale))
    sent = []
    for node in due:
        if busy >= cap:
            break
        node.queued_at = current
        sent.append(node)
        busy += 1
    if sent:
        NodeState.objects.filter(pk__in=[n.pk for n in sent]).update(queued_at=current)
        for node in sent:
            _dispatch_node(run, node.node_id)
    return len(sent) < len(due)


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

def _execute_inline(run: Run, graph: Graph, nodes: dict[str, NodeState], node: NodeState,
                    logs: list[RunLog]) -> None:
    """Execute a cheap ready node within advance's transaction, under its row lock, in a savepoint
    (a failure rolls back this node's work only). Raises `_Failed` once a failure is recorded."""
    entries: list[RunLog] = []
    try:
        with transaction.atomic():
            locked = NodeState.objects.select_for_update(skip_locked=True).filter(pk=node.pk).first()
            if locked is None:
                # A duplicate message's executor holds it: not ours to run; its worker advances
                # the run when it is done. Keep it out of this advance's decisions.
                node.status = NodeStatus.RUNNING
                return
            if locked.status not in (NodeStatus.READY, NodeStatus.RUNNING):
                nodes[node.node_id] = locked  # finished meanwhile: decide on what it produced
                return
            locked.attempts += 1
            locked.started_at = locked.started_at or now()
            _do_work(run, graph, locked, nodes, entries)
    except Exception as exc:
        _handle_failure(run.pk, node.node_id, exc)
        raise _Failed from exc
    nodes[node.node_id] = locked
    logs.extend(entries)


def execute_node(run_id: int, node_id: str) -> None:
    """A worker runs one dispatched node: mark it running (visible in monitoring), then do the
    work in a second transaction under the node's row lock, then advance the run."""
    with transaction.atomic():
        node = (NodeState.objects.select_for_update(skip_locked=True, of=("self",)).select_related("run")
                .defer("run__graph").filter(run_id=run_id, node_id=node_id).first())
        if node is None or node.status not in (NodeStatus.READY, NodeStatus.RUNNING):
            return
        if node.run.status != RunStatus.RUNNING:
            return
        node.status = NodeStatus.RUNNING
        node.attempts += 1
        node.started_at = node.started_at or now()
        node.save(update_fields=["status", "attempts", "started_at"])

    try:
        with transaction.atomic():
            node = (NodeState.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("run", "run__campaign").defer("run__graph")
                    .filter(run_id=run_id, node_id=node_id).first())
            if node is None or node.status != NodeStatus.RUNNING:
                return
            run = node.run
            logs: list[RunLog] = []
            _do_work(run, _graph(run), node, None, logs)
            RunLog.objects.bulk_create(logs)
    except Exception as exc:  # the work rolled back; record why, per the campaign's error policy
        _handle_failure(run_id, node_id, exc)
        return
    advance(run_id)


def _inputs(run: Run, graph: Graph, node_id: str,
            known: dict[str, NodeState] | None) -> tuple[list[Population], list[str]]:
    """The populations on the node's active incoming transitions, and their source activities.
    `known`: node rows already read in this transaction (a finished node's outputs never change)."""
    incoming = graph.incoming.get(node_id, [])
    if known is not None:
        sources = known
    else:
        sources = {n.node_id: n for n in NodeState.objects.filter(
            run=run, node_id__in={e.source for e in incoming}).only("node_id", "status", "outputs")}
    populations, names = [], []
    for edge in incoming:
        source = sources[edge.source]
        if source.status == NodeStatus.DONE and edge.port in (source.outputs or {}):
            populations.append(Population.from_dict(source.outputs[edge.port]))
            names.append(edge.source)
    return populations, names


def _do_work(run: Run, graph: Graph, node: NodeState, known: dict[str, NodeState] | None,
             logs: list[RunLog]) -> None:
    """Run the node's activity and record its outcome on the (locked) row; log rows are appended
    to `logs` for the caller to insert in the same transaction."""
    activity = registry.get(node.type)
    config = graph.config(node.node_id)
    inputs, input_sources = _inputs(run, graph, node.node_id, known)
    with connection.cursor() as cursor:
        ctx = ExecutionContext(
            tenant=current_tenant(), run=run, campaign=run.campaign, node_id=node.node_id, config=config,
            variables=run.variables or {}, is_test=run.is_test, now=now(), state=dict(node.state or {}),
            store=PopulationStore(cursor=cursor, run_id=run.pk, node_pk=node.pk),
            dimension=run.campaign.dimension, input_sources=input_sources,
        )
        ctx.store.check_inputs(inputs)
        result = activity.execute(config, ctx, inputs)
        if isinstance(result, Wait):
            # Working tables are unlogged (fast, lost in a crash of the server): a node that waits
            # may need its inputs for days, so they become crash-safe when it first waits.
            ctx.store.make_durable(inputs)
    logs.extend(_log_entry(run, message, node_id=node.node_id, level=level, **data) for level, message, data in ctx.logs)
    node.count_in = sum(p.count for p in inputs if not p.is_token) if inputs else None
    if isinstance(result, Wait):
        node.status = NodeStatus.WAITING
        node.wake_at = result.until
        node.state = result.state
        node.save(update_fields=["status", "wake_at", "state", "count_in", "attempts", "started_at"])
        logs.append(_log_entry(run, result.reason or "Waiting.", node_id=node.node_id,
                               **({"until": result.until.isoformat()} if result.until else {})))
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
                                 "executions", "wake_at", "error", "attempts", "started_at"])
        if run.consecutive_errors:
            Run.objects.filter(pk=run.pk).update(consecutive_errors=0)
            run.consecutive_errors = 0
        logs.append(_log_entry(run, f"{activity.label or node.type} done.", node_id=node.node_id,
                               counts={port: p.count for port, p in result.outputs.items()}))
    else:
        raise NodeError(f"activity {node.type} returned {type(result).__name__}")


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
        run = Run.objects.select_for_update(of=("self",)).select_related("campaign").defer("graph").get(pk=run_id)
        node = NodeState.objects.select_for_update().get(run=run, node_id=node_id)
        # RUNNING: a dispatched node's work rolled back; READY: an inline node's savepoint did.
        if node.status not in (NodeStatus.RUNNING, NodeStatus.READY):
            return
        if node.status == NodeStatus.READY:
            node.attempts += 1
            node.started_at = node.started_at or now()
        node.status = NodeStatus.FAILED
        node.error = reason
        node.finished_at = now()
        node.save(update_fields=["status", "error", "finished_at", "attempts", "started_at"])
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


