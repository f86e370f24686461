"""Where to draw a campaign graph: nodes in columns by longest-path layer (left to right), edges
as cubic curves between them. A pure function of node ids and edges, so it is unit-tested and the
template only prints coordinates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NODE_WIDTH = 168
NODE_HEIGHT = 60
COLUMN_GAP = 96
ROW_GAP = 32
MARGIN = 24


@dataclass(frozen=True)
class NodeBox:
    id: str
    layer: int
    row: int
    x: int
    y: int
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT

    @property
    def cx(self) -> int:
        return self.x + self.width // 2


@dataclass(frozen=True)
class EdgePath:
    index: int  # position in the graph's `edges` list (the transition's index)
    source: str
    port: str
    target: str
    d: str  # SVG path data
    label_x: int
    label_y: int
    backward: bool  # drawn right to left (only in a graph with a cycle)


@dataclass(frozen=True)
class Layout:
    nodes: dict[str, NodeBox]
    edges: list[EdgePath]
    width: int
    height: int


def layers(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: a node's layer is the length of the longest path reaching it from
    a node without inputs. Edges to unknown nodes and self-loops are ignored; nodes on a cycle
    (an invalid draft) are placed one layer after their already placed predecessors."""
    known = set(node_ids)
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    indegree = {n: 0 for n in node_ids}
    for source, target in edges:
        if source in known and target in known and source != target:
            preds[target].append(source)
            succs[source].append(target)
            indegree[target] += 1
    layer: dict[str, int] = {}
    ready = [n for n in node_ids if indegree[n] == 0]
    placed: list[str] = []
    while True:
        while ready:
            node = ready.pop(0)
            layer[node] = max((layer[p] + 1 for p in preds[node] if p in layer), default=0)
            placed.append(node)
            for nxt in succs[node]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        rest = [n for n in node_ids if n not in layer]
        if not rest:
            return layer
        # A cycle: break it at the first remaining node (in the graph's order).
        ready.append(rest[0])
        indegree[rest[0]] = 0


def layout(node_ids: Sequence[str], edges: Sequence[tuple[str, str, str]]) -> Layout:
    """Positions for `node_ids` (in the graph's order) and `edges` as (source, port, target)."""
    node_layer = layers(node_ids, [(s, t) for s, _p, t in edges])
    columns: dict[int, list[str]] = defaultdict(list)
    for node in node_ids:
        columns[node_layer[node]].append(node)
    # Order each column by the mean row of its predecessors, to limit crossings.
    rows: dict[str, float] = {}
    preds: dict[str, list[str]] = defaultdict(list)
    for s, _p, t in edges:
        if s in node_layer and t in node_layer and s != t:
            preds[t].append(s)
    for index in sorted(columns):
        column = columns[index]
        original = {n: i for i, n in enumerate(column)}

        def key(n: str, original: dict[str, int] = original) -> tuple[float, int]:
            placed = [rows[p] for p in preds[n] if p in rows]
            return (sum(placed) / len(placed) if placed else float(original[n]), original[n])

        column.sort(key=key)
        for row, node in enumerate(column):
            rows[node] = row
    tallest = max((len(c) for c in columns.values()), default=0)
    full_height = tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    boxes: dict[str, NodeBox] = {}
    for index, column in columns.items():
        height = len(column) * NODE_HEIGHT + (len(column) - 1) * ROW_GAP
        top = MARGIN + (full_height - height) // 2
        for row, node in enumerate(column):
            boxes[node] = NodeBox(id=node, layer=index, row=row,
                                  x=MARGIN + index * (NODE_WIDTH + COLUMN_GAP),
                                  y=top + row * (NODE_HEIGHT + ROW_GAP))
    paths = []
    for index, (source, port, target) in enumerate(edges):
        a, b = boxes.get(source), boxes.get(target)
        if a is None or b is None:
            continue
        x1, y1 = a.x + a.width, a.y + a.height // 2
        x2, y2 = b.x, b.y + b.height // 2
        backward = x2 <= x1
        if backward:  # loop under the boxes, right to left
            low = max(a.y + a.height, b.y + b.height) + ROW_GAP
            d = f"M{x1},{y1} C{x1 + 48},{y1} {x1 + 48},{low} {(x1 + x2) // 2},{low} " \
                f"S{x2 - 48},{y2} {x2},{y2}"
            lx, ly = (x1 + x2) // 2, low
        else:
            bend = max((x2 - x1) // 2, 24)
            d = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
            lx, ly = (x1 + x2) // 2, (y1 + y2) // 2
        paths.append(EdgePath(index=index, source=source, port=port, target=target, d=d,
                              label_x=lx, label_y=ly, backward=backward))
    n_layers = (max(node_layer.values()) + 1) if node_layer else 0
    width = 2 * MARGIN + n_layers * NODE_WIDTH + max(n_layers - 1, 0) * COLUMN_GAP
    height = 2 * MARGIN + full_height + (NODE_HEIGHT if any(p.backward for p in paths) else 0)
    return Layout(nodes=boxes, edges=paths, width=max(width, 2 * MARGIN + NODE_WIDTH),
                  height=max(height, 2 * MARGIN + NODE_HEIGHT))
