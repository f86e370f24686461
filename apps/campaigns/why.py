"""Why / why not: where one record went in one run. The run's frozen graph is walked in flow
order; at each activity the record key is looked up in the working tables of its incoming and
outgoing transitions (`campaign_work.r<run>_n<node>_<port>`, see populations.py), at most one
`SELECT … WHERE key = %s LIMIT 1` per table (a table shared by several transitions, as a Fork's,
is read once); a population is never read into Python. Where the record left through no main
output, the activity says why: the channel ledger (`channels_message`) for a send, the kept
record for a deduplication, the other inputs for an exclusion, and so on.

A population's keys belong to its dimension. Change dimension maps the key through its link
(as the data stands now): one record reached is followed on under its new key; several or none
stop the walk there with an explanation. Once a run's tables are purged (retention), nothing can
be said record by record: `run_why` raises a 409 `purged`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from django.db import connection
from psycopg import sql

from apps.activities import registry
from apps.activities.base import Population
from apps.campaigns.graph import Graph
from apps.campaigns.models import NodeState, NodeStatus, Run
from apps.campaigns.populations import WORK_SCHEMA, table_ident
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.schemas.query.compiler import Compiled, compose
from apps.tenants.models import Tenant

MAX_KEY_LENGTH = 255   # a message's recipient key has this length
MAX_FOLLOWED = 10      # keys listed when Change dimension reaches several records

# Ports through which a record leaves an activity on a side road: it did not "pass" the activity.
SIDE_PORTS = frozenset({"complement", "excluded", "failed", "rejects", "unmatched", "rejected"})

PASSED, DROPPED, NOT_REACHED, UNKNOWN = "passed", "dropped", "not_reached", "unknown"

_WAITING_TEXT = {
    NodeStatus.PENDING: "the run has not got here yet",
    NodeStatus.READY: "the activity is about to run",
    NodeStatus.RUNNING: "the activity is running",
    NodeStatus.WAITING: "the activity is waiting (a delay, a send in progress or an approval)",
}


@dataclass
class NodeWhy:
    """What happened to the record at one activity."""

    node: str
    type: str
    label: str
    node_status: str
    status: str = NOT_REACHED
    reason: str = ""
    ports: list[str] = field(default_factory=list)
    key: str | None = None
    dimension: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "type": self.type, "label": self.label, "node_status": self.node_status,
                "status": self.status, "reason": self.reason, "ports": self.ports, "key": self.key,
                "dimension": self.dimension, "details": self.details}


def why_key(value: Any) -> str:
    """The record key of a why request, or a 400 naming the `key` field."""
    if not isinstance(value, str) or not value.strip():
        raise ApplicationError("Give the record key to look for.", fields={"key": ["This field is required."]})
    value = value.strip()
    if len(value) > MAX_KEY_LENGTH:
        raise ApplicationError("The record key is too long.",
                               fields={"key": [f"At most {MAX_KEY_LENGTH} characters."]})
    return value


def run_why(*, tenant: Tenant, run: Run, key: str) -> dict[str, Any]:
    """For each activity of `run`, in flow order: whether the record `key` (of the campaign's
    dimension) reached it, which outputs it left through, and where it dropped out and why.
    Raises 400 for a bad key and 409 `purged` once the run's populations are gone."""
    key = why_key(key)
    if run.tenant_id != tenant.pk:  # the caller loaded the run in its tenant; never trust it blindly
        raise NotFound("No such run.")
    if run.purged_at is not None:
        raise _purged(run)
    walk = _Walk(tenant, run, key)
    walk.check_tables()
    nodes = walk.run()
    return {
        "run": run.pk, "campaign": run.campaign_id, "key": key, "dimension": walk.dimension,
        "is_test": run.is_test, "run_status": run.status, "purged": False,
        "summary": _summary(nodes), "nodes": [n.as_dict() for n in nodes], "lookups": walk.lookups,
    }


def _purged(run: Run) -> Conflict:
    when = f" on {run.purged_at:%Y-%m-%d}" if run.purged_at else ""
    return Conflict(f"The working populations of this run were dropped{when} after the retention period: "
                    "where a record went can no longer be told (counts and the log are kept).", code="purged")


