"""The approval gate an activity waits behind (DESIGN §7 "approval snapshots").

`approval_gate` is called from an activity's `execute`. The first time it freezes a snapshot of
what is to be approved (the incoming count, a sample of the population, and for deliveries the
rendered content), raises a task and returns a `Wait`: the branch waits as a wake-up time in the
database (the task's due date), no worker is held. A decision on the task wakes the node (see
`services._wake_node`); the activity runs again, calls the gate again, and the gate answers
with the task's outcome. When the branch resumes after an approval, the gate takes the
snapshot again: if the count moved beyond the node's tolerance, or the content differs, the
approval is void and a new task is raised.

Channel activities with "requires approval" use it like this (apps/activities/approval.py does
the same for the Approval activity)::

    from apps.approvals.gate import approval_gate

    gate = approval_gate(ctx, population=population, settings=config.get("approval") or {},
                         title=f"Send “{config['subject']}”", content=rendered_samples)
    if gate.wait is not None:
        return gate.wait              # the node waits; the engine stores gate.wait.state
    if not gate.is_approved:
        return Done({})               # rejected (or expired with "reject"): send nothing
    ...send...
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from psycopg import sql

from apps.activities.base import ExecutionContext, NodeError, Population, Problem, ValidationContext, Wait
from apps.activities.wait import parse_duration
from apps.approvals.models import ExpiryAction, Task, TaskKind, TaskStatus
from apps.campaigns.populations import sample, table_ident
from apps.core.errors import ApplicationError

STATE_KEY = "approval"
DEFAULT_SAMPLE_SIZE = 10
MAX_SAMPLE_SIZE = 50

# The part of a node's config that describes its approval (served as JSON Schema; channel
# activities embed it as their `approval` property).
ASSIGN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "one of: user (e-mail), group (approver group name), users (e-mails: each must approve); "
                   "empty: any approver of the tenant",
    "properties": {
        "user": {"type": "string", "minLength": 1},
        "group": {"type": "string", "minLength": 1},
        "users": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 20},
    },
}
SETTINGS_PROPERTIES: dict[str, Any] = {
    "title": {"type": "string", "maxLength": 200},
    "instructions": {"type": "string", "maxLength": 5000},
    "assign": ASSIGN_SCHEMA,
    "due": {"type": "string", "description": "time to answer: 30m, 4h, 2d, 1w (empty: no deadline)"},
    "on_expiry": {"enum": ["approve", "reject", "escalate"], "default": "reject"},
    "escalate_to": {"type": "string", "description": "approver group that gets the task when it expires"},
    "tolerance": {
        "type": "object", "additionalProperties": False,
        "description": "how far the incoming count may move after approval before the approval is void",
        "properties": {"percent": {"type": "number", "minimum": 0, "maximum": 100},
                       "absolute": {"type": "integer", "minimum": 0}},
    },
    "sample_size": {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLE_SIZE},
}


def validate_settings(settings: dict[str, Any], ctx: ValidationContext, *, path: str = "config",
                      kind: str = TaskKind.APPROVAL) -> list[Problem]:
    """Check what JSON Schema cannot: the duration, the people and groups named exist."""
    from apps.approvals import services

    problems = []
    if settings.get("due"):
        try:
            parse_duration(settings["due"])
        except ValueError as exc:
            problems.append(ctx.problem(f"Invalid duration: {exc}.", f"{path}.due"))
    try:
        services.assignment_from_config(tenant=ctx.tenant, config=settings.get("assign"), kind=kind,
                                        field_prefix=f"{path}.assign")
    except ApplicationError as exc:
        for where, messages in exc.fields.items():
            problems += [ctx.problem(m, where) for m in messages]
    if settings.get("on_expiry") == "escalate":
        if not settings.get("escalate_to"):
            problems.append(ctx.problem("Name the group to escalate to.", f"{path}.escalate_to"))
        else:
            try:
                services._group(ctx.tenant, settings["escalate_to"], field_name=f"{path}.escalate_to")
            except ApplicationError as exc:
                problems += [ctx.problem(m, where) for where, ms in exc.fields.items() for m in ms]
    return problems


# Snapshots --------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON-safe copy (dates, decimals as text) for storing in the task."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder).encode()).hexdigest()


def population_count(ctx: ExecutionContext, population: Population) -> int:
    """The population's count as it is now in its table (not the count recorded when it was made)."""
    if population.table is None:
        return population.count
    cursor = ctx.store.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(population.table)))
    return int(cursor.fetchone()[0])


def take_snapshot(ctx: ExecutionContext, population: Population, *, sample_size: int = DEFAULT_SAMPLE_SIZE,
                  content: Any = None) -> dict[str, Any]:
    rows: dict[str, Any] = {"columns": [], "rows": []}
    if population.table is not None and sample_size > 0:
        rows = sample(ctx.store.cursor, population, limit=sample_size)
    snapshot: dict[str, Any] = {
        "count": population_count(ctx, population),
        "dimension": population.dimension,
        "sample": _plain({"columns": rows["columns"], "rows": rows["rows"]}),
        "taken_at": ctx.now.isoformat(),
        "is_test": ctx.is_test,
        "node": ctx.node_id,
    }
    if content is not None:
        snapshot["content"] = _plain(content)
        snapshot["content_fingerprint"] = _fingerprint(snapshot["content"])
    return snapshot


