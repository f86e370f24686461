// The file of a Load file activity (`config.file`): a file uploaded to the campaign, chosen among
// the campaign's uploads or uploaded from here (POST /api/v1/campaigns/<id>/files/, multipart), or
// an event variable naming one. The chosen file shows its name and size, the first lines of a file
// just picked (read in the browser: the API has no row preview), and the columns the API proposes
// for it (GET …/files/<file>/columns), which "Use these columns" copies into `config.columns`.
import { useEffect, useState } from "react";
import { results } from "./api.js";

const PREVIEW_LINES = 6;
const PREVIEW_BYTES = 64 * 1024;
const SAMPLE_OPTIONS = ["format", "delimiter", "quote", "encoding", "header", "skip_lines"];

export function isFileSource(schema) {
  return Array.isArray(schema && schema.oneOf)
    && schema.oneOf.some((s) => s && s.properties && s.properties.upload);
}

export function formatSize(bytes) {
  if (bytes === null || bytes === undefined) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function describe(file) {
  return `${file.name} · ${formatSize(file.size)} · ${new Date(file.created_at).toLocaleString("en-GB")}`;
}

/** The first lines of a local file, read in the browser (no upload needed to see them). */
async function firstLines(file) {
  const text = await file.slice(0, PREVIEW_BYTES).text();
  return text.split(/\r?\n/).slice(0, PREVIEW_LINES).filter((line, i, all) => line !== "" || i < all.length - 1);
}

function errorText(error) {
  const details = Object.values(error.fields || {}).flat().map((x) => (typeof x === "string" ? x : x.message));
  return [error.message, ...details.filter((d) => d && d !== error.message)].join(" ");
}

export function FileSource({ id, label, value, onChange, help, problems, ctx }) {
  const { api, campaignId, nodeConfig, setNodeConfig, readOnly } = ctx;
  const spec = value && typeof value === "object" ? value : {};
  const [mode, setMode] = useState("variable" in spec ? "variable" : "upload");
  const [files, setFiles] = useState(null);
  const [listError, setListError] = useState("");
  const [uploading, setUploading] = useState("");
  const [uploadError, setUploadError] = useState("");
  const [lines, setLines] = useState(null); // {name, lines} of the file picked here
  const [columns, setColumns] = useState(null); // {columns} | {error} | {loading}
  const chosen = files && spec.upload !== undefined ? files.find((f) => f.id === spec.upload) : null;
  const options = {};
  for (const name of SAMPLE_OPTIONS) if (nodeConfig && nodeConfig[name] !== undefined) options[name] = nodeConfig[name];
  const optionsKey = JSON.stringify(options);

  useEffect(() => {
    // Follow outside changes (undo, the JSON editor).
    if ("variable" in spec) setMode("variable");
    else if ("upload" in spec) setMode("upload");
  }, [JSON.stringify(spec)]); // eslint-disable-line

  useEffect(() => {
    let live = true;
    api.get(`campaigns/${campaignId}/files/?page_size=100`)
      .then((data) => { if (live) setFiles(results(data)); })
      .catch((error) => { if (live) { setFiles([]); setListError(error.message); } });
    return () => { live = false; };
  }, [api, campaignId]);

  useEffect(() => {
    // The columns the API proposes for the chosen file, read with the activity's options.
    if (mode !== "upload" || typeof spec.upload !== "number") { setColumns(null); return undefined; }
    let live = true;
    setColumns({ loading: true });
    const query = new URLSearchParams();
    for (const [name, v] of Object.entries(options)) query.set(name, String(v));
    const timer = setTimeout(() => {
      api.get(`campaigns/${campaignId}/files/${spec.upload}/columns?${query}`)
        .then((answer) => { if (live) setColumns({ columns: answer.columns || [] }); })
        .catch((error) => { if (live) setColumns({ error: errorText(error) }); });
    }, 300);
    return () => { live = false; clearTimeout(timer); };
  }, [api, campaignId, mode, spec.upload, optionsKey]); // eslint-disable-line

  async function upload(file) {
    setUploadError("");
    setUploading(file.name);
    try {
      setLines({ name: file.name, lines: await firstLines(file) });
    } catch (exc) {
      setLines(null);
    }
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const stored = await api.upload(`campaigns/${campaignId}/files/`, form);
      setFiles((list) => [stored, ...(list || []).filter((f) => f.id !== stored.id)]);
      onChange({ upload: stored.id });
    } catch (error) {
      setUploadError(`Not uploaded: ${errorText(error)}`);
    } finally {
      setUploading("");
    }
  }

  const selectId = `${id}-upload`;
  const inputId = `${id}-new`;
  const variableId = `${id}-variable`;
  const variables = (ctx.variables || []).map((v) => v.name).filter(Boolean);
  return (
    <fieldset className="cv-fieldset cv-file" data-testid="file-source">
      <legend className="field__label">{label}</legend>
      <div className="cv-checks" role="radiogroup" aria-label={`Where the ${label.toLowerCase()} comes from`}>
        <label className="cv-check">
          <input type="radio" name={`${id}-mode`} checked={mode === "upload"} onChange={() => {
            setMode("upload");
            onChange(undefined);
          }} />
          <span>Uploaded to the campaign</span>
        </label>
        <label className="cv-check">
          <input type="radio" name={`${id}-mode`} checked={mode === "variable"} onChange={() => {
            setMode("variable");
            onChange(undefined);
          }} />
          <span>Named by an event variable</span>
        </label>
      </div>
      {mode === "upload" ? (
        <>
          <div className="field">
            <label className="field__label" htmlFor={selectId}>Uploaded file</label>
            <select id={selectId} value={spec.upload === undefined ? "" : String(spec.upload)}
              onChange={(e) => onChange(e.target.value === "" ? undefined : { upload: Number(e.target.value) })}>
              <option value="">{files === null ? "Loading the files…" : files.length ? "— choose a file —"
                : "No file uploaded yet"}</option>
              {spec.upload !== undefined && files && !chosen
                ? <option value={String(spec.upload)}>File #{spec.upload} (not among the campaign's files)</option> : null}
              {(files || []).map((f) => <option key={f.id} value={String(f.id)}>{describe(f)}</option>)}
            </select>
            {listError ? <p className="field__errors">The campaign's files cannot be listed: {listError}</p> : null}
          </div>
          {!readOnly ? (
            <div className="field">
              <label className="field__label" htmlFor={inputId}>Upload a file <span className="field__optional">
                (CSV or JSON lines)</span></label>
              <input id={inputId} type="file" accept=".csv,.tsv,.txt,.jsonl,.ndjson,.json,text/csv"
                disabled={Boolean(uploading)}
                onChange={(e) => {
                  const file = e.target.files && e.target.files[0];
                  e.target.value = "";
                  if (file) upload(file);
                }} />
            </div>
          ) : null}
          <div aria-live="polite">
            {uploading ? <p className="muted">Uploading {uploading}…</p> : null}
            {uploadError ? <p className="field__errors" role="alert">{uploadError}</p> : null}
            {chosen ? (
              <p className="cv-file__chosen" data-testid="file-chosen">
                <strong>{chosen.name}</strong> · {formatSize(chosen.size)}
                <span className="muted small"> · uploaded {new Date(chosen.created_at).toLocaleString("en-GB")}
                  {chosen.created_by ? ` by ${chosen.created_by}` : ""}</span></p>
            ) : null}
          </div>
          {chosen && lines && lines.name === chosen.name ? (
            <figure className="cv-file__lines" data-testid="file-preview">
              <figcaption className="small muted">First lines of {chosen.name}</figcaption>
              <pre tabIndex={0}>{lines.lines.join("\n")}</pre>
            </figure>
          ) : null}
          {columns ? (
            <div className="cv-file__columns" data-testid="file-columns">
              {columns.loading ? <p className="muted small">Reading the file's columns…</p>
                : columns.error ? <p className="field__errors">{columns.error}</p> : (
                  <>
                    <table className="table cv-file__table" aria-label="Columns found in the file">
                      <thead><tr><th scope="col">Column</th><th scope="col">Type</th><th scope="col">Source</th></tr></thead>
                      <tbody>{columns.columns.map((c) => (
                        <tr key={c.name}><td>{c.name}</td><td>{c.type || "string"}</td>
                          <td>{c.source === undefined ? c.name : String(c.source)}</td></tr>))}</tbody>
                    </table>
                    {!readOnly && setNodeConfig ? (
                      <button type="button" className="btn btn--secondary btn--sm" disabled={!columns.columns.length}
                        onClick={() => setNodeConfig({ ...(nodeConfig || {}), columns: columns.columns })}>
                        Use these columns</button>) : null}
                  </>
                )}
            </div>
          ) : null}
        </>
      ) : (
        <div className="field">
          <label className="field__label" htmlFor={variableId}>Event variable</label>
          <input id={variableId} type="text" list={`${variableId}-list`} value={spec.variable || ""}
            onChange={(e) => onChange(e.target.value ? { variable: e.target.value } : undefined)} />
          <datalist id={`${variableId}-list`}>{variables.map((v) => <option key={v} value={v} />)}</datalist>
          <p className="field__help">Its value is the name (the latest upload of that name) or the id of one of the
            campaign's files.</p>
        </div>
      )}
      {help ? <p className="field__help">{help}</p> : null}
      {problems && problems.length ? (
        <ul className="field__errors cv-field-problems">{problems.map((p, i) => <li key={i}>{p.message}</li>)}</ul>
      ) : null}
    </fieldset>
  );
}
