// The editor of a message's Liquid templates (CodeMirror 6 with @codemirror/lang-liquid): syntax
// highlighting, completion of Liquid's tags and filters and of the names a message can use
// (profile.<field>, record.<field>, vars.<variable>, row, campaign.name, message.unsubscribe_url),
// and the content API's problems marked on their line and listed under the field ("Line 2: …").
// Tab is left to the page (it moves the focus on), so the editor never traps the keyboard.
import { useEffect, useRef } from "react";
import { autocompletion, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { liquid } from "@codemirror/lang-liquid";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { Compartment, EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, placeholder as placeholderText } from "@codemirror/view";
import { tags } from "@lezer/highlight";

/** The content parts that are Liquid templates, by config path (docs/channels.md). */
const LIQUID_PATH = /^config\.content\.(subject|preheader|html|text|title|body|deep_link|data\.[^.]+|columns\.\d+\.value)$/;

export function isLiquidPath(path) {
  return LIQUID_PATH.test(String(path || ""));
}

// Colours with a 4.5:1 contrast on white; the kinds also differ in weight or style.
const liquidStyle = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.definitionKeyword], color: "#7a2e98", fontWeight: "600" },
  { tag: [tags.brace, tags.squareBracket, tags.processingInstruction], color: "#7a2e98", fontWeight: "600" },
  { tag: tags.variableName, color: "#0b5394" },
  { tag: [tags.propertyName, tags.attributeName], color: "#1d6b4f" },
  { tag: [tags.function(tags.variableName), tags.function(tags.propertyName)], color: "#9a3412", fontStyle: "italic" },
  { tag: [tags.string, tags.attributeValue], color: "#8a4b08" },
  { tag: [tags.number, tags.bool, tags.atom], color: "#005c7a" },
  { tag: [tags.operator, tags.compareOperator, tags.logicOperator, tags.separator, tags.punctuation], color: "#555" },
  { tag: [tags.comment, tags.blockComment], color: "#5d6b7a", fontStyle: "italic" },
  { tag: [tags.tagName, tags.angleBracket], color: "#175cd3" },
  { tag: tags.invalid, color: "#b42318", textDecoration: "underline" },
]);

const ROOT_NAMES = [
  { label: "profile", type: "variable", detail: "the recipient's profile" },
  { label: "record", type: "variable", detail: "the recipient's record" },
  { label: "row", type: "variable", detail: "the population's columns" },
  { label: "vars", type: "variable", detail: "event variables" },
  { label: "campaign", type: "variable", detail: "campaign.name" },
  { label: "message", type: "variable", detail: "message.unsubscribe_url" },
];

function completionConfig(names) {
  const fields = (names && names.fields) || [];
  const variables = (names && names.variables) || [];
  return {
    variables: ROOT_NAMES,
    properties: (path) => {
      if (path.length !== 1) return [];
      const root = path[0];
      if (root === "profile" || root === "record") return fields.map((f) => ({ label: f, type: "property" }));
      if (root === "vars") return variables.map((v) => ({ label: v, type: "property" }));
      if (root === "campaign") return [{ label: "name", type: "property" }];
      if (root === "message") return [{ label: "unsubscribe_url", type: "property" }];
      return [];
    },
  };
}

/** CodeMirror diagnostics from the content API's problems ({line, message}). */
function diagnosticsOf(doc, problems) {
  return (problems || []).map((p) => {
    const number = p.line && p.line >= 1 && p.line <= doc.lines ? p.line : 1;
    const line = doc.line(number);
    return { from: line.from, to: Math.max(line.to, line.from), severity: "error", message: p.message };
  });
}

function LineProblems({ id, problems }) {
  if (!problems.length) return null;
  return (
    <ul className="field__errors cv-liquid__problems" id={id} data-testid="liquid-problems">
      {problems.map((p, i) => <li key={i}>{p.line ? `Line ${p.line}: ` : ""}{p.message}</li>)}
    </ul>
  );
}

// Text typed (or inserted by an input method) over a selection is applied by the editor itself:
// Chromium 156 replaces a selection that spans lines in the DOM in a way CodeMirror 6.43 reads
// wrongly ("Invalid change range", the text reverts), whereas a transaction is always right.
const replaceSelectionOnInput = EditorView.domEventHandlers({
  beforeinput(event, view) {
    const selection = view.state.selection.main;
    if (selection.empty || typeof event.data !== "string") return false;
    if (event.inputType !== "insertText" && event.inputType !== "insertReplacementText") return false;
    event.preventDefault();
    view.dispatch(view.state.replaceSelection(event.data), { userEvent: "input.type", scrollIntoView: true });
    return true;
  },
});

