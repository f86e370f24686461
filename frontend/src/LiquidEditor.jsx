// The field of a message's Liquid template: CodeMirror 6 with @codemirror/lang-liquid (src/liquid/,
// built apart into static/canvas/liquid.js and loaded the first time a message is edited), the
// content API's problems listed under the field ("Line 2: …") and marked on their line. Should the
// editor not load, the field is a plain text area, with the same label and problems.
import { useEffect, useRef, useState } from "react";

/** The content parts that are Liquid templates, by config path (docs/channels.md). */
const LIQUID_PATH = /^config\.content\.(subject|preheader|html|text|title|body|deep_link|data\.[^.]+|columns\.\d+\.value)$/;

export function isLiquidPath(path) {
  return LIQUID_PATH.test(String(path || ""));
}

let source = "";
let loading = null;

/** Where the editor's bundle is (the page's static URL of canvas/liquid.js). */
export function setLiquidSource(url) {
  source = url || "";
}

function loadEditor() {
  if (window.CanvasLiquid) return Promise.resolve(window.CanvasLiquid);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      if (!source) { reject(new Error("The page does not say where the Liquid editor is.")); return; }
      const script = document.createElement("script");
      script.src = source;
      script.async = true;
      script.onload = () => (window.CanvasLiquid ? resolve(window.CanvasLiquid)
        : reject(new Error("The Liquid editor did not load.")));
      script.onerror = () => reject(new Error("The Liquid editor cannot be loaded."));
      document.head.appendChild(script);
    }).catch((error) => { loading = null; throw error; });
  }
  return loading;
}

function LineProblems({ id, problems }) {
  if (!problems.length) return null;
  return (
    <ul className="field__errors cv-liquid__problems" id={id} data-testid="liquid-problems">
      {problems.map((p, i) => <li key={i}>{p.line ? `Line ${p.line}: ` : ""}{p.message}</li>)}
    </ul>
  );
}

/** A Liquid template field: `value` in, `onChange(text | undefined)` out. `problems`: this part's
 *  problems ({line, message}); `names`: {fields, variables} to complete. One line (Enter refused,
 *  line breaks become spaces) unless `multiline`. */
export function LiquidField({ id, label, value, onChange, multiline, readOnly, problems, names, help, optional }) {
  const host = useRef(null);
  const editor = useRef(null);
  const change = useRef(onChange);
  change.current = onChange;
  const [state, setState] = useState(window.CanvasLiquid ? "ready" : "loading"); // loading | ready | failed
  const labelId = `${id}-label`;
  const problemsId = `${id}-problems`;
  const helpId = `${id}-help`;
  const listed = problems || [];
  const text = value == null ? "" : String(value);
  const latest = useRef({ text, listed, names, readOnly });
  latest.current = { text, listed, names, readOnly };

  useEffect(() => {
    let live = true;
    loadEditor().then((lib) => {
      if (!live || !host.current) return;
      const now = latest.current;
      editor.current = lib.createEditor({
        parent: host.current, doc: now.text, multiline, readOnly: now.readOnly, names: now.names,
        placeholder: multiline ? "Liquid template, e.g. Hello {{ profile.first_name | default: \"friend\" }}" : "",
        attributes: { id, "aria-labelledby": labelId, "data-testid": "liquid-input",
          "aria-describedby": [help ? helpId : "", problemsId].filter(Boolean).join(" ") },
        onChange: (next) => change.current(next === "" ? undefined : next),
      });
      editor.current.setProblems(now.listed);
      setState("ready");
    }).catch(() => { if (live) setState("failed"); });
    return () => {
      live = false;
      if (editor.current) { editor.current.destroy(); editor.current = null; }
    };
  }, []); // eslint-disable-line

  useEffect(() => { if (editor.current) editor.current.setText(text); }, [text]);
  useEffect(() => { if (editor.current) editor.current.setProblems(listed); }, [JSON.stringify(listed), text]); // eslint-disable-line
  useEffect(() => { if (editor.current) editor.current.setNames(names); }, [JSON.stringify(names || null)]); // eslint-disable-line
  useEffect(() => { if (editor.current) editor.current.setReadOnly(readOnly); }, [readOnly]);

  const describedBy = [help ? helpId : "", problemsId].filter(Boolean).join(" ");
  return (
    <div className={"field cv-liquid" + (listed.length ? " field--invalid" : "")} data-liquid={id}>
      <label className="field__label" id={labelId} htmlFor={id}
        onClick={(e) => { if (editor.current) { e.preventDefault(); editor.current.focus(); } }}>
        {label} {optional} <span className="field__optional">(Liquid)</span></label>
      {state === "failed" ? (
        <textarea id={id} rows={multiline ? 5 : 1} spellCheck="false" className="cv-json" value={text}
          readOnly={readOnly} aria-describedby={describedBy}
          onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />
      ) : (
        <div ref={host} className={"cv-liquid__editor" + (multiline ? " cv-liquid__editor--multi" : "")}>
          {state === "loading" ? <p className="muted small cv-liquid__loading">Loading the Liquid editor…</p> : null}
        </div>
      )}
      {help ? <p className="field__help" id={helpId}>{help}</p> : null}
      <div id={problemsId} aria-live="polite">
        <LineProblems id={`${problemsId}-list`} problems={listed} />
      </div>
    </div>
  );
}
