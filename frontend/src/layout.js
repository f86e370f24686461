// Auto-layout: left to right by dagre, as the flow reads.
import dagre from "@dagrejs/dagre";

export const NODE_WIDTH = 200;

export function autoLayout(nodes, edges) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 60, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of nodes) {
    const height = (node.measured && node.measured.height) || 90;
    g.setNode(node.id, { width: NODE_WIDTH, height });
  }
  for (const edge of edges) {
    if (g.hasNode(edge.source) && g.hasNode(edge.target)) g.setEdge(edge.source, edge.target);
  }
  dagre.layout(g);
  return nodes.map((node) => {
    const placed = g.node(node.id);
    const height = (node.measured && node.measured.height) || 90;
    return { ...node, position: { x: Math.round(placed.x - NODE_WIDTH / 2), y: Math.round(placed.y - height / 2) } };
  });
}
