"""The campaign graph (DESIGN §5): `nodes` (`id`, `type`, `config`, `position`) and `edges`
(`from`, `port`, `to`). `validate_graph` returns every problem, each with its node."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from apps.activities import registry
from apps.activities.base import Activity, Problem, Shape, ValidationContext

NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_MAX_ACTIVITIES = 500
DEFAULT_MAX_CHANNELS = 10


@dataclass(frozen=True)
class Edge:
    source: str
    port: str
    target: str


class Graph:
    """A parsed graph; only built from a graph that passed `validate_structure`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.nodes: dict[str, dict[str, Any]] = {n["id"]: n for n in data.get("nodes", [])}
        self.edges = [Edge(e["from"], e.get("port") or "out", e["to"]) for e in data.get("edges", [])]
        self.incoming: dict[str, list[Edge]] = defaultdict(list)
        self.outgoing: dict[str, list[Edge]] = defaultdict(list)
        for edge in self.edges:
            self.incoming[edge.target].append(edge)
            self.outgoing[edge.source].append(edge)

    def config(self, node_id: str) -> dict[str, Any]:
        return self.nodes[node_id].get("config") or {}

    def type(self, node_id: str) -> str:
        return self.nodes[node_id]["type"]


def validate_structure(data: Any) -> list[Problem]:
    if not isinstance(data, dict):
        return [Problem("The graph must be an object with `nodes` and `edges`.", path="graph")]
    problems: list[Problem] = []
    nodes = data.get("nodes", [])
    edges = data.get("edges", [])
    if not isinstance(nodes, list):
        return [Problem("`nodes` must be a list.", path="nodes")]
    if not isinstance(edges, list):
        return [Problem("`edges` must be a list.", path="edges")]
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        path = f"nodes[{index}]"
        if not isinstance(node, dict):
            problems.append(Problem("A node must be an object.", path=path))
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            problems.append(Problem("A node id is 1-64 letters, digits, - or _.", path=f"{path}.id"))
            continue
        if node_id in seen:
            problems.append(Problem(f"Duplicate node id {node_id!r}.", node=node_id, path=f"{path}.id"))
        seen.add(node_id)
        if not isinstance(node.get("type"), str) or not registry.exists(node["type"]):
            problems.append(Problem(f"Unknown activity type {node.get('type')!r}.", node=node_id, path=f"{path}.type"))
        if "config" in node and not isinstance(node["config"], dict):
            problems.append(Problem("`config` must be an object.", node=node_id, path=f"{path}.config"))
    for index, edge in enumerate(edges):
        path = f"edges[{index}]"
        if not isinstance(edge, dict) or not isinstance(edge.get("from"), str) or not isinstance(edge.get("to"), str):
            problems.append(Problem("An edge is an object with `from`, `port` and `to`.", path=path))
            continue
        for end in ("from", "to"):
            if edge[end] not in seen:
                problems.append(Problem(f"Edge {end} unknown node {edge[end]!r}.", path=f"{path}.{end}"))
        if "port" in edge and not isinstance(edge["port"], str):
            problems.append(Problem("`port` must be a string.", path=f"{path}.port"))
    return problems


def validate_graph(data: Any, ctx: ValidationContext, *, max_activities: int = DEFAULT_MAX_ACTIVITIES,
                   max_channels: int = DEFAULT_MAX_CHANNELS) -> list[Problem]:
    """Every problem of the graph: structure, types, configs (against the tenant's schemas),
    ports, a single start, reachability, no cycles, inputs of joins, guardrails."""
    problems = validate_structure(data)
    if problems:
        return problems
    graph = Graph(data)
    if not graph.nodes:
        return [Problem("The graph has no activities.", path="nodes")]
    if len(graph.nodes) > max_activities:
        problems.append(Problem(f"At most {max_activities} activities per campaign.", path="nodes"))
    activities = {nid: registry.get(graph.type(nid)) for nid in graph.nodes}
    channels = sum(1 for a in activities.values() if a.is_channel)
    if channels > max_channels:
        problems.append(Problem(f"At most {max_channels} channel activities per campaign.", path="nodes"))

    problems += _check_configs(graph, activities, ctx)

    for index, edge in enumerate(graph.edges):
        ports = activities[edge.source].output_ports(graph.config(edge.source)) if not [
            p for p in problems if p.node == edge.source and p.path.startswith("config")] else None
        if ports is not None and edge.port not in ports:
            problems.append(Problem(f"{edge.source!r} has no output port {edge.port!r} (ports: {', '.join(ports)}).",
                                    node=edge.source, path=f"edges[{index}].port"))
        if not activities[edge.target].inputs:
            problems.append(Problem(f"{edge.target!r} takes no input.", node=edge.target, path=f"edges[{index}].to"))
    for nid, activity in activities.items():
        n_in = len(graph.incoming.get(nid, []))
        if activity.is_start and n_in:
            problems.append(Problem("A start activity cannot have incoming transitions.", node=nid))
        if not activity.is_start and n_in < activity.min_inputs:
            problems.append(Problem(f"Needs at least {activity.min_inputs} incoming transition(s).", node=nid))
        if activity.max_inputs is not None and n_in > activity.max_inputs:
            problems.append(Problem(f"Takes at most {activity.max_inputs} incoming transition(s).", node=nid))
    starts = [nid for nid, a in activities.items() if a.is_start]
    if len(starts) != 1:
        problems.append(Problem(f"A campaign needs exactly one start activity (found {len(starts)}).", path="nodes"))
    else:
        reachable = _reachable(graph, starts[0])
        for nid in graph.nodes:
            if nid not in reachable:
                problems.append(Problem("Not reachable from the start activity.", node=nid))
    cycle = _find_cycle(graph)
    if cycle:
        problems.append(Problem(f"The graph has a cycle: {' → '.join(cycle)}.", node=cycle[0]))
    return problems