/** A Liquid template field: `value` in, `onChange(text | undefined)` out. `problems`: the
 *  content API's problems of this part ({line, message}); `names`: {fields, variables} to
 *  complete. One line (Enter refused) unless `multiline`. */
export function LiquidField({ id, label, value, onChange, multiline, readOnly, problems, names, help, optional,
  fieldProblems }) {
  const host = useRef(null);
  const view = useRef(null);
  const change = useRef(onChange);
  change.current = onChange;
  const completion = useRef(new Compartment());
  const editable = useRef(new Compartment());
  const labelId = `${id}-label`;
  const problemsId = `${id}-problems`;
  const helpId = `${id}-help`;
  const listed = problems || [];

  useEffect(() => {
    const extensions = [
      history(),
      replaceSelectionOnInput,
      closeBrackets(),
      keymap.of([
        ...(multiline ? [] : [{ key: "Enter", run: () => true }]),
        ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap,
      ]),
      completion.current.of(liquid(completionConfig(names))),
      autocompletion({ icons: false }),
      syntaxHighlighting(liquidStyle),
      lintGutter(),
      editable.current.of([EditorState.readOnly.of(Boolean(readOnly)), EditorView.editable.of(!readOnly)]),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({
        id, "aria-labelledby": labelId, "aria-multiline": multiline ? "true" : "false",
        "aria-describedby": [help ? helpId : "", problemsId].filter(Boolean).join(" "),
        "data-testid": "liquid-input",
      }),
      EditorView.updateListener.of((update) => {
        if (!update.docChanged) return;
        const text = update.state.doc.toString();
        change.current(text === "" ? undefined : text);
      }),
      placeholderText(multiline ? "Liquid template, e.g. Hello {{ profile.first_name | default: \"friend\" }}" : ""),
    ];
    if (multiline) extensions.unshift(lineNumbers());
    else extensions.push(EditorState.transactionFilter.of((tr) => {
      // One-line parts: a pasted line break becomes a space.
      if (!tr.docChanged || !tr.newDoc.toString().includes("\n")) return tr;
      const changes = [];
      tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
        changes.push({ from: fromA, to: toA, insert: inserted.toString().replace(/\r?\n/g, " ") });
      });
      return { changes, scrollIntoView: tr.scrollIntoView };
    }));
    view.current = new EditorView({
      parent: host.current,
      state: EditorState.create({ doc: value == null ? "" : String(value), extensions }),
    });
    return () => { view.current.destroy(); view.current = null; };
  }, []); // eslint-disable-line

  // Outside changes (undo on the canvas, another part of the form) replace the text.
  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const text = value == null ? "" : String(value);
    if (v.state.doc.toString() !== text) v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text } });
  }, [value]);

  useEffect(() => {
    const v = view.current;
    if (v) v.dispatch(setDiagnostics(v.state, diagnosticsOf(v.state.doc, listed)));
  }, [JSON.stringify(listed), value]); // eslint-disable-line

  useEffect(() => {
    const v = view.current;
    if (v) v.dispatch({ effects: completion.current.reconfigure(liquid(completionConfig(names))) });
  }, [JSON.stringify(names || null)]); // eslint-disable-line

  useEffect(() => {
    const v = view.current;
    if (v) {
      v.dispatch({ effects: editable.current.reconfigure(
        [EditorState.readOnly.of(Boolean(readOnly)), EditorView.editable.of(!readOnly)]) });
    }
  }, [readOnly]);

  return (
    <div className={"field cv-liquid" + (listed.length ? " field--invalid" : "")} data-liquid={id}>
      <label className="field__label" id={labelId} htmlFor={id}
        onClick={(e) => { e.preventDefault(); if (view.current) view.current.focus(); }}>
        {label} {optional} <span className="field__optional">(Liquid)</span></label>
      <div ref={host} className={"cv-liquid__editor" + (multiline ? " cv-liquid__editor--multi" : "")} />
      {help ? <p className="field__help" id={helpId}>{help}</p> : null}
      <div id={problemsId} aria-live="polite">
        <LineProblems id={`${problemsId}-list`} problems={listed} />
        {fieldProblems}
      </div>
    </div>
  );
}
