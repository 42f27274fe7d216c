// The build stamp (scripts/stamp.sh) that lets scripts/build-web.sh skip wasm-bindgen and
// wasm-opt: unchanged inputs and outputs are fresh; any changed file, tool version or missing
// output is stale and named.  node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "stamp-"));
const stamp = join(dir, ".stamp");
const wasm = join(dir, "webdpo.wasm");
const out = join(dir, "webdpo_bg.wasm");

function run(command, { version = "wasm-opt 132" } = {}) {
  const args = [`file:webdpo.wasm=${wasm}`, `text:wasm-opt=${version}`, `file:pkg=${out}`];
  const r = spawnSync("bash", ["scripts/stamp.sh", command, stamp, ...args], { encoding: "utf8" });
  return { fresh: r.status === 0, said: r.stdout.trim(), status: r.status };
}

test("no stamp: built", () => {
  writeFileSync(wasm, "cargo output 1");
  writeFileSync(out, "optimised 1");
  assert.deepEqual(run("check"), { fresh: false, said: "no stamp yet", status: 1 });
});

test("nothing changed: skipped", () => {
  assert.equal(run("write").status, 0);
  assert.deepEqual(run("check"), { fresh: true, said: "", status: 0 });
});

test("the crate changed: rebuilt, and the changed input is named", () => {
  writeFileSync(wasm, "cargo output 2");
  assert.deepEqual(run("check"), { fresh: false, said: "changed: webdpo.wasm", status: 1 });
  run("write");
  assert.equal(run("check").fresh, true);
});

test("a tool's version changed: rebuilt", () => {
  assert.deepEqual(run("check", { version: "wasm-opt 133" }).said, "changed: wasm-opt");
});

test("an output was edited or removed: rebuilt", () => {
  writeFileSync(out, "edited by hand");
  assert.equal(run("check").said, "changed: pkg");
  rmSync(out);
  assert.equal(run("check").said, "changed: pkg");
});

test("a malformed argument is refused", () => {
  const r = spawnSync("bash", ["scripts/stamp.sh", "check", stamp, "webdpo.wasm"], {
    encoding: "utf8",
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /expected file:NAME=PATH or text:NAME=VALUE/);
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