def _summary(nodes: list[NodeWhy]) -> str:
    dropped = [n for n in nodes if n.status == DROPPED]
    if dropped:
        first = dropped[0]
        return f"Dropped at {first.label} ({first.node}): {first.reason}"
    passed = [n for n in nodes if n.status == PASSED]
    unknown = [n for n in nodes if n.status == UNKNOWN]
    if unknown:
        first = unknown[0]
        return f"Followed up to {first.label} ({first.node}): {first.reason}"
    if not any(n.details.get("record_seen") for n in passed):
        return "The record did not enter this run's populations."
    return f"Passed through {len(passed)} activities without dropping out."


def _flow_order(graph: Graph) -> list[str]:
    """Nodes after all their sources, breadth first, ties in the graph's own node order."""
    position = {nid: index for index, nid in enumerate(graph.nodes)}
    pending = {nid: len(graph.incoming.get(nid, [])) for nid in graph.nodes}
    ready = deque(sorted((nid for nid, n in pending.items() if n == 0), key=position.__getitem__))
    order: list[str] = []
    while ready:
        nid = ready.popleft()
        order.append(nid)
        for edge in sorted(graph.outgoing.get(nid, []), key=lambda e: position[e.target]):
            pending[edge.target] -= 1
            if pending[edge.target] == 0:
                ready.append(edge.target)
    return order + [nid for nid in graph.nodes if nid not in order]  # a cycle: never in a valid run


