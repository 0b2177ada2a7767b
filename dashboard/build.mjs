// Bundles src/main.ts with uPlot into dist/: one script, one stylesheet,
// one page. Everything the page loads comes from weir itself.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outfile: "dist/app.js",
  logLevel: "warning",
});
const css = readFileSync("node_modules/uplot/dist/uPlot.min.css", "utf8") + readFileSync("src/style.css", "utf8");
writeFileSync("dist/app.css", css);
copyFileSync("src/index.html", "dist/index.html");
