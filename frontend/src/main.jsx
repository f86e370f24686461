// Mounts the campaign canvas on the element the campaign page renders (#campaign-canvas), with
// what the page knows: the campaign, the API base, the CSRF token and what the role may do.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ReactFlowProvider } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import "./canvas.css";
import { makeApi } from "./api.js";
import { Editor } from "./Editor.jsx";
import { setLiquidSource } from "./LiquidEditor.jsx";

function mount(element, restoreFallback) {
  const d = element.dataset;
  const config = {
    campaignId: Number(d.campaign),
    canBuild: d.canBuild === "true",
    canRun: d.canRun === "true",
    dimension: d.dimension || "profile",
    runId: d.run ? Number(d.run) : null,
    jsonEditor: d.jsonEditor || "",
    restoreFallback,
  };
  const api = makeApi({ base: d.api || "/api/v1/", csrf: d.csrf || "" });
  setLiquidSource(d.liquidSrc || "");
  createRoot(element).render(
    <StrictMode>
      <ReactFlowProvider>
        <Editor api={api} config={config} />
      </ReactFlowProvider>
    </StrictMode>,
  );
}

function start() {
  const element = document.getElementById("campaign-canvas");
  if (!element) return;
  // What the server drew for pages without JavaScript (the draft's problems, the static graph,
  // the header's lifecycle buttons) goes stale as soon as the canvas edits, or duplicates the
  // canvas's toolbar: the canvas shows all of it, live. A canvas that cannot load gives it back.
  const replaced = [...document.querySelectorAll("[data-canvas-replaces]")];
  replaced.forEach((el) => { el.hidden = true; el.style.display = "none"; });
  mount(element, () => replaced.forEach((el) => { el.hidden = false; el.style.display = ""; }));
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