def snapshot_change(approved: dict[str, Any], current: dict[str, Any], tolerance: dict[str, Any]) -> str | None:
    """Why `current` no longer matches what was approved, or None when it is within tolerance."""
    before, after = approved.get("count"), current.get("count")
    if before is not None and after is not None and before != after:
        allowed = max(int(tolerance.get("absolute") or 0), before * float(tolerance.get("percent") or 0) / 100)
        if abs(after - before) > allowed:
            return f"The population changed from {before} to {after} since it was approved."
    if approved.get("content_fingerprint") != current.get("content_fingerprint"):
        return "The content changed since it was approved."
    return None


# The gate -----------------------------------------------------------------------------------------

@dataclass
class GateResult:
    """`wait` is set while the task is open (return it from `execute`); otherwise `outcome` is
    "approved", "rejected" or "completed" and `task` is the task that decided."""

    task: Task
    outcome: str = ""
    wait: Wait | None = None

    @property
    def is_approved(self) -> bool:
        return self.outcome in ("approved", "completed")


def approval_gate(ctx: ExecutionContext, *, population: Population, settings: dict[str, Any], title: str,
                  content: Any = None, kind: str = TaskKind.APPROVAL, state_key: str = STATE_KEY) -> GateResult:
    from apps.approvals import services

    state = (ctx.state or {}).get(state_key) or {}
    sample_size = int(settings.get("sample_size", DEFAULT_SAMPLE_SIZE))
    task_id = state.get("task_id")
    if task_id is None:
        snapshot = take_snapshot(ctx, population, sample_size=sample_size, content=content)
        return _waiting(ctx, _raise(ctx, settings, title, kind, snapshot), title, state_key)

    task = Task.objects.select_for_update().filter(pk=task_id).first()
    if task is None:
        raise NodeError(f"The task #{task_id} this activity waited on no longer exists.")
    if task.is_open:
        task = services.task_expire(tenant=ctx.tenant, task=task)
        if task.is_open:  # not due yet (an early wake-up) or escalated: wait on
            return _waiting(ctx, task, title, state_key)
    if task.status == TaskStatus.CANCELLED:
        # Its run ended (failed, stopped) and has been retried since: ask again.
        ctx.log(f"Task #{task.pk} was cancelled when the run ended; a new task is raised.")
        snapshot = take_snapshot(ctx, population, sample_size=sample_size, content=content)
        return _waiting(ctx, _raise(ctx, settings, title, kind, snapshot, replaces=task), title, state_key)
    if task.status == TaskStatus.VOID:  # replaced by a newer task: wait on that one
        newer = Task.objects.filter(replaces=task).order_by("-id").first()
        if newer is None:
            raise NodeError(f"The task #{task.pk} was voided and not replaced.")
        return _waiting(ctx, newer, title, state_key)
    if task.outcome == "approved" and kind == TaskKind.APPROVAL:
        current = take_snapshot(ctx, population, sample_size=sample_size, content=content)
        change = snapshot_change(task.snapshot, current, task.tolerance or {})
        if change:
            ctx.log(f"Approval of task #{task.pk} is void: {change} A new task is raised.", level="warning")
            newer = services.task_void_and_reraise(tenant=ctx.tenant, task=task, snapshot=current, reason=change)
            return _waiting(ctx, newer, title, state_key)
    who = task.decided_by.email if task.decided_by_id else "the system (on expiry)"
    ctx.log(f"Task #{task.pk} {task.get_status_display().lower()} by {who}.", task=task.pk,
            outcome=task.outcome, comment=task.comment)
    return GateResult(task=task, outcome=task.outcome)


def _raise(ctx: ExecutionContext, settings: dict[str, Any], title: str, kind: str,
           snapshot: dict[str, Any], replaces: Task | None = None) -> Task:
    from apps.approvals import services

    try:
        assignment = services.assignment_from_config(tenant=ctx.tenant, config=settings.get("assign"), kind=kind)
        escalate_to = None
        action = settings.get("on_expiry") or ExpiryAction.REJECT
        if action == ExpiryAction.ESCALATE:
            escalate_to = services._group(ctx.tenant, settings.get("escalate_to"), field_name="escalate_to")
        due_at: dt.datetime | None = None
        if settings.get("due"):
            due_at = ctx.now + parse_duration(settings["due"])
        return services.task_raise(
            tenant=ctx.tenant, campaign=ctx.campaign, run=ctx.run, node_id=ctx.node_id, kind=kind,
            title=(settings.get("title") or title), instructions=settings.get("instructions") or "",
            assignment=assignment, due_at=due_at, expiry_action=action, escalate_to=escalate_to,
            snapshot=snapshot, tolerance=settings.get("tolerance") or {}, replaces=replaces,
        )
    except ApplicationError as exc:  # e.g. the named approver left the tenant since publishing
        details = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items())
        raise NodeError(f"Cannot raise the task: {exc.message}{' (' + details + ')' if details else ''}") from None


def _waiting(ctx: ExecutionContext, task: Task, title: str, state_key: str) -> GateResult:
    state = {**(ctx.state or {}), state_key: {"task_id": task.pk}}
    due = f", due {task.due_at:%Y-%m-%d %H:%M %Z}" if task.due_at else ""
    return GateResult(task=task, wait=Wait(until=task.due_at, state=state,
                                           reason=f"Waiting for task #{task.pk} “{task.title}”{due}."))
