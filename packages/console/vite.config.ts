// Builds the console into dist/web, served by the Capsule server under /console/ (no CDN: every
// asset is bundled). dist/types and dist/test belong to tsc, so only dist/web is emptied.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  oxc: { jsx: { runtime: "automatic", importSource: "react" } },
  build: { outDir: "dist/web", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
});
