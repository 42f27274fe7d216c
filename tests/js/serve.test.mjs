// scripts/serve.py answers every path without a crash of its handler and lists no folder; every
// file, the page at "/" too, comes with a validator.
//   node --test tests/js/
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";

let server, port;

before(async () => {
  server = spawn("python3", ["scripts/serve.py", "--port", "0", "--quiet"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve) => server.stdout.once("data", (d) => resolve(`${d}`)));
  port = Number(/:(\d+)\//.exec(line)[1]);
});
after(() => server.kill());

/** GET `path` as it is written (no normalisation), with `headers`. */
const get = (path, headers = {}) =>
  new Promise((resolve, reject) => {
    const r = request({ host: "127.0.0.1", port, path, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, body: `${Buffer.concat(chunks)}` }),
      );
    });
    r.on("error", reject);
    r.end();
  });

test("a path with a NUL byte is refused, and the server goes on answering", async () => {
  assert.equal((await get("/%00")).status, 400);
  assert.equal((await get("/app.js%00.png")).status, 400);
  assert.equal((await get("/app.js")).status, 200);
});

test("no folder is listed", async () => {
  assert.equal((await get("/views/")).status, 404);
  assert.equal((await get("/models/storyworld/")).status, 404);
  assert.equal((await get("/views")).status, 301);
});

test("the page at / has a validator, and a reload revalidates it", async () => {
  for (const encoding of ["gzip", ""]) {
    const first = await get("/", { "accept-encoding": encoding });
    assert.equal(first.status, 200);
    assert.match(first.headers.etag, /^".+"$/);
    assert.equal(first.headers["cache-control"], "no-cache");
    const again = await get("/", {
      "accept-encoding": encoding,
      "if-none-match": first.headers.etag,
    });
    assert.equal(again.status, 304);
  }
  assert.match((await get("/", {})).body, /<title>webdpo/);
});

test("nothing outside www/ and pkg/ is served", async () => {
  for (const path of ["/../Cargo.toml", "/pkg/../../Cargo.toml", "/%2e%2e/Cargo.toml"])
    assert.equal((await get(path)).status, 404, path);
});
