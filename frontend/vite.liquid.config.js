// Builds the Liquid editor (CodeMirror 6 + @codemirror/lang-liquid, src/liquid/codemirror.js) into
// ../static/canvas/liquid.js: an IIFE defining the global `CanvasLiquid`, loaded by the canvas the
// first time a message is edited. Runs after vite.config.js (which empties the folder first).
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  esbuild: { legalComments: "none" },
  build: {
    outDir: "../static/canvas",
    emptyOutDir: false,
    target: "es2020",
    sourcemap: false,
    copyPublicDir: false,
    rollupOptions: {
      input: "src/liquid/codemirror.js",
      preserveEntrySignatures: "strict",
      output: {
        format: "iife",
        name: "CanvasLiquid",
        entryFileNames: "liquid.js",
        inlineDynamicImports: true,
      },
    },
  },
});
