// The campaign canvas: design the draft (palette, drag, connect, configure, undo/redo, layout,
// save with the draft's revision, validate, publish) and test/monitor runs on the same canvas.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import {
  Background, Controls, MarkerType, MiniMap, ReactFlow, applyEdgeChanges, applyNodeChanges, useReactFlow,
} from "@xyflow/react";
import { errorProblems, results } from "./api.js";
import { autoLayout } from "./layout.js";
import { ActivityNode, FlowEdge, GROUP_LABELS, NODE_STATUS, statusText } from "./parts.jsx";
import { initialConfig, outputPorts } from "./ports.js";
import { loadFields } from "./FilterBuilder.jsx";
import { isLiquidPath } from "./LiquidEditor.jsx";
import { ObjectFields, normalizePath } from "./SchemaForm.jsx";

const GROUPS = ["flow", "targeting", "data", "channels", "approvals"];
const ACTIVE_RUN = ["queued", "running", "paused", "suspended"];
const nodeTypes = { activity: ActivityNode };
const edgeTypes = { flow: FlowEdge };
const defaultEdgeOptions = { type: "flow", markerEnd: { type: MarkerType.ArrowClosed, width: 18, height: 18 } };
const HISTORY_LIMIT = 200;

function isEditable(target) {
  if (!target || !target.closest) return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable=true]"));
}

function nodeSummary(type, config) {
  const c = config || {};
  if (type === "scheduler") return `Starts: ${c.mode || "asap"}`;
  if (type === "wait") return c.mode === "duration" && c.duration ? `Waits ${c.duration}` : c.mode || "";
  if (type === "split") return `${(c.subsets || []).length} subset(s)`;
  if (type === "build_audience") {
    if (c.audience) return `Audience #${c.audience}`;
    return c.filter && Object.keys(c.filter).length ? "Filtered" : c.filter ? "Every record" : "No filter yet";
  }
  return "";
}

/** Keeps the page's JSON editor (the no-JavaScript fallback) on the draft the canvas saved, so
 *  that saving there next is not refused as a conflict with the canvas's own save. */
function syncJsonEditor(version) {
  const form = document.querySelector("#json-editor form");
  if (!form) return;
  const text = form.querySelector("textarea[name=graph]");
  const revision = form.querySelector("input[name=revision]");
  if (text) text.value = JSON.stringify(version.graph, null, 2);
  if (revision) revision.value = String(version.revision);
}

/** React Flow nodes and edges from a stored graph ({nodes, edges}); positions laid out if missing. */
function fromGraph(graph, types) {
  const g = graph && typeof graph === "object" ? graph : {};
  const rawNodes = Array.isArray(g.nodes) ? g.nodes.filter((n) => n && typeof n.id === "string") : [];
  let missing = false;
  const nodes = rawNodes.map((n, index) => {
    const { id, type, config, position, ...extra } = n;
    const ok = position && typeof position.x === "number" && typeof position.y === "number";
    if (!ok) missing = true;
    return {
      id, type: "activity", position: ok ? { x: position.x, y: position.y } : { x: index * 260, y: 0 },
      data: { atype: type, config: config && typeof config === "object" ? config : {}, extra },
    };
  });
  const ids = new Set(nodes.map((n) => n.id));
  const edges = (Array.isArray(g.edges) ? g.edges : [])
    .map((e, index) => ({ e, index }))
    .filter(({ e }) => e && ids.has(e.from) && ids.has(e.to))
    .map(({ e, index }) => ({
      id: `t${index}`, source: e.from, sourceHandle: e.port || "out", target: e.to, targetHandle: "in", type: "flow",
      data: { index },
    }));
  return { nodes: missing && nodes.length ? autoLayout(nodes, edges) : nodes, edges, types };
}

function toGraph(nodes, edges, extra) {
  return {
    ...(extra || {}),
    nodes: nodes.map((n) => ({
      ...(n.data.extra || {}), id: n.id, type: n.data.atype, config: n.data.config || {},
      position: { x: Math.round(n.position.x), y: Math.round(n.position.y) },
    })),
    edges: edges.map((e) => ({ from: e.source, port: e.sourceHandle || "out", to: e.target })),
  };
}

function newNodeId(type, nodes) {
  const taken = new Set(nodes.map((n) => n.id));
  for (let i = 1; ; i++) {
    const id = `${type}_${i}`;
    if (!taken.has(id)) return id;
  }
}

function Message({ message, onReload, onClose }) {
  if (!message) return null;
  const kind = message.kind === "success" ? "success" : message.kind === "info" ? "info" : "error";
  return (
    <div className={`alert alert--${kind} cv-message`} role={kind === "error" ? "alert" : "status"}
      data-testid="canvas-message" data-kind={message.kind}>
      <div>
        <p>{message.text}</p>
        {message.kind === "conflict" ? (
          <p className="cv-message__actions">
            <button type="button" className="btn btn--secondary btn--sm" onClick={onReload}>Reload the saved draft</button>
            <span className="muted small"> (your unsaved changes are discarded; copy them from “Edit as JSON” first if you need them)</span>
          </p>
        ) : null}
      </div>
      <button type="button" className="btn btn--ghost btn--sm" aria-label="Dismiss the message" onClick={onClose}>✕</button>
    </div>
  );
}

