// The offline release (www/app-files.js) holds every module the app's pages and workers import,
// so that offline nothing is fetched from an older release or missing.
//   node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

const self = {};
new Function("self", readFileSync("www/app-files.js", "utf8"))(self);
const listed = new Set(self.APP_FILES);

/** Every module `entry` (a path under www/) imports, itself included. */
function imported(entry, seen = new Set()) {
  if (seen.has(entry)) return seen;
  seen.add(entry);
  const source = readFileSync(join("www", entry), "utf8");
  for (const [, spec] of source.matchAll(/(?:import|from)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
    const path = normalize(join(dirname(entry), spec));
    if (!path.startsWith("pkg/")) imported(path, seen);
  }
  return seen;
}

test("every module of the app, its workers and the sweep page is kept offline", () => {
  for (const entry of ["app.js", "worker.js", "sweep.js", "sweep-worker.js"])
    for (const module of imported(entry))
      assert.ok(listed.has(module), `${module} (from ${entry})`);
});

test("the page, the wasm and the built-in model are in the release", () => {
  for (const file of ["./", "index.html", "pkg/webdpo.js", "pkg/webdpo_bg.wasm"])
    assert.ok(listed.has(file), file);
  assert.ok(listed.has("models/storyworld/model.safetensors"));
});

test("the threaded CPU build is kept once used, not downloaded by every page", () => {
  for (const file of ["pkg/threads/webdpo.js", "pkg/threads/webdpo_bg.wasm"]) {
    assert.ok(self.KEPT_ON_USE.includes(file), file);
    assert.ok(!listed.has(file), file);
  }
});
