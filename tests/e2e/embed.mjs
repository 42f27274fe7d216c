// The npm package as another project uses it: `npm pack` in pkg/, the tarball installed into a
// copy of examples/embed/ (a page of its own, no bundler), that page served by itself and driven
// through generate → prefer in headless Chromium on the CPU fallback:
//   node tests/e2e/embed.mjs          (pkg/ must be built: scripts/build-web.sh)
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
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
const server = createServer((req, res) => {
  let path = resolve(site, `.${decodeURIComponent(new URL(req.url, "http://x").pathname)}`);
  try {
    if (!path.startsWith(site)) throw new Error("outside the site");
    if (statSync(path).isDirectory()) path = join(path, "index.html");
    const body = readFileSync(path);
    res.writeHead(200, { "content-type": TYPES[extname(path)] ?? "application/octet-stream" });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-features=WebGPU"],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  const says = (words) =>
    page.waitForFunction(
      (w) => document.getElementById("status").textContent.includes(w),
      words,
      WAIT,
    );
  await says("Ready on");
  check(true, `the page loads the package's model: ${await page.textContent("#status")}`);
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
  check(errors.length === 0, `no page errors ${errors.join(" | ")}`);
  console.log("e2e embed: passed");
} finally {
  await browser.close();
  server.close();
  rmSync(work, { recursive: true, force: true });
}
