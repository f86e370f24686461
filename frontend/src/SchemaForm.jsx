// A form generated from an activity's JSON Schema: strings, numbers, booleans, enums, lists of
// values, lists of objects, nested objects; filter-language fields get the rule builder; what the
// form cannot express (oneOf, free-form objects) is edited as JSON in place.
import { useEffect, useState } from "react";
import { FileSource, isFileSource } from "./FileSource.jsx";
import { FilterBuilder } from "./FilterBuilder.jsx";
import { LiquidField, isLiquidPath } from "./LiquidEditor.jsx";

export function humanize(name) {
  const text = String(name).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "config.subsets[0].code" and "config.subsets.0.code" are the same place. */
export function normalizePath(path) {
  return String(path || "").replace(/\[(\d+)\]/g, ".$1");
}

function typeOf(schema) {
  const t = schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== "null") || "string";
  if (t) return t;
  if (schema.enum) return "enum";
  if (schema.properties) return "object";
  return "any";
}

function isFilter(schema) {
  return typeOf(schema) === "object" && !schema.properties && /filter|a condition/i.test(schema.description || "")
    && !/\{var, op, value\}/.test(schema.description || "");
}

function isEmpty(value) {
  if (value === undefined || value === null || value === "") return true;
  if (Array.isArray(value)) return false;
  if (typeof value === "object") return Object.keys(value).length === 0;
  return false;
}

/** Drops a key whose value became empty, so optional fields stay absent rather than blank. */
export function setKey(object, key, value, keepEmpty) {
  const next = { ...(object || {}) };
  if (isEmpty(value) && !keepEmpty) delete next[key];
  else next[key] = value;
  return next;
}

/** The content API's problems of a template ({line, message}) and the graph validation's ones at
 *  the same path ("line 2: …"), once each. */
function mergeLineProblems(checked, fromGraph) {
  const seen = new Set();
  const out = [];
  const parsed = (fromGraph || []).map((p) => {
    const m = /^line (\d+): ([\s\S]*)$/.exec(p.message || "");
    return m ? { line: Number(m[1]), message: m[2] } : { line: null, message: p.message };
  });
  for (const p of [...(checked || []), ...parsed]) {
    const key = `${p.line || ""}|${p.message}`;
    if (!seen.has(key)) { seen.add(key); out.push(p); }
  }
  return out;
}

function FieldProblems({ problems }) {
  if (!problems || !problems.length) return null;
  return (
    <ul className="field__errors cv-field-problems">
      {problems.map((p, i) => <li key={i}>{p.message}</li>)}
    </ul>
  );
}

function JsonField({ id, label, value, onChange, help, problems }) {
  const [text, setText] = useState(value === undefined ? "" : JSON.stringify(value, null, 2));
  const [error, setError] = useState("");
  useEffect(() => {
    // Follow outside changes (undo) unless the text already says the same thing.
    let same = false;
    try { same = JSON.stringify(JSON.parse(text || "null")) === JSON.stringify(value === undefined ? null : value); }
    catch (exc) { same = false; }
    if (!same && !error) setText(value === undefined ? "" : JSON.stringify(value, null, 2));
  }, [value]); // eslint-disable-line
  return (
    <div className={"field" + (error ? " field--invalid" : "")}>
      <label className="field__label" htmlFor={id}>{label} <span className="field__optional">(JSON)</span></label>
      <textarea id={id} rows={4} spellCheck="false" className="cv-json" value={text}
        onChange={(e) => {
          const t = e.target.value;
          setText(t);
          if (!t.trim()) { setError(""); onChange(undefined); return; }
          try { const parsed = JSON.parse(t); setError(""); onChange(parsed); }
          catch (exc) { setError("Not valid JSON yet: " + exc.message); }
        }} />
      {help ? <p className="field__help">{help}</p> : null}
      {error ? <p className="field__errors" role="alert">{error}</p> : null}
      <FieldProblems problems={problems} />
    </div>
  );
}

