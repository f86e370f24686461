// The canvas's node (an activity with its ports, status and problems) and edge (a transition,
// with its count while a run is shown).
import { memo, useEffect } from "react";
import { BaseEdge, EdgeLabelRenderer, Handle, Position, getBezierPath, useUpdateNodeInternals } from "@xyflow/react";

// Node status -> (text, glyph): colour is never the only carrier of the status.
export const NODE_STATUS = {
  pending: ["Pending", "○"], ready: ["Ready", "◔"], running: ["Running", "▶"], waiting: ["Waiting", "‖"],
  done: ["Done", "✓"], skipped: ["Skipped", "↷"], failed: ["Failed", "✕"], cancelled: ["Cancelled", "⊘"],
};

export const GROUP_LABELS = {
  flow: "Flow", targeting: "Targeting", data: "Data", channels: "Channels", approvals: "Approvals",
};

export function statusText(status) {
  const [label, glyph] = NODE_STATUS[status] || [status, "•"];
  return `${glyph} ${label}`;
}

function fmt(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en");
}

export const ActivityNode = memo(function ActivityNode({ id, data, selected }) {
  const updateInternals = useUpdateNodeInternals();
  const ports = data.ports || [];
  const portKey = ports.join("|") + "#" + (data.unknownPorts || []).join("|");
  useEffect(() => { updateInternals(id); }, [portKey, id, updateInternals]);
  const state = data.state;
  const status = state ? state.status : null;
  const problems = data.problems || [];
  return (
    <div className={["cv-node", `cv-node--${data.group}`, status ? `cv-node--${status}` : "",
      problems.length ? "cv-node--invalid" : "", selected ? "is-selected" : ""].join(" ")}
      data-node-id={id} data-type={data.atype}>
      {data.hasInput ? <Handle type="target" position={Position.Left} id="in" className="cv-handle cv-handle--in"
        aria-label={`Input of ${id}`} /> : null}
      <div className="cv-node__head">
        <span className="cv-node__group">{GROUP_LABELS[data.group] || data.group}</span>
        <span className="cv-node__label">{data.label}</span>
      </div>
      <div className="cv-node__id">{id}</div>
      {data.summary ? <div className="cv-node__summary">{data.summary}</div> : null}
      {state ? (
        <div className="cv-node__status" data-status={status}>
          <span className="cv-node__status-text">{statusText(status)}</span>
          <span className="cv-node__counts">in {fmt(state.count_in)} · out {fmt(state.count_out)}</span>
        </div>
      ) : null}
      {state && state.error ? <div className="cv-node__error" role="note">✕ {state.error}</div> : null}
      {problems.length ? (
        <div className="cv-node__problems" data-testid="node-problems">
          <span aria-hidden="true" className="cv-node__mark">!</span>
          {problems.length === 1 ? problems[0].message : `${problems.length} problems: ${problems[0].message}`}
        </div>
      ) : null}
      {ports.length || (data.unknownPorts || []).length ? (
        <div className="cv-node__ports">
          {ports.map((port) => (
            <div className="cv-port" key={port}>
              <span className="cv-port__name">{port}</span>
              <Handle type="source" position={Position.Right} id={port} className="cv-handle cv-handle--out"
                aria-label={`Output ${port} of ${id}`} data-port={port} />
            </div>
          ))}
          {(data.unknownPorts || []).map((port) => (
            <div className="cv-port cv-port--unknown" key={"x-" + port} title="This port no longer exists">
              <span className="cv-port__name">{port} (no such port)</span>
              <Handle type="source" position={Position.Right} id={port} className="cv-handle cv-handle--out"
                isConnectable={false} data-port={port} />
            </div>
          ))}
        </div>
      ) : null}
    </div>
  );
});

export function FlowEdge({ id, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition, data, markerEnd,
  selected }) {
  const [path, labelX, labelY] = getBezierPath({ sourceX, sourceY, sourcePosition, targetX, targetY, targetPosition });
  const showCount = data && data.monitor;
  const className = ["cv-edge", data && data.active ? "cv-edge--active" : "", selected ? "is-selected" : ""].join(" ");
  return (
    <>
      <BaseEdge id={id} path={path} markerEnd={markerEnd} className={className} interactionWidth={16} />
      {showCount ? (
        <EdgeLabelRenderer>
          <button type="button" className={"cv-edge-label nodrag nopan" + (data.active ? " is-active" : "")}
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}
            data-edge-index={data.index} data-count={data.count === null || data.count === undefined ? "" : data.count}
            aria-label={`Population of ${data.from} ${data.port} to ${data.to}: ${data.count === null || data.count === undefined ? "not reached" : `${data.count} records`}`}
            title={data.previous !== undefined && data.previous !== null ? `Last run: ${fmt(data.previous)}` : undefined}
            onClick={(e) => { e.stopPropagation(); data.onOpen(data.index); }}>
            {fmt(data.count)}
          </button>
        </EdgeLabelRenderer>
      ) : null}
    </>
  );
}
