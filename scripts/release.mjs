// The offline release: a hash over every file the service worker keeps (www/app-files.js: at
// once, and on use), written to www/release.js, which www/sw.js imports. Run by
// scripts/build-web.sh.
//   node scripts/release.mjs
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";

const self = {};
new Function("self", readFileSync("www/app-files.js", "utf8"))(self);
// Every script and module of the two wasm builds is kept: a file wasm-bindgen writes under a new
// name (its snippets' folders are named by a hash) must be added to the list.
const built = ["pkg", "pkg/threads"].flatMap((dir) =>
  readdirSync(dir, { recursive: true })
    .filter((f) => /\.(js|wasm)$/.test(f) && !/^(api|models|threads)\//.test(f))
    .map((f) => `${dir}/${f}`),
);
const files = [...self.APP_FILES, ...self.KEPT_ON_USE];
const missing = built.filter((f) => !files.includes(f));
if (missing.length) {
  console.error(
    `release.mjs: add to www/app-files.js (the service worker keeps them offline): ${missing.join(", ")}`,
  );
  process.exit(1);
}
const hash = createHash("sha256");
for (const file of files) {
  const path = file === "./" ? "www/index.html" : file.startsWith("pkg/") ? file : `www/${file}`;
  hash.update(`${file}\0`);
  hash.update(readFileSync(path));
}
const release = hash.digest("hex").slice(0, 16);
const text =
  "// Written by scripts/release.mjs: the release of the files www/sw.js keeps offline.\n" +
  `self.RELEASE = "${release}";\n`;
// Rewritten only when the release changed: its date is part of the server's validator.
if (!existsSync("www/release.js") || readFileSync("www/release.js", "utf8") !== text)
  writeFileSync("www/release.js", text);
console.log(`release.mjs: release ${release} (${files.length} files)`);