function Palette({ types, onAdd }) {
  const byGroup = useMemo(() => {
    const groups = {};
    for (const t of Object.values(types)) (groups[t.group] = groups[t.group] || []).push(t);
    for (const list of Object.values(groups)) list.sort((a, b) => a.label.localeCompare(b.label));
    return groups;
  }, [types]);
  const ordered = [...GROUPS, ...Object.keys(byGroup).filter((g) => !GROUPS.includes(g))];
  return (
    <aside className="cv-palette" aria-label="Activities">
      <h3 className="cv-palette__title">Activities</h3>
      <p className="cv-palette__hint">Drag onto the canvas, or press Enter to add.</p>
      {ordered.filter((g) => byGroup[g]).map((group) => (
        <section key={group} className="cv-palette__group" aria-label={GROUP_LABELS[group] || group}>
          <h4>{GROUP_LABELS[group] || group}</h4>
          <ul>
            {byGroup[group].map((t) => (
              <li key={t.type}>
                <button type="button" draggable className={`cv-palette__item cv-palette__item--${group}`}
                  data-activity={t.type} title={t.description} aria-label={`Add ${t.label}`}
                  onDragStart={(e) => {
                    e.dataTransfer.setData("application/x-activity", t.type);
                    e.dataTransfer.effectAllowed = "move";
                  }}
                  onClick={() => onAdd(t.type)}>{t.label}</button>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </aside>
  );
}

function ProblemList({ problems, onPick }) {
  if (!problems.length) {
    return <p className="cv-valid" data-testid="canvas-valid">✓ No problems: the draft can be published.</p>;
  }
  return (
    <div className="cv-problems" data-testid="canvas-problems">
      <p><strong>! {problems.length} problem{problems.length === 1 ? "" : "s"}</strong></p>
      <ul>
        {problems.map((p, i) => (
          <li key={i}>
            {p.node ? <button type="button" className="cv-linklike" onClick={() => onPick(p.node)}>{p.node}</button> : null}
            {p.node ? ": " : ""}{p.message}{p.path ? <span className="muted small"> ({p.path})</span> : null}
          </li>
        ))}
      </ul>
    </div>
  );
}

const CHANNEL_OF = { email: "email", sms: "sms", push: "push", file_export: "file" };

/** The message of a channel activity rendered (Liquid) for a chosen record, by the channels API. */
function MessagePreview({ api, type, config, dimension }) {
  const [key, setKey] = useState("");
  const [answer, setAnswer] = useState(null);
  const channel = CHANNEL_OF[type];
  if (!channel) return null;
  const id = `preview-key-${type}`;
  async function preview() {
    setAnswer({ loading: true });
    try {
      const rendered = await api.post("channels/content/preview", {
        channel, content: (config && config.content) || {}, schema: dimension, key,
      });
      setAnswer({ rendered });
    } catch (error) {
      const details = Object.values(error.fields || {}).flat().map((x) => (typeof x === "string" ? x : x.message));
      setAnswer({ error: [error.message, ...details.filter((d) => d && d !== error.message)].join(" ") });
    }
  }
  return (
    <section className="cv-fieldset cv-preview" aria-labelledby={`${id}-title`} data-testid="message-preview">
      <h4 className="cv-panel__subtitle" id={`${id}-title`}>Preview for a {dimension} record</h4>
      <div className="cv-preview__ask">
        <label className="visually-hidden" htmlFor={id}>Key of the {dimension} record to preview with</label>
        <input id={id} type="text" placeholder={`${dimension} key`} value={key} onChange={(e) => setKey(e.target.value)}
          onKeyDown={(e) => { if (e.key === "Enter") { e.preventDefault(); if (key) preview(); } }} />
        <button type="button" className="btn btn--secondary btn--sm" disabled={!key} onClick={preview}>Preview</button>
      </div>
      {!answer ? null : answer.loading ? <p className="muted">Rendering…</p>
        : answer.error ? <p className="field__errors" role="alert">{answer.error}</p> : (
          <dl className="cv-preview__out" aria-live="polite">
            {Object.entries(answer.rendered).map(([name, value]) => (
              <div key={name}>
                <dt>{name}</dt>
                <dd>{name === "html" ? (
                  <iframe title="HTML part of the message" sandbox="" srcDoc={String(value)} className="cv-preview__html" />
                ) : <pre>{typeof value === "string" ? value : JSON.stringify(value, null, 2)}</pre>}</dd>
              </div>
            ))}
          </dl>
        )}
    </section>
  );
}

/** The node's outgoing transitions, with a keyboard way to add and remove them. */
function Connections({ node, ports, nodes, edges, types, onConnect, onRemoveEdge }) {
  const [picked, setPicked] = useState({});
  if (!ports.length) return null;
  const targets = nodes.filter((n) => n.id !== node.id && types[n.data.atype] && types[n.data.atype].inputs.length);
  return (
    <section className="cv-fieldset" aria-labelledby={`conn-${node.id}`} data-testid="connections">
      <h4 className="cv-panel__subtitle" id={`conn-${node.id}`}>Transitions from {node.id}</h4>
      {ports.map((port) => {
        const out = edges.filter((e) => e.source === node.id && (e.sourceHandle || "out") === port);
        const id = `conn-${node.id}-${port}`;
        return (
          <div key={port} className="cv-conn">
            <ul className="cv-conn__list">
              {out.map((e) => (
                <li key={e.id}><span>{port} → {e.target}</span>{" "}
                  <button type="button" className="btn btn--ghost btn--sm" aria-label={`Remove ${port} to ${e.target}`}
                    onClick={() => onRemoveEdge(e.id)}>✕</button></li>
              ))}
            </ul>
            <div className="cv-conn__add">
              <label htmlFor={id} className="small">Connect {port} to</label>
              <select id={id} value={picked[port] || ""} onChange={(ev) => setPicked({ ...picked, [port]: ev.target.value })}>
                <option value="">—</option>
                {targets.map((n) => <option key={n.id} value={n.id}>{n.id}</option>)}
              </select>
              <button type="button" className="btn btn--secondary btn--sm" disabled={!picked[port]}
                aria-label={`Connect ${port} of ${node.id}`}
                onClick={() => { onConnect({ source: node.id, sourceHandle: port, target: picked[port] });
                  setPicked({ ...picked, [port]: "" }); }}>Connect</button>
            </div>
          </div>
        );
      })}
    </section>
  );
}

/** The channels API's check of a channel activity's content (Liquid syntax with lines, filters,
 *  names against the schema's fields and the campaign's variables), 400 ms after the last edit. */
function useContentCheck(api, type, content, dimension, variables) {
  const channel = CHANNEL_OF[type];
  const [check, setCheck] = useState(null); // {problems} | {error}
  const [fields, setFields] = useState([]);
  const contentJson = JSON.stringify(content === undefined ? {} : content);
  const variableNames = (variables || []).map((v) => v && v.name).filter(Boolean);
  const variablesJson = JSON.stringify(variableNames);
  useEffect(() => {
    if (!channel) return undefined;
    let live = true;
    loadFields(api, dimension).then((list) => { if (live) setFields(list.map((f) => f.name)); }).catch(() => {});
    return () => { live = false; };
  }, [api, channel, dimension]);
  useEffect(() => {
    if (!channel) return undefined;
    let live = true;
    const timer = setTimeout(() => {
      api.post("channels/content/validate", { channel, content: JSON.parse(contentJson), schema: dimension,
        variables: variableNames })
        .then((answer) => { if (live) setCheck({ problems: answer.problems || [] }); })
        .catch((error) => { if (live) setCheck({ error: error.message }); });
    }, 400);
    return () => { live = false; clearTimeout(timer); };
  }, [api, channel, contentJson, dimension, variablesJson]); // eslint-disable-line
  const problemsAt = useCallback((path) => {
    const want = normalizePath(path);
    return ((check && check.problems) || []).filter((p) => p.path && `config.content.${normalizePath(p.path)}` === want);
  }, [check]);
  const names = useMemo(() => ({ fields, variables: variableNames }), [fields.join("|"), variablesJson]); // eslint-disable-line
  if (!channel) return null;
  return { check, problemsAt, names };
}

/** The result of the content check: what it found outside a template field (the message's
 *  shape), or that the templates are valid. */
function ContentCheck({ liquid }) {
  if (!liquid || !liquid.check) return null;
  const { check } = liquid;
  if (check.error) return <p className="field__errors" data-testid="content-check">The message cannot be checked: {check.error}</p>;
  if (!check.problems.length) {
    return <p className="cv-valid" data-testid="content-check">✓ The message's Liquid is valid.</p>;
  }
  const elsewhere = check.problems.filter((p) => !isLiquidPath(`config.content.${normalizePath(p.path)}`));
  return (
    <div className="field__errors" data-testid="content-check">
      <p>! {check.problems.length} problem{check.problems.length === 1 ? "" : "s"} in the message (shown at the fields)</p>
      {elsewhere.length ? (
        <ul>{elsewhere.map((p, i) => <li key={i}>{p.path ? `${p.path}: ` : ""}{p.line ? `line ${p.line}: ` : ""}
          {p.message}</li>)}</ul>) : null}
    </div>
  );
}

function ConfigPanel({ node, type, problems, ctx, readOnly, onChange, onDelete, graphParts }) {
  const nodeProblems = problems.filter((p) => p.node === node.id);
  const problemsAt = useCallback((path) => nodeProblems.filter((p) => normalizePath(p.path) === normalizePath(path)),
    [nodeProblems]);
  const dimension = (node.data.config && node.data.config.dimension) || ctx.dimension;
  const liquid = useContentCheck(ctx.api, node.data.atype, node.data.config && node.data.config.content, dimension,
    ctx.variables);
  if (!type) {
    return <div className="cv-panel__body"><p className="text-danger">Unknown activity type {node.data.atype}.</p></div>;
  }
  return (
    <div className="cv-panel__body" data-testid="config-panel">
      <h3 className="cv-panel__title">{type.label} <code>{node.id}</code></h3>
      <p className="field__help">{type.description}</p>
      {nodeProblems.length ? (
        <ul className="field__errors cv-panel__problems" aria-label={`Problems of ${node.id}`}>
          {nodeProblems.map((p, i) => <li key={i}>! {p.message}{p.path ? ` (${p.path})` : ""}</li>)}
        </ul>
      ) : null}
      <fieldset disabled={readOnly} className="cv-panel__form">
        <legend className="visually-hidden">Configuration of {node.id}</legend>
        <ObjectFields id={`cfg-${node.id}`} schema={type.config_schema} value={node.data.config} path="config"
          problemsAt={problemsAt}
          ctx={{ ...ctx, dimension, readOnly, liquid, nodeConfig: node.data.config,
            setNodeConfig: (config) => onChange(node.id, config || {}) }}
          onChange={(config) => onChange(node.id, config || {})} />
      </fieldset>
      <ContentCheck liquid={liquid} />
      <MessagePreview api={ctx.api} type={node.data.atype} config={node.data.config} dimension={dimension} />
      {!readOnly && graphParts ? (
        <Connections node={node} ports={outputPorts(node.data.atype, node.data.config, type)} {...graphParts} />
      ) : null}
      {!readOnly ? (
        <button type="button" className="btn btn--danger-text btn--sm" onClick={() => onDelete([node.id])}>
          Delete {node.id}</button>
      ) : null}
    </div>
  );
}

function SamplePanel({ sample, edge }) {
  if (!sample) return <p className="muted">Loading the sample…</p>;
  if (sample.error) return <p className="text-danger">{sample.error}</p>;
  const columns = sample.columns || [];
  const rows = sample.rows || [];
  return (
    <div data-testid="transition-sample">
      <h3 className="cv-panel__title">{edge.from} <span className="muted">{edge.port}</span> → {edge.to}</h3>
      <p>{(sample.count ?? 0).toLocaleString("en")} record(s){rows.length ? `; first ${rows.length} below` : ""}.
        {sample.purged ? " The population was purged after the retention period." : ""}</p>
      {rows.length ? (
        <div className="table-wrap cv-sample">
          <table className="table">
            <thead><tr>{columns.map((c) => <th scope="col" key={c}>{c}</th>)}</tr></thead>
            <tbody>{rows.map((row, i) => (
              <tr key={i}>{columns.map((c, j) => {
                const v = Array.isArray(row) ? row[j] : row[c];
                return <td key={c}>{v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v)}</td>;
              })}</tr>))}
            </tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}

function LogPanel({ nodeId, state, log }) {
  return (
    <div data-testid="node-log">
      <h3 className="cv-panel__title">Log of <code>{nodeId}</code></h3>
      {state ? (
        <p>{statusText(state.status)} · in {state.count_in ?? "—"} · out {state.count_out ?? "—"}
          {state.attempts ? ` · attempts ${state.attempts}` : ""}
          {state.error ? <><br /><strong className="text-danger">✕ {state.error}</strong></> : null}</p>
      ) : <p className="muted">This activity has not started.</p>}
      {!log ? <p className="muted">Loading the log…</p> : log.error ? <p className="text-danger">{log.error}</p>
        : log.entries.length === 0 ? <p className="muted">No log entries for this activity.</p> : (
          <ol className="cv-log">
            {log.entries.map((entry, i) => (
              <li key={i} className={`cv-log__entry cv-log__entry--${entry.level}`}>
                <time dateTime={entry.created_at}>{new Date(entry.created_at).toLocaleTimeString("en-GB")}</time>
                <span className="cv-log__level">{entry.level}</span> {entry.message}
              </li>
            ))}
          </ol>
        )}
    </div>
  );
}

function VersionHistory({ versions }) {
  if (!versions || !versions.length) return null;
  return (
    <section aria-labelledby="cv-versions-title" data-testid="version-history">
      <h4 id="cv-versions-title" className="cv-panel__subtitle">Versions</h4>
      <ol className="cv-versions" reversed>
        {versions.map((v) => (
          <li key={v.number}>
            <strong>v{v.number}</strong> · {v.status === "published" ? "published" : "draft"} · revision {v.revision}
            <span className="muted small"> · {v.status === "published" && v.published_at
              ? `published ${new Date(v.published_at).toLocaleString("en-GB")}${v.published_by ? ` by ${v.published_by}` : ""}`
              : `edited ${new Date(v.updated_at).toLocaleString("en-GB")}${v.edited_by ? ` by ${v.edited_by}` : ""}`}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}

function RunSummary({ run, previous }) {
  if (!run) return <p className="muted">Start a test run or pick a run to watch it here.</p>;
  const prevCounts = {};
  if (previous && previous.transitions) {
    for (const t of previous.transitions) prevCounts[`${t.from}|${t.port}|${t.to}`] = t.count;
  }
  return (
    <div data-testid="run-summary">
      <h3 className="cv-panel__title">Run #{run.id}{run.is_test ? " (test mode: nothing is sent)" : ""}</h3>
      <p><span className={`cv-run-status cv-run-status--${run.status}`} data-testid="run-status">{run.status}</span>
        {" "}· {run.trigger}{run.started_by ? ` by ${run.started_by}` : ""}</p>
      {run.error ? <p className="text-danger" role="alert">✕ {run.error_node ? `${run.error_node}: ` : ""}{run.error}</p> : null}
      <p className="field__help">Click a count on a transition for its population, an activity for its log.</p>
      {(run.transitions || []).length ? (
        <div className="table-wrap">
          <table className="table cv-compare" aria-label="Counts per transition">
            <thead><tr><th scope="col">Transition</th><th scope="col">Count</th>
              {previous ? <th scope="col">Run #{previous.id}</th> : null}</tr></thead>
            <tbody>{run.transitions.map((t) => {
              const before = prevCounts[`${t.from}|${t.port}|${t.to}`];
              return (
                <tr key={t.index}>
                  <td>{t.from} <span className="muted">{t.port}</span> → {t.to}</td>
                  <td>{t.count === null ? "—" : t.count.toLocaleString("en")}</td>
                  {previous ? <td>{before === undefined || before === null ? "—" : before.toLocaleString("en")}
                    {before !== undefined && before !== null && t.count !== null && t.count !== before
                      ? <span className="muted"> ({t.count > before ? "+" : ""}{t.count - before})</span> : null}</td> : null}
                </tr>
              );
            })}</tbody>
          </table>
        </div>
      ) : null}
    </div>
  );
}

export function Editor({ api, config }) {
  const { campaignId, canBuild, canRun } = config;
  const flow = useReactFlow();
  const wrapper = useRef(null);
  const [types, setTypes] = useState(null);
  const [loadError, setLoadError] = useState("");
  const [campaign, setCampaign] = useState(null);
  const [versions, setVersions] = useState([]);
  const [draft, setDraft] = useState(null);
  const [extra, setExtra] = useState({});
  const [nodes, setNodes] = useState([]);
  const [edges, setEdges] = useState([]);
  const [savedJson, setSavedJson] = useState("");
  const [problems, setProblems] = useState([]);
  const [message, setMessage] = useState(null);
  const [busy, setBusy] = useState("");
  const [mode, setMode] = useState("design");
  const [expanded, setExpanded] = useState(false);
  const [runs, setRuns] = useState([]);
  const [runId, setRunId] = useState(config.runId || null);
  const [run, setRun] = useState(null);
  const [previous, setPrevious] = useState(null);
  const [mNodes, setMNodes] = useState([]);
  const [mEdges, setMEdges] = useState([]);
  const [detail, setDetail] = useState(null); // monitor: {kind: "edge"|"node", ...}
  const past = useRef([]);
  const future = useRef([]);
  const lastEdit = useRef({ node: null, at: 0 });
  const [, setHistoryTick] = useState(0);
  const current = useRef({ nodes, edges });
  current.current = { nodes, edges };
  const readOnly = !canBuild || mode !== "design";

  const graph = useMemo(() => toGraph(nodes, edges, extra), [nodes, edges, extra]);
  const graphJson = useMemo(() => JSON.stringify({ nodes: graph.nodes, edges: graph.edges }), [graph]);
  const isDirty = draft !== null && graphJson !== savedJson;

  // --- loading ---------------------------------------------------------------------------------
  const loadDraft = useCallback(async (typeMap) => {
    const version = await api.get(`campaigns/${campaignId}/draft`);
    const { nodes: n, edges: e } = fromGraph(version.graph, typeMap);
    const { nodes: _n, edges: _e, ...rest } = version.graph || {};
    setExtra(rest);
    setNodes(n);
    setEdges(e);
    setDraft(version);
    syncJsonEditor(version);
    setProblems(version.problems || []);
    setSavedJson(JSON.stringify({ nodes: toGraph(n, e, rest).nodes, edges: toGraph(n, e, rest).edges }));
    past.current = [];
    future.current = [];
    setHistoryTick((x) => x + 1);
    if (n.length) setTimeout(() => flow.fitView({ padding: 0.2, maxZoom: 1 }), 50);
  }, [api, campaignId, flow]);

  const loadCampaign = useCallback(async () => {
    const [c, r, v] = await Promise.all([api.get(`campaigns/${campaignId}/`), api.get(`campaigns/${campaignId}/runs/`),
      api.get(`campaigns/${campaignId}/versions/`)]);
    setCampaign(c);
    setRuns(results(r));
    setVersions(results(v));
    return c;
  }, [api, campaignId]);

  useEffect(() => {
    (async () => {
      try {
        const list = await api.get("activities/");
        const map = {};
        for (const t of list) map[t.type] = t;
        setTypes(map);
        await Promise.all([loadDraft(map), loadCampaign()]);
      } catch (error) {
        setLoadError(error.message);
        if (config.restoreFallback) config.restoreFallback();
      }
    })();
  }, []); // eslint-disable-line

  // --- history -----------------------------------------------------------------------------------
  const remember = useCallback(() => {
    const snap = current.current;
    past.current.push({ nodes: snap.nodes, edges: snap.edges });
    if (past.current.length > HISTORY_LIMIT) past.current.shift();
    future.current = [];
    setHistoryTick((x) => x + 1);
  }, []);

  const undo = useCallback(() => {
    if (!past.current.length) return;
    future.current.push(current.current);
    const snap = past.current.pop();
    setNodes(snap.nodes);
    setEdges(snap.edges);
    lastEdit.current = { node: null, at: 0 };
    setHistoryTick((x) => x + 1);
  }, []);

  const redo = useCallback(() => {
    if (!future.current.length) return;
    past.current.push(current.current);
    const snap = future.current.pop();
    setNodes(snap.nodes);
    setEdges(snap.edges);
    setHistoryTick((x) => x + 1);
  }, []);

  // --- editing -----------------------------------------------------------------------------------
  const addNode = useCallback((type, position) => {
    if (!types || !types[type]) return;
    remember();
    const all = current.current.nodes;
    let pos = position;
    if (!pos) {
      const box = wrapper.current.getBoundingClientRect();
      const center = flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 });
      pos = { x: center.x - 100, y: center.y - 45 };
      // Step down until the new node overlaps none (as far as their sizes are known).
      const overlaps = (p) => all.some((n) => {
        const w = (n.measured && n.measured.width) || 200;
        const h = (n.measured && n.measured.height) || 90;
        return p.x < n.position.x + w && p.x + 200 > n.position.x && p.y < n.position.y + h && p.y + 90 > n.position.y;
      });
      for (let i = 0; i < 50 && overlaps(pos); i++) pos = { x: pos.x, y: pos.y + 40 };
    }
    const id = newNodeId(type, all);
    const node = {
      id, type: "activity", position: pos, selected: true,
      data: { atype: type, config: initialConfig(types[type].config_schema), extra: {} },
    };
    setNodes([...all.map((n) => (n.selected ? { ...n, selected: false } : n)), node]);
    setEdges(current.current.edges.map((e) => (e.selected ? { ...e, selected: false } : e)));
  }, [types, flow, remember]);

  const deleteNodes = useCallback((ids, edgeIds = []) => {
    const gone = new Set(ids);
    const goneEdges = new Set(edgeIds);
    const { nodes: ns, edges: es } = current.current;
    if (!gone.size && !goneEdges.size) return;
    remember();
    setNodes(ns.filter((n) => !gone.has(n.id)));
    setEdges(es.filter((e) => !goneEdges.has(e.id) && !gone.has(e.source) && !gone.has(e.target)));
  }, [remember]);

  const deleteSelection = useCallback(() => {
    const { nodes: ns, edges: es } = current.current;
    deleteNodes(ns.filter((n) => n.selected).map((n) => n.id), es.filter((e) => e.selected).map((e) => e.id));
  }, [deleteNodes]);

  const changeConfig = useCallback((nodeId, config) => {
    const now = Date.now();
    if (lastEdit.current.node !== nodeId || now - lastEdit.current.at > 1500) remember();
    lastEdit.current = { node: nodeId, at: now };
    setNodes((ns) => ns.map((n) => (n.id === nodeId ? { ...n, data: { ...n.data, config } } : n)));
  }, [remember]);

  const onNodesChange = useCallback((changes) => {
    if (mode === "design") setNodes((ns) => applyNodeChanges(changes.filter((c) => c.type !== "remove"), ns));
    else setMNodes((ns) => applyNodeChanges(changes.filter((c) => c.type !== "remove"), ns));
  }, [mode]);

  const onEdgesChange = useCallback((changes) => {
    if (mode === "design") setEdges((es) => applyEdgeChanges(changes.filter((c) => c.type !== "remove"), es));
    else setMEdges((es) => applyEdgeChanges(changes.filter((c) => c.type !== "remove"), es));
  }, [mode]);

  const onConnect = useCallback((params) => {
    if (readOnly || params.source === params.target) return;
    const es = current.current.edges;
    const port = params.sourceHandle || "out";
    if (es.some((e) => e.source === params.source && e.sourceHandle === port && e.target === params.target)) return;
    remember();
    let n = es.length;
    const ids = new Set(es.map((e) => e.id));
    while (ids.has(`e${n}`)) n++;
    setEdges([...es, { id: `e${n}`, source: params.source, sourceHandle: port, target: params.target,
      targetHandle: "in", type: "flow" }]);
  }, [readOnly, remember]);

  const layoutNow = useCallback(() => {
    if (mode === "design") {
      remember();
      setNodes(autoLayout(current.current.nodes, current.current.edges));
    } else {
      setMNodes((ns) => autoLayout(ns, mEdges));
    }
    setTimeout(() => flow.fitView({ padding: 0.2, maxZoom: 1 }), 50);
  }, [mode, remember, flow, mEdges]);


  // --- validation while editing ------------------------------------------------------------------
  useEffect(() => {
    if (!draft || !canBuild || mode !== "design") return undefined;
    if (!isDirty) return undefined;
    const timer = setTimeout(() => {
      api.post(`campaigns/${campaignId}/validate`, { graph })
        .then((answer) => setProblems(answer.problems || []))
        .catch(() => { /* the next save reports problems too */ });
    }, 600);
    return () => clearTimeout(timer);
  }, [graphJson]); // eslint-disable-line

  // --- saving and lifecycle ----------------------------------------------------------------------
  const save = useCallback(async () => {
    setBusy("save");
    try {
      const version = await api.put(`campaigns/${campaignId}/draft`, { graph, revision: draft.revision });
      setDraft(version);
      syncJsonEditor(version);
      setSavedJson(JSON.stringify({ nodes: graph.nodes, edges: graph.edges }));
      setProblems(version.problems || []);
      const count = (version.problems || []).length;
      setMessage({ kind: "success", text: `Draft saved (version ${version.number}, revision ${version.revision}).`
        + (count ? ` It has ${count} problem${count === 1 ? "" : "s"} to fix before publishing.` : "") });
      loadCampaign().catch(() => {});
      return true;
    } catch (error) {
      if (error.status === 409) {
        setMessage({ kind: "conflict", text: `Not saved: ${error.message} Nothing was overwritten.` });
      } else {
        setMessage({ kind: "error", text: `Not saved: ${error.message}` });
      }
      return false;
    } finally {
      setBusy("");
    }
  }, [api, campaignId, graph, draft, loadCampaign]);

  const reloadDraft = useCallback(async () => {
    try {
      await loadDraft(types);
      setMessage({ kind: "info", text: "The saved draft is loaded." });
    } catch (error) {
      setMessage({ kind: "error", text: error.message });
    }
  }, [loadDraft, types]);

  const openRun = useCallback((id) => {
    setRunId(id);
    setRun(null);
    setDetail(null);
    setMode("monitor");
  }, []);

  const action = useCallback(async (name) => {
    if ((name === "publish" || name === "test") && isDirty) {
      const saved = await save();
      if (!saved) return;
    }
    setBusy(name);
    try {
      const answer = await api.post(`campaigns/${campaignId}/${name}`, {});
      if (name === "publish") {
        setMessage({ kind: "success", text: `Version ${answer.number} is published.` });
        const version = await api.get(`campaigns/${campaignId}/draft`);
        setDraft(version);
        syncJsonEditor(version);
        setProblems(version.problems || []);
      } else if (name === "test") {
        setMessage({ kind: "success", text: `Test run #${answer.id} started: nothing is sent in test mode.` });
        openRun(answer.id);
      } else if (name === "start") {
        setMessage({ kind: "success", text: answer.run ? `The campaign is live: run #${answer.run.id} started.`
          : "The campaign is live: it starts on its schedule or trigger." });
        if (answer.run) openRun(answer.run.id);
      } else {
        const done = { pause: "paused", resume: "resumed", stop: "stopped" }[name];
        setMessage({ kind: "success", text: `The campaign is ${done}.` });
      }
      await loadCampaign();
    } catch (error) {
      const listed = errorProblems(error);
      if (listed) setProblems(listed);
      setMessage({ kind: "error", text: `${name[0].toUpperCase()}${name.slice(1)} refused: ${error.message}` });
    } finally {
      setBusy("");
    }
  }, [api, campaignId, isDirty, save, loadCampaign, openRun]);

  // --- monitoring --------------------------------------------------------------------------------
  const monitoredGraph = useRef(null);
  const autoOpened = useRef(false);
  useEffect(() => {
    if (!runId || !types) return undefined;
    let live = true;
    let timer = null;
    async function tick() {
      try {
        const r = await api.get(`runs/${runId}/`);
        if (!live) return;
        const key = `${r.id}:${JSON.stringify(r.graph)}`;
        if (monitoredGraph.current !== key) {
          monitoredGraph.current = key;
          const { nodes: n, edges: e } = fromGraph(r.graph, types);
          setMNodes(n);
          setMEdges(e);
          if (mode === "monitor") setTimeout(() => flow.fitView({ padding: 0.2, maxZoom: 1 }), 50);
        }
        setRun(r);
        if (!autoOpened.current) {
          // The page opens on the run in progress, if there is one.
          autoOpened.current = true;
          if (ACTIVE_RUN.includes(r.status)) setMode("monitor");
        }
        if (ACTIVE_RUN.includes(r.status)) timer = setTimeout(tick, 1500);
        else loadCampaign().catch(() => {});
      } catch (error) {
        if (live) setMessage({ kind: "error", text: `The run cannot be read: ${error.message}` });
      }
    }
    tick();
    return () => { live = false; clearTimeout(timer); };
  }, [runId, types]); // eslint-disable-line

  useEffect(() => {
    // The run before this one, to compare counts with.
    setPrevious(null);
    if (!runId) return;
    const older = runs.filter((r) => r.id < runId).sort((a, b) => b.id - a.id)[0];
    if (!older) return;
    api.get(`runs/${older.id}/transitions/`).then((t) => setPrevious({ id: older.id, transitions: t }))
      .catch(() => {});
  }, [runId, runs, api]);

  useEffect(() => {
    if (current.current.nodes.length || mode === "monitor") setTimeout(() => flow.fitView({ padding: 0.2, maxZoom: 1 }), 60);
  }, [mode, flow]);

  const openSample = useCallback(async (index) => {
    const t = run && run.transitions ? run.transitions[index] : null;
    const edge = t || { from: "?", port: "?", to: "?" };
    setDetail({ kind: "edge", index, edge, sample: null });
    try {
      const sample = await api.get(`runs/${runId}/transitions/${index}/sample`);
      setDetail({ kind: "edge", index, edge, sample });
    } catch (error) {
      setDetail({ kind: "edge", index, edge, sample: { error: error.message } });
    }
  }, [api, run, runId]);

  const openLog = useCallback(async (nodeId) => {
    setDetail({ kind: "node", nodeId, log: null });
    try {
      const entries = await api.get(`runs/${runId}/log?node=${encodeURIComponent(nodeId)}`);
      setDetail({ kind: "node", nodeId, log: { entries: results(entries) } });
    } catch (error) {
      setDetail({ kind: "node", nodeId, log: { error: error.message } });
    }
  }, [api, runId]);

  const root = useRef(null);
  const onKeyDown = useCallback((event) => {
    // Shortcuts act when the focus is on the canvas (or nowhere, e.g. after the focused node was
    // deleted); in a text field, Ctrl+Z stays the field's own undo.
    const target = event.target;
    if (isEditable(target)) return;
    if (!(root.current && root.current.contains(target)) && target !== document.body) return;
    if (event.key === "Escape" && expanded) { setExpanded(false); return; }
    if (event.key === "Enter" && mode === "monitor" && runId && target.closest) {
      const node = target.closest(".react-flow__node");
      if (node && node.dataset.id) { openLog(node.dataset.id); return; }
    }
    const key = event.key.toLowerCase();
    const mod = event.ctrlKey || event.metaKey;
    if (mod && key === "z" && !event.shiftKey) { if (!readOnly) { event.preventDefault(); undo(); } return; }
    if (mod && (key === "y" || (key === "z" && event.shiftKey))) { if (!readOnly) { event.preventDefault(); redo(); } return; }
    if ((event.key === "Delete" || event.key === "Backspace") && !readOnly) {
      event.preventDefault();
      deleteSelection();
      if (wrapper.current) wrapper.current.focus();
    }
  }, [readOnly, undo, redo, deleteSelection, expanded, mode, runId, openLog]);

  useEffect(() => {
    document.addEventListener("keydown", onKeyDown);
    return () => document.removeEventListener("keydown", onKeyDown);
  }, [onKeyDown]);

  // --- what the canvas draws ---------------------------------------------------------------------
  const problemsByNode = useMemo(() => {
    const map = {};
    for (const p of problems) if (p.node) (map[p.node] = map[p.node] || []).push(p);
    return map;
  }, [problems]);

  const decorate = useCallback((list, edgeList, states) => list.map((n) => {
    const t = types && types[n.data.atype];
    const ports = outputPorts(n.data.atype, n.data.config, t);
    const used = edgeList.filter((e) => e.source === n.id).map((e) => e.sourceHandle || "out");
    const unknownPorts = [...new Set(used.filter((p) => !ports.includes(p)))];
    const state = states ? states[n.id] || { status: "pending", count_in: null, count_out: null } : null;
    const nodeProblems = states ? [] : problemsByNode[n.id] || [];
    const label = t ? t.label : n.data.atype;
    const words = [`${label} ${n.id}`];
    if (state) words.push(NODE_STATUS[state.status] ? NODE_STATUS[state.status][0] : state.status);
    if (nodeProblems.length) words.push(`${nodeProblems.length} problem(s)`);
    return {
      ...n, ariaLabel: words.join(", "),
      data: { ...n.data, label, group: t ? t.group : "flow", hasInput: t ? t.inputs.length > 0 : true, ports,
        unknownPorts, problems: nodeProblems, state, summary: nodeSummary(n.data.atype, n.data.config) },
    };
  }), [types, problemsByNode]);

  const shownNodes = useMemo(() => {
    if (mode === "design") return decorate(nodes, edges, null);
    const states = {};
    for (const s of (run && run.nodes) || []) states[s.node_id] = s;
    return decorate(mNodes, mEdges, states);
  }, [mode, nodes, edges, mNodes, mEdges, run, decorate]);

  const shownEdges = useMemo(() => {
    if (mode === "design") return edges;
    const transitions = (run && run.transitions) || [];
    const prev = {};
    for (const t of (previous && previous.transitions) || []) prev[`${t.from}|${t.port}|${t.to}`] = t.count;
    return mEdges.map((e) => {
      const t = transitions[e.data.index] || {};
      return {
        ...e, animated: Boolean(t.active && run && ACTIVE_RUN.includes(run.status)),
        ariaLabel: `Transition ${e.source} ${e.sourceHandle} to ${e.target}`,
        data: { ...e.data, monitor: true, count: t.count ?? null, active: Boolean(t.active), from: e.source,
          port: e.sourceHandle, to: e.target, previous: prev[`${e.source}|${e.sourceHandle}|${e.target}`],
          onOpen: openSample },
      };
    });
  }, [mode, edges, mEdges, run, previous, openSample]);

  const selectedNode = mode === "design" ? nodes.find((n) => n.selected) : null;
  const selectedCount = nodes.filter((n) => n.selected).length + edges.filter((e) => e.selected).length;

  if (loadError) return <div className="alert alert--error" role="alert">The canvas cannot load: {loadError}</div>;
  if (!types || !draft) return <p className="muted cv-loading">Loading the canvas…</p>;

  const status = campaign ? campaign.status : "";
  const canStart = canRun && campaign && campaign.live_version
    && ["published", "completed", "stopped", "failed"].includes(status);
  const draftIsOpen = draft.status === "draft";
  const button = (name, label, opts = {}) => (
    <button type="button" className={`btn btn--${opts.style || "secondary"} btn--sm`} data-action={name}
      disabled={Boolean(busy) || opts.disabled} onClick={opts.onClick || (() => action(name))}
      aria-keyshortcuts={opts.keys} title={opts.title}>
      {busy === name ? `${label}…` : label}</button>
  );

  return (
    <div className={`cv${expanded ? " cv--expanded" : ""}`} ref={root}>
      <div className="cv-toolbar" role="toolbar" aria-label="Campaign canvas">
        <div className="cv-toolbar__group" role="group" aria-label="View">
          <button type="button" className={`btn btn--sm ${mode === "design" ? "btn--primary" : "btn--secondary"}`}
            aria-pressed={mode === "design"} onClick={() => setMode("design")}>Design</button>
          <button type="button" className={`btn btn--sm ${mode === "monitor" ? "btn--primary" : "btn--secondary"}`}
            aria-pressed={mode === "monitor"} disabled={!runId && !runs.length}
            onClick={() => { if (!runId && runs.length) openRun(runs[0].id); else setMode("monitor"); }}>
            Monitor{runId ? ` run #${runId}` : ""}</button>
        </div>
        {mode === "design" && canBuild ? (
          <div className="cv-toolbar__group" role="group" aria-label="Edit">
            {button("undo", "Undo", { onClick: undo, disabled: !past.current.length, keys: "Control+Z" })}
            {button("redo", "Redo", { onClick: redo, disabled: !future.current.length, keys: "Control+Y" })}
            {button("delete", "Delete", { onClick: deleteSelection, disabled: !selectedCount, keys: "Delete",
              style: "danger-text" })}
            {button("layout", "Auto-layout", { onClick: layoutNow, disabled: !nodes.length })}
          </div>
        ) : null}
        {mode === "design" && canBuild ? (
          <div className="cv-toolbar__group" role="group" aria-label="Draft">
            {button("save", "Save draft", { onClick: save, style: isDirty ? "primary" : "secondary" })}
            {button("publish", "Publish", { disabled: !draftIsOpen && !isDirty })}
            <span className="cv-saved muted small" data-testid="save-state">
              {isDirty ? "● Unsaved changes" : `Saved · v${draft.number} rev. ${draft.revision}`}</span>
          </div>
        ) : null}
        {mode === "monitor" ? (
          <div className="cv-toolbar__group" role="group" aria-label="Run view">
            {button("layout", "Auto-layout", { onClick: layoutNow, disabled: !mNodes.length })}
            <label className="small" htmlFor="cv-run-select">Run</label>
            <select id="cv-run-select" className="select--sm" value={runId || ""}
              onChange={(e) => openRun(Number(e.target.value))}>
              {runId && !runs.some((r) => r.id === runId) ? <option value={runId}>#{runId}</option> : null}
              {runs.map((r) => <option key={r.id} value={r.id}>#{r.id} · {r.status}{r.is_test ? " · test" : ""}</option>)}
            </select>
          </div>
        ) : null}
        {canRun ? (
          <div className="cv-toolbar__group" role="group" aria-label="Run">
            {button("test", "Test run", { title: "Run the draft: real counts, nothing sent" })}
            {button("start", "Start live", { disabled: !canStart, style: canStart ? "primary" : "secondary",
              title: canStart ? "" : "Publish first" })}
            {status === "live" ? button("pause", "Pause") : null}
            {status === "paused" ? button("resume", "Resume", { style: "primary" }) : null}
            {["live", "paused", "failed"].includes(status) ? button("stop", "Stop", { style: "danger-text" }) : null}
          </div>
        ) : null}
        <button type="button" className="btn btn--ghost btn--sm" aria-pressed={expanded}
          onClick={() => { setExpanded((x) => !x); setTimeout(() => flow.fitView({ padding: 0.2, maxZoom: 1 }), 80); }}>
          {expanded ? "Exit full screen" : "Full screen"}</button>
        <span className="cv-toolbar__status small">Campaign: <strong data-testid="campaign-status">{status}</strong></span>
        {config.jsonEditor ? (
          <a className="btn btn--ghost btn--sm" href={config.jsonEditor} onClick={() => {
            const target = document.querySelector(config.jsonEditor);
            if (target && target.tagName === "DETAILS") target.open = true;
          }}>Edit as JSON</a>) : null}
      </div>
      <Message message={message} onReload={reloadDraft} onClose={() => setMessage(null)} />
      <div className={`cv-body${mode === "design" && canBuild ? " cv-body--palette" : ""}`}>
        {mode === "design" && canBuild ? <Palette types={types} onAdd={(t) => addNode(t)} /> : null}
        <div className="cv-flow" ref={wrapper} data-testid="canvas" data-mode={mode} tabIndex={-1}
          onDragOver={(e) => { if (!readOnly) { e.preventDefault(); e.dataTransfer.dropEffect = "move"; } }}
          onDrop={(e) => {
            if (readOnly) return;
            const type = e.dataTransfer.getData("application/x-activity");
            if (!type) return;
            e.preventDefault();
            const p = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
            addNode(type, { x: p.x - 100, y: p.y - 30 });
          }}>
          <ReactFlow
            nodes={shownNodes} edges={shownEdges} nodeTypes={nodeTypes} edgeTypes={edgeTypes}
            defaultEdgeOptions={defaultEdgeOptions}
            onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
            onNodeDragStart={() => { if (mode === "design") remember(); }}
            onNodeClick={(_, node) => { if (mode === "monitor" && runId) openLog(node.id); }}
            onEdgeClick={(_, edge) => { if (mode === "monitor" && runId) openSample(edge.data.index); }}
            nodesConnectable={!readOnly} nodesDraggable elementsSelectable nodesFocusable edgesFocusable
            deleteKeyCode={null} isValidConnection={(c) => c.source !== c.target}
            minZoom={0.2} maxZoom={2} defaultViewport={{ x: 0, y: 0, zoom: 1 }} proOptions={{ hideAttribution: true }}
          >
            <Background gap={16} size={1} />
            <Controls showInteractive={false} aria-label="Zoom" />
            <MiniMap pannable zoomable ariaLabel="Overview of the flow" />
          </ReactFlow>
          {(mode === "design" ? nodes : mNodes).length === 0 ? (
            <p className="cv-empty">{mode === "design" && canBuild
              ? "The canvas is empty: drag a Scheduler from the palette to start the flow."
              : "No activities."}</p>
          ) : null}
        </div>
        <aside className="cv-panel" aria-label="Details">
          {mode === "design" ? (
            selectedNode ? (
              <ConfigPanel key={selectedNode.id} node={selectedNode} type={types[selectedNode.data.atype]}
                problems={problems} readOnly={!canBuild} onChange={changeConfig} onDelete={(ids) => deleteNodes(ids)}
                graphParts={{ nodes, edges, types, onConnect,
                  onRemoveEdge: (edgeId) => deleteNodes([], [edgeId]) }}
                ctx={{ api, dimension: (campaign && campaign.dimension) || config.dimension, campaignId,
                  variables: campaign ? campaign.variables : [] }} />
            ) : (
              <div className="cv-panel__body">
                <h3 className="cv-panel__title">Draft v{draft.number}</h3>
                <p className="field__help">Select an activity to configure it. Connect an output port (right) to
                  the input (left) of the next activity. Delete removes the selection; Ctrl+Z / Ctrl+Y undo and
                  redo.</p>
                <ProblemList problems={problems} onPick={(id) => {
                  setNodes((ns) => ns.map((n) => ({ ...n, selected: n.id === id })));
                  const n = nodes.find((x) => x.id === id);
                  if (n) flow.setCenter(n.position.x + 100, n.position.y + 45, { zoom: 1, duration: 200 });
                }} />
                <VersionHistory versions={versions} />
              </div>
            )
          ) : (
            <div className="cv-panel__body">
              {detail && detail.kind === "edge" ? <SamplePanel sample={detail.sample} edge={detail.edge} />
                : detail && detail.kind === "node" ? (
                  <LogPanel nodeId={detail.nodeId} log={detail.log}
                    state={((run && run.nodes) || []).find((s) => s.node_id === detail.nodeId)} />
                ) : null}
              {detail ? <button type="button" className="btn btn--ghost btn--sm" onClick={() => setDetail(null)}>
                Back to the run</button> : <RunSummary run={run} previous={previous} />}
            </div>
          )}
        </aside>
      </div>
      {mode === "design" && canBuild && selectedNode ? (
        <details className="cv-problem-bar" open={problems.length > 0}>
          <summary>{problems.length ? `! ${problems.length} problem(s) in the draft` : "✓ No problems"}</summary>
          <ProblemList problems={problems} onPick={(id) => setNodes((ns) => ns.map((n) => ({ ...n, selected: n.id === id })))} />
        </details>
      ) : null}
    </div>
  );
}