def node_inputs(data: dict[str, Any], ctx: ValidationContext) -> dict[str, list[Shape] | None]:
    """What arrives on each node's incoming transitions (None where it cannot be known), for a
    graph that passed `validate_structure`."""
    graph = Graph(data)
    inputs: dict[str, list[Shape] | None] = {}
    _check_configs(graph, {nid: registry.get(graph.type(nid)) for nid in graph.nodes}, ctx, inputs)
    return inputs


def _check_configs(graph: Graph, activities: dict[str, Activity], ctx: ValidationContext,
                   seen_inputs: dict[str, list[Shape] | None] | None = None) -> list[Problem]:
    """Check every node's config, in flow order, telling each node what arrives on its incoming
    transitions (dimension and columns) as computed from the nodes upstream; a node downstream of
    an invalid node, or in a graph with a cycle, is checked without knowing its inputs."""
    problems: list[Problem] = []
    order = _flow_order(graph)
    shapes: dict[tuple[str, str], Shape] = {}
    for nid in order or list(graph.nodes):
        activity, config = activities[nid], graph.config(nid)
        incoming = graph.incoming.get(nid, [])
        known = order is not None and all((e.source, e.port) in shapes for e in incoming)
        ctx.node_id = nid
        ctx.inputs = [shapes[(e.source, e.port)] for e in incoming] if known else None
        ctx.input_sources = [e.source for e in incoming]
        if seen_inputs is not None:
            seen_inputs[nid] = ctx.inputs
        found = activity.check_config(config, ctx)
        problems += found
        if not found and ctx.inputs is not None:
            for port, shape in activity.output_shapes(config, ctx.inputs, ctx).items():
                shapes[(nid, port)] = shape
    ctx.node_id, ctx.inputs, ctx.input_sources = "", None, []
    return problems


def _flow_order(graph: Graph) -> list[str] | None:
    """The nodes in an order where each comes after all its sources (None if there is a cycle)."""
    pending = {nid: len(graph.incoming.get(nid, [])) for nid in graph.nodes}
    ready = [nid for nid, n in pending.items() if n == 0]
    order: list[str] = []
    while ready:
        nid = ready.pop()
        order.append(nid)
        for edge in graph.outgoing.get(nid, []):
            pending[edge.target] -= 1
            if pending[edge.target] == 0:
                ready.append(edge.target)
    return order if len(order) == len(graph.nodes) else None


def _reachable(graph: Graph, start: str) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for edge in graph.outgoing.get(stack.pop(), []):
            if edge.target not in seen:
                seen.add(edge.target)
                stack.append(edge.target)
    return seen


def _find_cycle(graph: Graph) -> list[str] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph.nodes, white)
    parent: dict[str, str] = {}
    for root in graph.nodes:
        if color[root] != white:
            continue
        stack = [(root, iter(graph.outgoing.get(root, [])))]
        color[root] = grey
        while stack:
            node, children = stack[-1]
            edge = next(children, None)
            if edge is None:
                color[node] = black
                stack.pop()
                continue
            if color[edge.target] == grey:
                cycle, cur = [edge.target], node
                while cur != edge.target:
                    cycle.append(cur)
                    cur = parent[cur]
                return [*reversed(cycle), edge.target]
            if color[edge.target] == white:
                parent[edge.target] = node
                color[edge.target] = grey
                stack.append((edge.target, iter(graph.outgoing.get(edge.target, []))))
    return None
