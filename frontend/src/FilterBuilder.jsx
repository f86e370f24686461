// The rule builder for filter-language fields (docs/filter-language.md): rules on the fields of
// the dimension, all or any of them, with a live count of the matching records from
// POST /api/v1/schemas/<dimension>/query. A filter the builder cannot show (not, link, nesting)
// is edited as JSON, and still counted.
import { useEffect, useMemo, useState } from "react";

const OPS_BY_TYPE = {
  text: ["eq", "ne", "in", "not_in", "contains", "starts_with", "ends_with", "is_null", "is_not_null"],
  number: ["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "is_null", "is_not_null"],
  date: ["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "within_last", "before", "after",
    "is_null", "is_not_null"],
  boolean: ["eq", "ne", "is_null", "is_not_null"],
  json: ["eq", "ne", "is_null", "is_not_null"],
};
const OP_LABELS = {
  eq: "is", ne: "is not", in: "is one of", not_in: "is none of", lt: "less than", lte: "at most",
  gt: "greater than", gte: "at least", between: "between", contains: "contains", starts_with: "starts with",
  ends_with: "ends with", is_null: "is empty", is_not_null: "is not empty", within_last: "within the last",
  before: "before", after: "after",
};
const BUILTIN_FIELDS = [
  { name: "_key", label: "Key", type: "string" },
  { name: "_created_at", label: "Created at", type: "datetime" },
  { name: "_updated_at", label: "Updated at", type: "datetime" },
];

function family(type) {
  if (type === "integer" || type === "decimal") return "number";
  if (type === "date" || type === "datetime") return "date";
  if (type === "boolean") return "boolean";
  if (type === "json") return "json";
  return "text";
}

const fieldCache = new Map();
/** The fields of a schema (cached for the page). */
export function loadFields(api, dimension) {
  if (!fieldCache.has(dimension)) {
    const promise = api.get(`schemas/${encodeURIComponent(dimension)}/fields/?page_size=500`)
      .then((data) => (Array.isArray(data) ? data : data.results || []))
      .catch((error) => { fieldCache.delete(dimension); throw error; });
    fieldCache.set(dimension, promise);
  }
  return fieldCache.get(dimension);
}

function isRule(node) {
  return node && typeof node === "object" && typeof node.field === "string" && typeof node.op === "string";
}

/** {combinator, rules} when the builder can show the filter, else null. */
export function parseFilter(value) {
  if (value === undefined || value === null) return { combinator: "all", rules: [] };
  if (typeof value !== "object" || Array.isArray(value)) return null;
  const keys = Object.keys(value);
  if (keys.length === 0) return { combinator: "all", rules: [] };
  if (isRule(value)) return { combinator: "all", rules: [value] };
  if (keys.length === 1 && (keys[0] === "all" || keys[0] === "any") && Array.isArray(value[keys[0]])
      && value[keys[0]].every(isRule)) {
    return { combinator: keys[0], rules: value[keys[0]] };
  }
  return null;
}

/** No rule is the empty filter, {}: every record (not "no filter", which some activities refuse). */
export function buildFilter(combinator, rules) {
  return rules.length ? { [combinator]: rules } : {};
}

function convert(raw, fam) {
  if (fam === "number") {
    const n = Number(raw);
    return raw.trim() !== "" && !Number.isNaN(n) ? n : raw;
  }
  if (fam === "boolean") return raw === "true";
  return raw;
}

function RuleRow({ index, rule, fields, onChange, onRemove, idPrefix }) {
  const field = fields.find((f) => f.name === rule.field);
  const fam = family(field ? field.type : "string");
  const ops = OPS_BY_TYPE[fam];
  const [text, setText] = useState(() => valueText(rule.value));
  const [high, setHigh] = useState(() => (Array.isArray(rule.value) ? String(rule.value[1] ?? "") : ""));
  const noValue = rule.op === "is_null" || rule.op === "is_not_null";
  const n = index + 1;

  function emit(op, rawText, rawHigh) {
    const next = { field: rule.field, op };
    if (rule.case_insensitive && ["contains", "starts_with", "ends_with"].includes(op)) next.case_insensitive = true;
    if (op === "is_null" || op === "is_not_null") { onChange(next); return; }
    if (op === "in" || op === "not_in") {
      next.value = rawText.split(",").map((x) => x.trim()).filter((x) => x !== "").map((x) => convert(x, fam));
    } else if (op === "between") {
      next.value = [convert(rawText, fam), convert(rawHigh, fam)];
    } else {
      next.value = convert(rawText, fam);
    }
    onChange(next);
  }

  return (
    <div className="cv-rule" data-rule={index}>
      <label className="visually-hidden" htmlFor={`${idPrefix}-field-${index}`}>Field of rule {n}</label>
      <select id={`${idPrefix}-field-${index}`} value={rule.field} onChange={(e) => {
        const picked = fields.find((f) => f.name === e.target.value);
        const nextOps = OPS_BY_TYPE[family(picked ? picked.type : "string")];
        const op = nextOps.includes(rule.op) ? rule.op : nextOps[0];
        onChange(noValue || op === "is_null" || op === "is_not_null"
          ? { field: e.target.value, op } : { field: e.target.value, op, value: rule.value ?? "" });
      }}>
        {!field ? <option value={rule.field}>{rule.field || "Choose a field"}</option> : null}
        {fields.map((f) => <option key={f.name} value={f.name}>{f.label || f.name}</option>)}
      </select>
      <label className="visually-hidden" htmlFor={`${idPrefix}-op-${index}`}>Operator of rule {n}</label>
      <select id={`${idPrefix}-op-${index}`} value={rule.op} onChange={(e) => emit(e.target.value, text, high)}>
        {(ops.includes(rule.op) ? ops : [rule.op, ...ops]).map((op) => (
          <option key={op} value={op}>{OP_LABELS[op] || op}</option>))}
      </select>
      {noValue ? null : fam === "boolean" && rule.op !== "in" && rule.op !== "not_in" ? (
        <>
          <label className="visually-hidden" htmlFor={`${idPrefix}-value-${index}`}>Value of rule {n}</label>
          <select id={`${idPrefix}-value-${index}`} value={String(rule.value === true)}
            onChange={(e) => { setText(e.target.value); emit(rule.op, e.target.value, high); }}>
            <option value="true">true</option><option value="false">false</option>
          </select>
        </>
      ) : field && field.type === "enum" && (rule.op === "eq" || rule.op === "ne") && field.enum_values ? (
        <>
          <label className="visually-hidden" htmlFor={`${idPrefix}-value-${index}`}>Value of rule {n}</label>
          <select id={`${idPrefix}-value-${index}`} value={String(rule.value ?? "")}
            onChange={(e) => { setText(e.target.value); emit(rule.op, e.target.value, high); }}>
            <option value="">—</option>
            {field.enum_values.map((v) => <option key={v} value={v}>{v}</option>)}
          </select>
        </>
      ) : (
        <>
          <label className="visually-hidden" htmlFor={`${idPrefix}-value-${index}`}>
            Value of rule {n}{rule.op === "in" || rule.op === "not_in" ? " (comma-separated)" : ""}</label>
          <input id={`${idPrefix}-value-${index}`} type="text" value={text}
            placeholder={rule.op === "within_last" ? "30d" : rule.op === "in" || rule.op === "not_in" ? "a, b, c" : ""}
            onChange={(e) => { setText(e.target.value); emit(rule.op, e.target.value, high); }} />
          {rule.op === "between" ? (
            <>
              <label className="visually-hidden" htmlFor={`${idPrefix}-high-${index}`}>Upper bound of rule {n}</label>
              <input id={`${idPrefix}-high-${index}`} type="text" value={high}
                onChange={(e) => { setHigh(e.target.value); emit(rule.op, text, e.target.value); }} />
            </>
          ) : null}
        </>
      )}
      <button type="button" className="btn btn--ghost btn--sm" aria-label={`Remove rule ${n}`} onClick={onRemove}>✕</button>
    </div>
  );
}

function valueText(value) {
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.length === 2 ? String(value[0]) : value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function MatchCount({ api, dimension, filter }) {
  const [state, setState] = useState({ loading: true });
  const key = JSON.stringify(filter ?? null);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    const timer = setTimeout(() => {
      api.post(`schemas/${encodeURIComponent(dimension)}/query`, { filter: filter ?? null, sample_size: 0 })
        .then((data) => { if (live) setState({ count: data.count }); })
        .catch((error) => {
          if (!live) return;
          const details = (error.fields && error.fields.filter) || [];
          setState({ error: error.message, details: Array.isArray(details) ? details : [] });
        });
    }, 350);
    return () => { live = false; clearTimeout(timer); };
  }, [key, dimension]); // eslint-disable-line
  return (
    <div className="cv-count" aria-live="polite" data-testid="filter-count">
      {state.error ? <span className="text-danger">✕ {state.error}</span>
        : state.count === undefined ? <span className="muted">Counting…</span>
          : <span><strong data-count={state.count}>{state.count.toLocaleString("en")}</strong> {dimension} record{state.count === 1 ? "" : "s"} match{state.count === 1 ? "es" : ""}{state.loading ? " (updating…)" : ""}</span>}
    </div>
  );
}

