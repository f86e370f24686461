// CodeMirror 6 set up for Liquid templates, built apart from the canvas (vite.liquid.config.js →
// static/canvas/liquid.js, the global `CanvasLiquid`) and loaded by the canvas only when a message
// is edited: the editor is about 570 kB of the bundle (CodeMirror's core, lang-liquid and the HTML,
// CSS and JavaScript grammars lang-liquid builds on), which a campaign without messages never needs.
//
// Highlighting (colours with a 4.5:1 contrast on white, the kinds also differing in weight or
// style), completion of Liquid's tags and filters and of the names a message can use, problems
// marked on their line (lint gutter), Tab left to the page so the editor never traps the keyboard.
import { autocompletion, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { liquid } from "@codemirror/lang-liquid";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { Compartment, EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, placeholder as placeholderText } from "@codemirror/view";
import { tags } from "@lezer/highlight";

const liquidStyle = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.definitionKeyword, tags.moduleKeyword], color: "#7a2e98", fontWeight: "600" },
  { tag: tags.brace, color: "#7a2e98", fontWeight: "600" },
  { tag: tags.variableName, color: "#0b5394" },
  { tag: [tags.propertyName, tags.attributeName], color: "#1d6b4f" },
  { tag: tags.function(tags.variableName), color: "#9a3412", fontStyle: "italic" },
  { tag: [tags.string, tags.attributeValue], color: "#8a4b08" },
  { tag: [tags.number, tags.bool, tags.atom], color: "#005c7a" },
  { tag: [tags.compareOperator, tags.logicOperator, tags.operatorKeyword, tags.punctuation], color: "#555" },
  { tag: [tags.lineComment, tags.blockComment, tags.comment], color: "#5d6b7a", fontStyle: "italic" },
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
    const line = doc.line(p.line && p.line >= 1 && p.line <= doc.lines ? p.line : 1);
    return { from: line.from, to: line.to, severity: "error", message: p.message };
  });
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

// One-line parts: a line break (pasted, inserted) becomes a space.
const oneLine = EditorState.transactionFilter.of((tr) => {
  if (!tr.docChanged || !tr.newDoc.toString().includes("\n")) return tr;
  const changes = [];
  tr.changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    changes.push({ from: fromA, to: toA, insert: inserted.toString().replace(/\r?\n/g, " ") });
  });
  return { changes, scrollIntoView: tr.scrollIntoView };
});

function editability(readOnly) {
  return [EditorState.readOnly.of(Boolean(readOnly)), EditorView.editable.of(!readOnly)];
}

/** An editor in `parent`; `onChange(text)` on every edit. Returns what the field changes later. */
export function createEditor({ parent, doc, multiline, readOnly, names, attributes, placeholder, onChange }) {
  const language = new Compartment();
  const editable = new Compartment();
  const extensions = [
    history(),
    replaceSelectionOnInput,
    closeBrackets(),
    keymap.of([
      ...(multiline ? [] : [{ key: "Enter", run: () => true }]),
      ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap,
    ]),
    language.of(liquid(completionConfig(names))),
    autocompletion({ icons: false }),
    syntaxHighlighting(liquidStyle),
    lintGutter(),
    editable.of(editability(readOnly)),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({ ...attributes, "aria-multiline": multiline ? "true" : "false" }),
    EditorView.updateListener.of((update) => {
      if (update.docChanged) onChange(update.state.doc.toString());
    }),
  ];
  if (placeholder) extensions.push(placeholderText(placeholder));
  if (multiline) extensions.unshift(lineNumbers());
  else extensions.push(oneLine);
  const view = new EditorView({ parent, state: EditorState.create({ doc: doc || "", extensions }) });
  return {
    focus: () => view.focus(),
    /** Replaces the text when it differs (an outside change: undo on the canvas). */
    setText(text) {
      if (view.state.doc.toString() !== text) view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    setProblems(problems) {
      view.dispatch(setDiagnostics(view.state, diagnosticsOf(view.state.doc, problems)));
    },
    setNames(next) {
      view.dispatch({ effects: language.reconfigure(liquid(completionConfig(next))) });
    },
    setReadOnly(next) {
      view.dispatch({ effects: editable.reconfigure(editability(next)) });
    },
    destroy: () => view.destroy(),
  };
}
