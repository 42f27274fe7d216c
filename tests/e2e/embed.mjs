// The npm package as another project uses it: `npm pack` in pkg/, the tarball installed into a
// copy of examples/embed/ (a page of its own, no bundler), that page served by itself and driven
// through generate → prefer in headless Chromium on the CPU fallback, served as it is (the
// single-threaded build) and cross-origin isolated (the threaded build, on every core):
//   node tests/e2e/embed.mjs          (pkg/ must be built: scripts/build-web.sh)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import os, { tmpdir } from "node:os";
import { extname, join, resolve, sep } from "node:path";
import { chromium } from "playwright-core";

const WAIT = { timeout: 300_000 };
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const work = mkdtempSync(join(tmpdir(), "webdpo-embed-"));
const packed = execFileSync("npm", ["pack", "--silent", "--pack-destination", work], {
  cwd: "pkg",
});
const tarball = join(work, packed.toString().trim().split("\n").pop());
const site = join(work, "embed");
cpSync(join("examples", "embed"), site, { recursive: true });
execFileSync("npm", ["install", "--no-audit", "--no-fund", tarball], {
  cwd: site,
  stdio: "ignore",
});
const installed = join(site, "node_modules", "webdpo");
const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
check(
  manifest.types === "./webdpo.d.ts" &&
    manifest.files.every((f) => existsSync(join(installed, f))) &&
    existsSync(join(installed, "README.md")),
  `${tarball.split(sep).pop()} installs ${manifest.name}@${manifest.version} with its types, ` +
    `wasm, README and the built-in model`,
);

// The API documentation TypeDoc made from the Rust doc comments (pkg/api/, by build-web.sh).
const session = readFileSync(join("pkg", "api", "classes", "Session.html"), "utf8");
check(
  session.includes("Learns from one preference") && session.includes("prefer"),
  "pkg/api/ documents the Session class from its Rust doc comments",
);

const TYPES = {
  ".html": "text/html",
  ".js": "text/javascript",
  ".wasm": "application/wasm",
  ".json": "application/json",
};
// The site as it is, and cross-origin isolated (another port, the same files).
const serve = (headers) => (req, res) => {
  let path = resolve(site, `.${decodeURIComponent(new URL(req.url, "http://x").pathname)}`);
  try {
    if (!path.startsWith(site)) throw new Error("outside the site");
    if (statSync(path).isDirectory()) path = join(path, "index.html");
    const body = readFileSync(path);
    res.writeHead(200, {
      "content-type": TYPES[extname(path)] ?? "application/octet-stream",
      ...headers,
    });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
};
const ISOLATED = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
};
const sites = await Promise.all(
  [false, true].map(async (isolated) => {
    const server = createServer(serve(isolated ? ISOLATED : {}));
    await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
    return { server, isolated };
  }),
);
const cores = os.availableParallelism();

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-features=WebGPU"],
});
const errors = [];
try {
  for (const { server, isolated } of sites) {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const says = (words) =>
      page.waitForFunction(
        (w) => document.getElementById("status").textContent.includes(w),
        words,
        WAIT,
      );
    await says("Ready on");
    const status = await page.textContent("#status");
    const threads = isolated && cores > 1 ? `, ${cores} threads` : "";
    check(
      status.includes(`CPU (burn flex backend${threads})`),
      `the ${isolated ? "isolated" : "plain"} page loads the package's model: ${status}`,
    );
    await page.click("#generate");
    await says("Which one is better?");
    const [a, b] = [await page.textContent("#a"), await page.textContent("#b")];
    check(a.length > 0 && b.length > 0, `two stories (${a.length} and ${b.length} characters)`);
    await page.click("#prefer-a");
    await says("Learnt from your pick");
    const metrics = JSON.parse(await page.textContent("#metrics"));
    check(
      Math.abs(metrics.loss - Math.LN2) < 1e-4 && "rewards/margins" in metrics,
      `the first update's loss is ln 2, with TRL's metric names (${metrics.loss})`,
    );
    await page.close();
  }
  check(errors.length === 0, `no page errors ${errors.join(" | ")}`);
  console.log("e2e embed: passed");
} finally {
  await browser.close();
  for (const { server } of sites) server.close();
  rmSync(work, { recursive: true, force: true });
}
