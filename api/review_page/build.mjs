// Builds the review page into dist/: esbuild bundles src/main.ts (with the CSS it
// imports: the page's own and chessground's, pieces included as data: URIs) into one
// JavaScript and one CSS file with content hashes in their names, and index.html is
// written pointing at them. Nothing is fetched at run time: the API serves dist/index.html
// at / and dist/review/ under /review/.
//
//   node build.mjs           production build (minified, with source maps)
//   node build.mjs --watch   rebuild on change (development build of Apollo Client)

import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const ROOT = dirname(fileURLToPath(import.meta.url));
const OUT = join(ROOT, "dist");
const watch = process.argv.includes("--watch");

/** index.html with the hashed bundle names in place of its placeholders. */
function writeIndex(metafile) {
  const outputs = Object.entries(metafile.outputs);
  const find = (extension) => {
    const found =
      outputs.find(([path, output]) => output.entryPoint && path.endsWith(extension)) ??
      outputs.find(([path]) => path.endsWith(extension) && !path.endsWith(".map"));
    if (!found) throw new Error(`esbuild wrote no ${extension} file`);
    return basename(found[0]);
  };
  const html = readFileSync(join(ROOT, "index.html"), "utf8")
    .replace("{{script}}", `review/${find(".js")}`)
    .replace("{{style}}", `review/${find(".css")}`);
  writeFileSync(join(OUT, "index.html"), html);
}

const options = {
  absWorkingDir: ROOT,
  entryPoints: ["src/main.ts"],
  outdir: join(OUT, "review"),
  entryNames: "review-[hash]",
  bundle: true,
  format: "esm",
  target: ["chrome100", "firefox100", "safari15"],
  // Apollo Client picks its production build (no dev warnings) by export condition.
  conditions: [watch ? "development" : "production"],
  define: { "process.env.NODE_ENV": JSON.stringify(watch ? "development" : "production") },
  minify: !watch,
  sourcemap: "linked",
  legalComments: "linked",
  banner: {
    js: "/* Chess analysis review page (api/review_page). Includes @lichess-org/chessground and chessops, GPL-3.0-or-later: the source is api/review_page and its package-lock.json. */",
  },
  metafile: true,
  logLevel: "warning",
  plugins: [
    {
      name: "index-html",
      setup(build) {
        build.onEnd((result) => {
          if (result.metafile) writeIndex(result.metafile);
        });
      },
    },
  ],
};

rmSync(OUT, { recursive: true, force: true });
mkdirSync(join(OUT, "review"), { recursive: true });
copyFileSync(join(ROOT, "favicon.svg"), join(OUT, "review", "favicon.svg"));
if (watch) {
  const context = await esbuild.context(options);
  await context.watch();
  console.log("watching src/ (dist/ is rebuilt on change)");
} else {
  const result = await esbuild.build(options);
  const size = Object.entries(result.metafile.outputs)
    .filter(([path]) => !path.endsWith(".map"))
    .map(([path, output]) => `${basename(path)} ${(output.bytes / 1024).toFixed(0)} KB`);
  console.log(`built dist/: ${size.join(", ")}`);
}