function ListOfValues({ id, label, schema, value, onChange, help, problems }) {
  const items = schema.items || {};
  const list = Array.isArray(value) ? value : [];
  if (items.enum) {
    return (
      <fieldset className="cv-fieldset">
        <legend className="field__label">{label}</legend>
        <div className="cv-checks">
          {items.enum.map((option) => (
            <label key={String(option)} className="cv-check">
              <input type="checkbox" checked={list.includes(option)}
                onChange={(e) => {
                  const next = e.target.checked ? [...list, option] : list.filter((x) => x !== option);
                  onChange(next.length ? items.enum.filter((x) => next.includes(x)) : undefined);
                }} />
              <span>{String(option)}</span>
            </label>
          ))}
        </div>
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
      </fieldset>
    );
  }
  const numeric = items.type === "integer" || items.type === "number";
  return (
    <TextList id={id} label={label} list={list} numeric={numeric} onChange={onChange} help={help} problems={problems} />
  );
}

function TextList({ id, label, list, numeric, onChange, help, problems }) {
  const [text, setText] = useState(list.join(", "));
  useEffect(() => {
    const parsed = parseList(text, numeric);
    if (JSON.stringify(parsed) !== JSON.stringify(list)) setText(list.join(", "));
  }, [JSON.stringify(list)]); // eslint-disable-line
  return (
    <div className="field">
      <label className="field__label" htmlFor={id}>{label} <span className="field__optional">(comma-separated)</span></label>
      <input id={id} type="text" value={text} onChange={(e) => {
        setText(e.target.value);
        const parsed = parseList(e.target.value, numeric);
        onChange(parsed.length ? parsed : undefined);
      }} />
      {help ? <p className="field__help">{help}</p> : null}
      <FieldProblems problems={problems} />
    </div>
  );
}

function parseList(text, numeric) {
  const parts = text.split(",").map((x) => x.trim()).filter((x) => x !== "");
  return numeric ? parts.map((x) => (Number.isNaN(Number(x)) ? x : Number(x))) : parts;
}

function ListOfObjects({ id, label, schema, value, onChange, help, path, problemsAt, ctx }) {
  const list = Array.isArray(value) ? value : [];
  const itemLabel = label.replace(/s$/, "").replace(/ie$/, "y").toLowerCase();
  return (
    <fieldset className="cv-fieldset">
      <legend className="field__label">{label}</legend>
      {help ? <p className="field__help">{help}</p> : null}
      <FieldProblems problems={problemsAt(path)} />
      {list.map((item, index) => (
        <div className="cv-item" key={index} data-item={index}>
          <div className="cv-item__head">
            <span className="cv-item__title">{humanize(itemLabel)} {index + 1}</span>
            <button type="button" className="btn btn--ghost btn--sm"
              aria-label={`Remove ${itemLabel} ${index + 1}`}
              onClick={() => onChange(list.filter((_, i) => i !== index))}>Remove</button>
          </div>
          <ObjectFields id={`${id}-${index}`} schema={schema.items} value={item} path={`${path}.${index}`}
            problemsAt={problemsAt} ctx={ctx}
            onChange={(next) => onChange(list.map((x, i) => (i === index ? next || {} : x)))} />
        </div>
      ))}
      <button type="button" className="btn btn--secondary btn--sm" onClick={() => {
        const fresh = {};
        for (const name of (schema.items && schema.items.required) || []) {
          const prop = schema.items.properties[name] || {};
          if (prop.enum) fresh[name] = prop.enum[0];
        }
        onChange([...list, fresh]);
      }}>Add {itemLabel}</button>
    </fieldset>
  );
}

export function ObjectFields({ id, schema, value, onChange, path, problemsAt, ctx }) {
  const properties = (schema && schema.properties) || {};
  const required = (schema && schema.required) || [];
  const object = value && typeof value === "object" && !Array.isArray(value) ? value : {};
  return (
    <div className="cv-fields">
      {Object.entries(properties).map(([name, prop]) => (
        <SchemaField key={name} id={`${id}-${name}`} name={name} schema={prop} required={required.includes(name)}
          value={object[name]} path={`${path}.${name}`} problemsAt={problemsAt} ctx={ctx}
          onChange={(next) => onChange(setKey(object, name, next,
            (required.includes(name) && Array.isArray(next)) || (isFilter(prop) && next !== undefined)))} />
      ))}
    </div>
  );
}