export function FilterBuilder({ id, label, value, onChange, help, problems, ctx }) {
  const { api, dimension } = ctx;
  const [fields, setFields] = useState(null);
  const [loadError, setLoadError] = useState("");
  const parsed = useMemo(() => parseFilter(value), [JSON.stringify(value ?? null)]); // eslint-disable-line
  const [asJson, setAsJson] = useState(parsed === null);
  const [jsonText, setJsonText] = useState(() => JSON.stringify(value ?? {}, null, 2));
  const [jsonError, setJsonError] = useState("");

  useEffect(() => {
    let live = true;
    loadFields(api, dimension)
      .then((list) => { if (live) setFields([...list, ...BUILTIN_FIELDS]); })
      .catch((error) => { if (live) setLoadError(error.message); });
    return () => { live = false; };
  }, [api, dimension]);

  const groupId = `${id}-group`;
  const rules = parsed ? parsed.rules : [];
  const combinator = parsed ? parsed.combinator : "all";

  return (
    <fieldset className="cv-fieldset cv-filter" aria-describedby={help ? `${id}-help` : undefined}>
      <legend className="field__label">{label} <span className="field__optional">(filter on {dimension})</span></legend>
      {help ? <p className="field__help" id={`${id}-help`}>{help}</p> : null}
      {loadError ? <p className="field__errors">The fields of {dimension} cannot be loaded: {loadError}</p> : null}
      {asJson || parsed === null ? (
        <div className="field">
          <label className="field__label" htmlFor={`${id}-json`}>Filter as JSON</label>
          <textarea id={`${id}-json`} rows={6} spellCheck="false" className="cv-json" value={jsonText}
            onChange={(e) => {
              setJsonText(e.target.value);
              if (!e.target.value.trim()) { setJsonError(""); onChange(undefined); return; }
              try { const v = JSON.parse(e.target.value); setJsonError(""); onChange(v); }
              catch (exc) { setJsonError("Not valid JSON yet: " + exc.message); }
            }} />
          {jsonError ? <p className="field__errors" role="alert">{jsonError}</p> : null}
          {parseFilter(value) !== null ? (
            <button type="button" className="btn btn--ghost btn--sm" onClick={() => setAsJson(false)}>Use the rule builder</button>
          ) : <p className="field__help">This filter uses more than the rule builder shows (not, links, nesting).</p>}
        </div>
      ) : (
        <div className="cv-rules" role="group" aria-labelledby={groupId}>
          <div className="cv-rules__head" id={groupId}>
            <label htmlFor={`${id}-combinator`}>Records matching</label>
            <select id={`${id}-combinator`} value={combinator}
              onChange={(e) => onChange(buildFilter(e.target.value, rules))}>
              <option value="all">all of the rules</option>
              <option value="any">any of the rules</option>
            </select>
          </div>
          {value === undefined || value === null ? (
            <p className="field__help">No filter yet.{" "}
              <button type="button" className="cv-linklike" onClick={() => onChange({})}>Match every record</button></p>
          ) : rules.length === 0 ? <p className="field__help">No rule: every record matches.</p> : null}
          {fields ? rules.map((rule, index) => (
            <RuleRow key={`${index}-${rules.length}`} index={index} rule={rule} fields={fields} idPrefix={id}
              onChange={(next) => onChange(buildFilter(combinator, rules.map((r, i) => (i === index ? next : r))))}
              onRemove={() => onChange(buildFilter(combinator, rules.filter((_, i) => i !== index)))} />
          )) : <p className="muted">Loading the fields…</p>}
          <div className="cv-rules__actions">
            <button type="button" className="btn btn--secondary btn--sm" disabled={!fields || !fields.length}
              onClick={() => {
                const first = fields[0];
                const op = OPS_BY_TYPE[family(first.type)][0];
                onChange(buildFilter(combinator, [...rules, { field: first.name, op, value: "" }]));
              }}>Add rule</button>
            <button type="button" className="btn btn--ghost btn--sm" onClick={() => {
              setJsonText(JSON.stringify(value ?? {}, null, 2));
              setAsJson(true);
            }}>Edit filter as JSON</button>
          </div>
        </div>
      )}
      <MatchCount api={api} dimension={dimension} filter={value} />
      {problems && problems.length ? (
        <ul className="field__errors cv-field-problems">{problems.map((p, i) => <li key={i}>{p.message}</li>)}</ul>
      ) : null}
    </fieldset>
  );
}