class _Walk:
    def __init__(self, tenant: Tenant, run: Run, key: str) -> None:
        self.tenant = tenant
        self.run_row = run
        self.key = key
        self.dimension = run.campaign.dimension
        self.graph = Graph(run.graph)
        self.states = {n.node_id: n for n in NodeState.objects.filter(run=run)}
        self.rows: dict[tuple[str, str], dict[str, Any] | None] = {}
        self.lookups = 0
        # (node, port) -> the key the record has in that population (None: cannot be followed)
        self.followed: dict[tuple[str, str], str | None] = {}
        self.notes: dict[tuple[str, str], str] = {}
        self.absent: set[tuple[str, str]] = set()  # (node, port) whose population lacks the record
        self._catalog: Any = None

    # Reads -------------------------------------------------------------------------------------

    def outputs(self, node_id: str) -> dict[str, Population]:
        state = self.states.get(node_id)
        if state is None or state.status != NodeStatus.DONE:
            return {}
        return {port: Population.from_dict(data) for port, data in (state.outputs or {}).items()}

    def check_tables(self) -> None:
        """Every table the run's outputs name still exists (else: purged), and those that had rows
        still have some (else: emptied by a crash of the server, working tables being unlogged):
        two queries."""
        populations = {p.table: p for nid in self.states for p in self.outputs(nid).values() if p.table}
        if not populations:
            return
        tables = sorted(populations)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
                           [WORK_SCHEMA, tables])
            found = cursor.fetchone()[0]
            if found != len(tables):
                raise _purged(self.run_row)
            filled = [t for t in tables if populations[t].count]
            if filled:
                statement = sql.SQL("SELECT {}").format(sql.SQL(" AND ").join(
                    sql.SQL("EXISTS (SELECT 1 FROM {})").format(table_ident(t)) for t in filled))
                cursor.execute(statement.as_string(cursor.connection))
                if not cursor.fetchone()[0]:
                    raise Conflict("Working populations of this run were emptied by a restart of the database "
                                   "server (they are not crash-safe): where a record went can no longer be told "
                                   "(counts and the log are kept).", code="lost")

    def row(self, population: Population, key: str) -> dict[str, Any] | None:
        """The population's row of `key` (its extra columns), or None; one query per table and key."""
        assert population.table is not None
        cache = (population.table, key)
        if cache not in self.rows:
            statement = sql.SQL("SELECT * FROM {} WHERE key = %s LIMIT 1").format(table_ident(population.table))
            with connection.cursor() as cursor:
                cursor.execute(statement.as_string(cursor.connection), [key])
                found = cursor.fetchone()
                names = [d.name for d in cursor.description]
            self.lookups += 1
            self.rows[cache] = None if found is None else {n: v for n, v in zip(names, found, strict=True)
                                                            if n != "key"}
        return self.rows[cache]

    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            from apps.schemas.query.catalog import Catalog

            self._catalog = Catalog.load(self.tenant)
        return self._catalog

    def schema(self, dimension: str | None) -> Any:
        try:
            return self.catalog.resolve(dimension or self.dimension)
        except NotFound:
            return None

    def record_exists(self, dimension: str, key: str) -> bool | None:
        schema = self.schema(dimension)
        if schema is None:
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM schemas_record WHERE tenant_id = %s AND schema_id = %s "
                           "AND key = %s)", [self.tenant.pk, schema.id, key])
            return bool(cursor.fetchone()[0])

    # The walk ----------------------------------------------------------------------------------

    def run(self) -> list[NodeWhy]:
        return [self.node(nid) for nid in _flow_order(self.graph)]

    def node(self, nid: str) -> NodeWhy:
        node_type = self.graph.type(nid)
        label = self.graph.nodes[nid].get("label") or _label(node_type)
        state = self.states.get(nid)
        status = state.status if state else NodeStatus.PENDING
        result = NodeWhy(node=nid, type=node_type, label=str(label), node_status=status)
        for port in self.outputs(nid):
            self.followed[(nid, port)] = None
        if status != NodeStatus.DONE:
            result.reason = _not_done(status, state)
            return result

        # What arrived: the record-carrying populations on active incoming transitions.
        arrivals: list[tuple[str, Population, str | None]] = []  # (source, population, key there)
        absent: set[str] = set()  # sources already known not to hold the record: no lookup
        for edge in self.graph.incoming.get(nid, []):
            population = self.outputs(edge.source).get(edge.port)
            if population is not None and not population.is_token:
                arrivals.append((edge.source, population, self.followed.get((edge.source, edge.port))))
                if (edge.source, edge.port) in self.absent:
                    absent.add(edge.source)
        known = [(src, p, k) for src, p, k in arrivals if k is not None]
        holding = [src for src, p, k in known if src not in absent and self.row(p, k) is not None]
        in_key = next((k for src, p, k in known if src in holding), known[0][2] if known else None)
        in_dimension = next((p.dimension for src, p, k in known if k == in_key), None)
        result.key, result.dimension = in_key, in_dimension
        if arrivals and not holding and (known or len(absent) == len({src for src, _, _ in arrivals})):
            sources = ", ".join(sorted({src for src, _, _ in arrivals}))
            result.reason = f"Not in the population that arrived here (from {sources})."
            self.absent.update((nid, port) for port in self.outputs(nid))
            return result

        # What left, port by port, under the key the record has in each output.
        outputs = self.outputs(nid)
        left: list[str] = []
        looked = False
        followed_note = ""
        lost_by_link = False  # Change dimension: the link reaches no record of the output
        for port, population in outputs.items():
            if population.is_token:
                continue
            out_key: str | None
            if node_type == "change_dimension" and in_key is not None:
                out_key, followed_note, reached = self.change_dimension(nid, population, in_key, in_dimension)
                lost_by_link = reached == 0
            elif in_key is not None and population.dimension == in_dimension:
                out_key = in_key
            elif population.dimension == self.dimension and (not arrivals or not known):
                out_key = self.key  # a population of the campaign's dimension starts (or is reconciled) here
            else:
                out_key = None
            self.followed[(nid, port)] = out_key
            if out_key is None:
                continue
            looked = True
            row = self.row(population, out_key)
            if row is None:
                self.absent.add((nid, port))
            else:
                left.append(port)
                if row:
                    result.details.setdefault("columns", {})[port] = row
                if result.key is None:
                    result.key, result.dimension = out_key, population.dimension
        result.ports = left
        result.details["record_seen"] = bool(holding or left)
        if holding and len(arrivals) > 1:
            result.details["arrived_from"] = holding

        record_outputs = [p for p in outputs.values() if not p.is_token]
        if not arrivals and not record_outputs:
            result.status = PASSED
            result.reason = "Flow signal only: no records travel here yet."
            result.details.pop("record_seen")
            return result
        if arrivals and not known:
            if left:  # a population of the campaign's dimension was made here from rows of another
                result.status = PASSED if any(p not in SIDE_PORTS for p in left) else DROPPED
                result.reason = (f"The population becomes records of {self.dimension} here, and this record is "
                                 f"among them (left through {', '.join(left)}).")
                return result
            if looked:
                result.reason = ("Not in this activity's output; what arrived holds rows of "
                                 f"{_dims(arrivals)}, which the key cannot be followed into.")
                return result
            result.status = UNKNOWN
            result.reason = self.lost_reason(arrivals)
            return result
        if lost_by_link:
            result.status = DROPPED
            result.reason = followed_note
            self.absent.update((nid, port) for port in outputs)
            return result
        if not looked and record_outputs:
            result.status = UNKNOWN
            result.reason = followed_note or (f"This activity's output holds rows of {_dims_of(record_outputs)}, "
                                              f"not records of {self.dimension}.")
            return result

        main = [p for p in left if p not in SIDE_PORTS]
        if main:
            result.status = PASSED
            result.reason = self.passed_reason(nid, node_type, result, main, followed_note)
        elif not outputs and not self.graph.outgoing.get(nid) and holding:
            result.status = PASSED
            result.reason = "End of the flow."
        else:
            result.status = DROPPED
            result.reason = self.dropped_reason(nid, node_type, result, arrivals, holding, followed_note)
        if _is_channel(node_type) and holding:
            self.channel(nid, result, arrivals)
        return result

    def lost_reason(self, arrivals: list[tuple[str, Population, str | None]]) -> str:
        sources = sorted({src for src, _, _ in arrivals})
        for source in sources:
            for key, note in self.notes.items():
                if key[0] == source:
                    return f"The record cannot be followed here: {note}"
        return (f"What arrives here holds rows of {_dims(arrivals)}, not records of {self.dimension}: "
                "the record cannot be followed into it.")

    # Reasons -----------------------------------------------------------------------------------

    def passed_reason(self, nid: str, node_type: str, result: NodeWhy, ports: list[str], note: str) -> str:
        config = self.graph.config(nid)
        if node_type == "split":
            labels = {s.get("code"): s.get("label") or s.get("code") for s in config.get("subsets", [])}
            if config.get("holdout"):
                labels[config["holdout"].get("code", "holdout")] = "holdout"
            names = [labels.get(p, p) for p in ports]
            if config.get("single_output"):
                row = result.details.get("columns", {}).get("out") or {}
                code = row.get(config.get("segment_column") or "segment_code")
                return f"In subset {labels.get(code, code)}." if code else "In a subset."
            return f"In subset {', '.join(names)}."
        if node_type == "change_dimension":
            return note
        if _is_channel(node_type):
            return "Sent." if not self.run_row.is_test else "Would be sent (test mode: nothing is sent)."
        return f"Left through {', '.join(ports)}."

    def dropped_reason(self, nid: str, node_type: str, result: NodeWhy,
                       arrivals: list[tuple[str, Population, str | None]], holding: list[str], note: str) -> str:
        config = self.graph.config(nid)
        state = self.states[nid]
        side = [p for p in result.ports if p in SIDE_PORTS]
        if node_type == "build_audience":
            dimension = config.get("dimension") or self.dimension
            exists = self.record_exists(dimension, self.key)
            result.details["record_exists"] = exists
            if exists is False:
                return f"No record of {dimension} has the key {self.key!r}."
            if config.get("audience") is not None:
                return (f"Not selected: not a member of the saved audience {config['audience']}"
                        + (", or not matching the filter." if config.get("filter") else "."))
            if (state.summary or {}).get("skipped"):
                return "Nothing was selected: the branch was skipped."
            return "Not selected: the record does not match the audience's filter."
        if node_type == "dedup":
            kept = self.dedup_kept(nid, arrivals, result.key)
            fields = ", ".join(config.get("fields", []))
            if kept:
                result.details["kept"] = kept
                return (f"Removed as a duplicate: {', '.join(kept)} (same {fields}) was kept instead"
                        + ("; it went to the complement." if side else "."))
            return f"Removed as a duplicate (same {fields} as a record that was kept)" + (
                "; it went to the complement." if side else ".")
        if node_type == "split":
            if "complement" in side:
                return "In no subset: it went to the complement."
            return "In no subset (the split has no complement output): it goes no further."
        if node_type == "combine":
            operation = config.get("operation")
            sources = sorted({src for src, _, _ in arrivals})
            if operation == "exclusion":
                primary = config.get("primary") or (self.graph.incoming[nid][0].source
                                                   if self.graph.incoming.get(nid) else None)
                if primary not in holding:
                    return (f"Not in the primary input ({primary}): an exclusion keeps only the primary's "
                            "records.")
                others = [s for s in holding if s != primary]
                match = f" on {', '.join(config['match_on'])}" if config.get("match_on") else ""
                where = f"it is also in the population from {', '.join(others)}" if others else (
                    f"it matches a record of {', '.join(s for s in sources if s != primary)}{match}")
                return f"Excluded: {where}" + ("; it went to the complement." if side else ".")
            if operation == "intersection":
                missing = [s for s in sources if s not in holding]
                return (f"Not in every input: missing from {', '.join(missing)}" if missing else
                        "Not matched in every input") + ("; it went to the complement." if side else ".")
        if node_type == "change_dimension":
            return note
        if _is_channel(node_type):
            return "Not sent."  # the ledger's reason is filled in by `channel`
        if node_type == "approval" and "rejected" in side:
            return "The approval was rejected: it went on through rejected."
        if side:
            return f"Left through {', '.join(side)} only."
        summary = state.summary or {}
        if summary.get("approved") is False:
            return "Not approved: nothing went on."
        return "Not in any output of this activity."

    # Activities that need more than a key lookup -------------------------------------------------

    def dedup_kept(self, nid: str, arrivals: list[tuple[str, Population, str | None]], key: str | None) -> list[str]:
        """The records kept in the removed record's group (their fields read as the data stands now)."""
        out = self.outputs(nid).get("out")
        if out is None or key is None or not arrivals:
            return []
        from apps.activities.targeting import source, value, value_type, with_records

        config = self.graph.config(nid)
        population = arrivals[0][1]
        ctx = SimpleNamespace(tenant=self.tenant, dimension=self.dimension)
        tests: list[sql.Composable] = []
        reads_mine = reads_theirs = False
        try:
            for name in config.get("fields", []):
                mine, reads = value(ctx, population, name, table="p", record="r")
                reads_mine = reads_mine or reads
                theirs, reads = value(ctx, out, name, table="o", record="kr")
                reads_theirs = reads_theirs or reads
                if config.get("ignore_case") and value_type(ctx, population, name) == "text":
                    mine = sql.SQL("lower(btrim({}))").format(mine)
                    theirs = sql.SQL("lower(btrim({}))").format(theirs)
                tests.append(sql.SQL("{} = {}").format(theirs, mine))
        except Exception:  # a field that no longer exists: no kept record to show
            return []
        if not tests:
            return []
        mine_from = with_records(ctx, population, table="p", record="r") if reads_mine else Compiled(
            source(population, table="p"), [])
        theirs_from = with_records(ctx, out, table="o", record="kr") if reads_theirs else Compiled(
            source(out, table="o"), [])
        # The removed record's row (one) against the kept rows: a scan of the kept population.
        statement = compose("SELECT DISTINCT o.key FROM {} CROSS JOIN {} WHERE p.key = {} AND o.key <> p.key AND {} "
                            "ORDER BY o.key LIMIT 5", mine_from, theirs_from,
                            Compiled(sql.Placeholder(), [key]), sql.SQL(" AND ").join(tests))
        with connection.cursor() as cursor:
            cursor.execute(statement.sql.as_string(cursor.connection), statement.params)
            self.lookups += 1
            return [row[0] for row in cursor.fetchall()]

    def change_dimension(self, nid: str, population: Population, in_key: str,
                         in_dimension: str | None) -> tuple[str | None, str, int | None]:
        """(the key to follow in the output, what to say, how many records of the output the
        key's link reaches now, None when unknown); followed when exactly one."""
        target = population.dimension
        link_name = (self.states[nid].summary or {}).get("link") or self.graph.config(nid).get("link")
        source = self.schema(in_dimension)
        link = source.links.get(link_name) if source is not None and link_name else None
        target_schema = self.schema(target)
        if link is None or target_schema is None:
            note = (f"The dimension changes here to {target}, through a link that no longer exists: the record "
                    "cannot be followed further.")
            self.notes[(nid, "out")] = note
            return None, note, None
        from apps.schemas.query.compiler import link_join

        outer, inner = link_join(source, "r", link.source_field, target_schema, "d", link.target_field)
        statement = sql.SQL(
            "SELECT o.key FROM {table} o WHERE o.key IN (SELECT d.key FROM schemas_record r JOIN schemas_record d "
            "ON d.tenant_id = r.tenant_id AND d.schema_id = %s AND {inner} = {outer} "
            "WHERE r.tenant_id = %s AND r.schema_id = %s AND r.key = %s) ORDER BY o.key LIMIT %s"
        ).format(table=table_ident(population.table or ""), inner=inner, outer=outer)
        with connection.cursor() as cursor:
            cursor.execute(statement.as_string(cursor.connection),
                           [target_schema.id, self.tenant.pk, source.id, in_key, MAX_FOLLOWED + 1])
            keys = [row[0] for row in cursor.fetchall()]
        self.lookups += 1
        if len(keys) == 1:
            return keys[0], (f"Dimension changed to {target} through the link {link.name}; following the key "
                             f"{keys[0]!r} (as the data stands now)."), 1
        if not keys:
            note = (f"The link {link.name} reaches no record of {target} that is in the output (as the data stands "
                    "now): the record drops out here.")
            return None, note, 0
        shown = ", ".join(repr(k) for k in keys[:MAX_FOLLOWED]) + (", …" if len(keys) > MAX_FOLLOWED else "")
        note = (f"Dimension changed to {target} through the link {link.name}: the record became several records "
                f"({shown}); ask again with one of these keys of {target} to follow it further.")
        self.notes[(nid, "out")] = note
        return None, note, len(keys)

    def channel(self, nid: str, result: NodeWhy, arrivals: list[tuple[str, Population, str | None]]) -> None:
        """The message ledger's word on the record (live), or its classification now (test mode)."""
        key = result.key or self.key
        if self.run_row.is_test:
            self.channel_test(nid, result, arrivals, key)
            return
        from apps.channels.models import ExclusionReason, Message

        message = (Message.objects.filter(delivery__run=self.run_row, delivery__node_id=nid, recipient_key=key)
                   .values("status", "reason", "error", "address", "sent_at", "queued_at").first())
        self.lookups += 1
        if message is None:
            if (self.states[nid].summary or {}).get("approved") is False:
                result.reason = "Not approved: nothing was sent."
            return
        result.details["message"] = message
        if message["status"] == "sent":
            result.reason = "Sent" + (f" to {message['address']}" if message["address"] else "") + "."
        elif message["status"] == "excluded":
            reason = message["reason"]
            label = ExclusionReason(reason).label if reason in ExclusionReason.values else reason
            result.reason = f"Excluded: {label}."
            result.details["exclusion_reason"] = reason
        elif message["status"] == "failed":
            result.reason = f"Failed: {message['error'] or 'the provider refused it'}."
        elif message["status"] == "cancelled":
            result.reason = "Cancelled before it was sent (the run was stopped)."
        else:
            result.reason = f"Message {message['status']}."

    def channel_test(self, nid: str, result: NodeWhy, arrivals: list[tuple[str, Population, str | None]],
                     key: str) -> None:
        """A test run keeps no ledger: classify the record again, as the data stands now."""
        from apps.channels import sending
        from apps.channels.models import ExclusionReason
        from apps.schemas.models import DataSchema

        activity = registry.get(result.type)
        population = arrivals[0][1]
        schema = DataSchema.objects.filter(name=population.dimension or self.dimension).first()
        channel = getattr(activity, "channel", "")
        if schema is None or not channel:
            return
        config = self.graph.config(nid)
        # Classified as the test run it explains did (same seed: same pressure-cap tie-breaks).
        classified, params = sending.classified(tenant=self.tenant, schema=schema, population=population,
                                                channel=channel, config=config)
        statement = sql.SQL("SELECT x.status, x.reason FROM ({}) x WHERE x.key = %s").format(classified)
        with connection.cursor() as cursor:
            cursor.execute(statement.as_string(cursor.connection), [*params, key])
            found = cursor.fetchone()
        self.lookups += 1
        if found is None:
            return
        status, reason = found
        if status == "excluded":
            label = ExclusionReason(reason).label if reason in ExclusionReason.values else reason
            result.reason = f"Would be excluded: {label} (test mode; as the data stands now)."
            result.details["exclusion_reason"] = reason


def _is_channel(node_type: str) -> bool:
    try:
        return bool(registry.get(node_type).is_channel)
    except registry.UnknownActivity:
        return False


def _label(node_type: str) -> str:
    try:
        return registry.get(node_type).label or node_type.replace("_", " ").title()
    except registry.UnknownActivity:
        return node_type


def _not_done(status: str, state: NodeState | None) -> str:
    if status == NodeStatus.SKIPPED:
        return "The activity was skipped: no active transition reached it (another branch was taken)."
    if status == NodeStatus.FAILED:
        return f"The activity failed: {state.error}" if state and state.error else "The activity failed."
    if status == NodeStatus.CANCELLED:
        return "The activity was cancelled (the run failed or was stopped)."
    return f"Not reached yet: {_WAITING_TEXT.get(status, status)}."


def _dims(arrivals: list[tuple[str, Population, str | None]]) -> str:
    return _dims_of([p for _, p, _ in arrivals])


def _dims_of(populations: list[Population]) -> str:
    return ", ".join(sorted({p.dimension or "unknown" for p in populations}))