export function SchemaField({ id, name, schema, required, value, onChange, path, problemsAt, ctx }) {
  const label = humanize(name);
  const help = schema.description || "";
  const problems = problemsAt(path);
  const kind = typeOf(schema);
  const optional = required ? null : <span className="field__optional">(optional)</span>;

  if (isFilter(schema)) {
    return <FilterBuilder id={id} label={label} value={value} onChange={onChange} help={help}
      problems={problems} ctx={ctx} />;
  }
  if (isFileSource(schema) && ctx && ctx.campaignId) {
    return <FileSource id={id} label={label} value={value} onChange={onChange} help={help} ctx={ctx}
      problems={[...problems, ...problemsAt(`${path}.upload`), ...problemsAt(`${path}.variable`)]} />;
  }
  if (schema.oneOf || schema.anyOf && !schema.properties || kind === "any") {
    return <JsonField id={id} label={label} value={value} onChange={onChange} help={help} problems={problems} />;
  }
  if (schema.enum) {
    return (
      <div className="field">
        <label className="field__label" htmlFor={id}>{label} {optional}</label>
        <select id={id} value={value === undefined ? "" : String(value)} onChange={(e) => {
          const picked = schema.enum.find((x) => String(x) === e.target.value);
          onChange(e.target.value === "" ? undefined : picked);
        }}>
          {!required ? <option value="">{schema.default !== undefined ? `Default (${schema.default})` : "—"}</option> : null}
          {schema.enum.map((option) => <option key={String(option)} value={String(option)}>{String(option)}</option>)}
        </select>
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
      </div>
    );
  }
  if (kind === "boolean") {
    return (
      <div className="field cv-field--check">
        <label className="cv-check" htmlFor={id}>
          <input id={id} type="checkbox" checked={value === undefined ? Boolean(schema.default) : Boolean(value)}
            onChange={(e) => onChange(e.target.checked)} />
          <span className="field__label">{label}</span>
        </label>
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
      </div>
    );
  }
  if (kind === "integer" || kind === "number") {
    return (
      <div className="field">
        <label className="field__label" htmlFor={id}>{label} {optional}</label>
        <input id={id} type="number" step={kind === "integer" ? 1 : "any"} min={schema.minimum}
          max={schema.maximum} placeholder={schema.default !== undefined ? String(schema.default) : ""}
          value={value === undefined || value === null ? "" : value}
          onChange={(e) => {
            const raw = e.target.value;
            if (raw === "") { onChange(undefined); return; }
            const n = Number(raw);
            onChange(Number.isNaN(n) ? raw : n);
          }} />
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
      </div>
    );
  }
  if (kind === "string" && ctx && ctx.liquid && isLiquidPath(path)) {
    return <LiquidField id={id} label={label} optional={optional} value={value} onChange={onChange} help={help}
      multiline={/\.(html|text|body)$/.test(path)} readOnly={ctx.readOnly} names={ctx.liquid.names}
      problems={mergeLineProblems(ctx.liquid.problemsAt(path), problems)} />;
  }
  if (kind === "string") {
    const long = (schema.maxLength || 0) > 1000;
    const Tag = long ? "textarea" : "input";
    return (
      <div className="field">
        <label className="field__label" htmlFor={id}>{label} {optional}</label>
        <Tag id={id} type={long ? undefined : "text"} rows={long ? 5 : undefined}
          placeholder={schema.default !== undefined ? String(schema.default) : ""}
          value={value === undefined || value === null ? "" : value}
          onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
      </div>
    );
  }
  if (kind === "array") {
    const items = schema.items || {};
    if (typeOf(items) === "object" && items.properties) {
      return <ListOfObjects id={id} label={label} schema={schema} value={value} onChange={onChange} help={help}
        path={path} problemsAt={problemsAt} ctx={ctx} />;
    }
    return <ListOfValues id={id} label={label} schema={schema} value={value} onChange={onChange} help={help}
      problems={problems} />;
  }
  if (kind === "object" && schema.properties) {
    return (
      <fieldset className="cv-fieldset">
        <legend className="field__label">{label} {optional}</legend>
        {help ? <p className="field__help">{help}</p> : null}
        <FieldProblems problems={problems} />
        <ObjectFields id={id} schema={schema} value={value} path={path} problemsAt={problemsAt} ctx={ctx}
          onChange={(next) => onChange(isEmpty(next) ? undefined : next)} />
      </fieldset>
    );
  }
  return <JsonField id={id} label={label} value={value} onChange={onChange} help={help} problems={problems} />;
}
