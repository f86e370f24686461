// rollup is pinned (package.json "overrides") to a release whose platform binaries are all
// published, so that package-lock.json is complete and `npm ci` works on every platform.
// Builds the campaign canvas into ../static/canvas/ with fixed file names (canvas.js,
// canvas.css) so the Django template includes them directly; the build is committed.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  esbuild: { jsx: "automatic", legalComments: "none" },
  define: { "process.env.NODE_ENV": JSON.stringify("production") },
  build: {
    outDir: "../static/canvas",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    cssCodeSplit: false,
    copyPublicDir: false,
    rollupOptions: {
      input: "src/main.jsx",
      // @xyflow/react's "use client" directive means nothing outside React Server Components.
      onwarn(warning, warn) {
        if (warning.code !== "MODULE_LEVEL_DIRECTIVE") warn(warning);
      },
      output: {
        format: "iife",
        entryFileNames: "canvas.js",
        assetFileNames: "canvas[extname]",
        inlineDynamicImports: true,
      },
    },
  },
});
