import { defineConfig } from "vite";

// The service serves dist/ itself: index.html at its root path and the hashed files
// under assets/. Relative URLs keep it working behind FASTSHIP_ROOT_PATH.
export default defineConfig({
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Nothing inline: the content security policy allows scripts and styles from
    // the service's own origin only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
  server: {
    // `npm run dev`: the UI with hot reload, the API from `make run`.
    proxy: { "/api": "http://127.0.0.1:8000" },
  },
});
