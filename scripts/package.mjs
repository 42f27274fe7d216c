// pkg/ as an npm package: package.json (name, version and licence from Cargo.toml; exports,
// types, the files to pack), the README for JS users (docs/npm.md) and the built-in story model,
// so that a page embedding webdpo needs no other download. Run by build-web.sh once pkg/ is
// built; `npm pack` in pkg/ then makes webdpo-<version>.tgz. Files are copied only when they
// differ, so their brotli copies stay fresh. Also the API documentation, in pkg/api/ (not packed).
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";

const cargo = readFileSync("Cargo.toml", "utf8");
const field = (name) => new RegExp(`^${name} = "([^"]+)"`, "m").exec(cargo)[1];

const MODEL = ["config.json", "tokenizer.json", "model.safetensors"].map(
  (f) => `models/storyworld/${f}`,
);
const same = (a, b) => existsSync(b) && readFileSync(a).equals(readFileSync(b));
mkdirSync("pkg/models/storyworld", { recursive: true });
for (const [from, to] of [
  ...MODEL.map((f) => [`www/${f}`, `pkg/${f}`]),
  ["docs/npm.md", "pkg/README.md"],
])
  if (!same(from, to)) copyFileSync(from, to);

const manifest = {
  name: "webdpo",
  version: field("version"),
  description: field("description"),
  license: field("license"),
  type: "module",
  main: "./webdpo.js",
  types: "./webdpo.d.ts",
  exports: {
    ".": { types: "./webdpo.d.ts", default: "./webdpo.js" },
    "./webdpo_bg.wasm": "./webdpo_bg.wasm",
    // The threaded CPU build, for cross-origin isolated pages (README).
    "./threads": { types: "./threads/webdpo.d.ts", default: "./threads/webdpo.js" },
    "./threads/webdpo_bg.wasm": "./threads/webdpo_bg.wasm",
    "./models/storyworld/*": "./models/storyworld/*",
    "./package.json": "./package.json",
  },
  files: [
    ...["webdpo.js", "webdpo.d.ts", "webdpo_bg.wasm", "webdpo_bg.wasm.d.ts"].flatMap((f) => [
      f,
      `threads/${f}`,
    ]),
    // wasm-bindgen-rayon's worker script, in a folder wasm-bindgen names by a hash.
    ...readdirSync("pkg/threads/snippets", { recursive: true })
      .filter((f) => f.endsWith(".js"))
      .map((f) => `threads/snippets/${f}`),
    ...MODEL,
  ],
  sideEffects: false,
  keywords: ["dpo", "rlhf", "preference-optimization", "webgpu", "wasm", "llm", "trl"],
};
const json = JSON.stringify(manifest, null, 2) + "\n";
if (!existsSync("pkg/package.json") || readFileSync("pkg/package.json", "utf8") !== json)
  writeFileSync("pkg/package.json", json);
console.log(`package.mjs: pkg/ is the npm package ${manifest.name}@${manifest.version}`);

// The API documentation: TypeDoc over the types wasm-bindgen writes from the Rust doc comments,
// with the README as its front page. Written again only when either is newer.
const API = "pkg/api/index.html";
const newer = (a, b) => !existsSync(b) || statSync(a).mtimeMs > statSync(b).mtimeMs;
if (newer("pkg/webdpo.d.ts", API) || newer("docs/npm.md", API)) {
  execFileSync(
    "node_modules/.bin/typedoc",
    [
      ...["--tsconfig", "tsconfig.json", "--entryPoints", "pkg/webdpo.d.ts"],
      ...["--out", "pkg/api", "--readme", "docs/npm.md"],
      ...["--name", `${manifest.name} ${manifest.version}`, "--disableSources"],
      ...["--treatWarningsAsErrors", "--logLevel", "Warn"],
    ],
    { stdio: "inherit" },
  );
  console.log("package.mjs: API documentation in pkg/api/ (TypeDoc)");
}
