// The threaded CPU build (pkg/threads/, www/builds.js) against the single-threaded one, with
// WebGPU off, in headless Chromium (playwright-core) or Firefox ESR (geckodriver's WebDriver:
// Playwright drives only its own Firefox builds): www/bench.html runs the same two updates on
// the same pair of the 25 M-parameter config with `threads` 1 and with every core. Both must
// report their threads, and the same loss, log-probs and gradient norm (to 1e-5: the split
// kernels sum in the same order); the times are printed, not checked (BENCHMARKS.md has the
// measurements).
//   node tests/e2e/threads.mjs chromium|firefox
// Serves the repository with scripts/serve.py (pkg/ must be built: scripts/build-web.sh).
import { spawn } from "node:child_process";
import os from "node:os";
import { freePort, serveApp, startApp } from "./harness.mjs";

const name = process.argv[2];
if (!["chromium", "firefox"].includes(name))
  throw new Error("usage: node tests/e2e/threads.mjs chromium|firefox");
const cores = os.availableParallelism();
const WAIT_MS = 900_000;

/** Chromium: `read(path, fn)` opens the page and calls `fn` there (by its source) until it
 *  returns something truthy, which it returns. */
async function chromium() {
  const { browser, url, close } = await startApp({ webgpu: false });
  const read = async (path, fn) => {
    const page = await browser.newPage();
    // Ours (a threaded build that did not start says so) and errors, not the pool's notices.
    page.on(
      "console",
      (m) =>
        (m.type() === "error" || m.text().startsWith("webdpo:")) &&
        console.log(`console: ${m.text()}`),
    );
    await page.goto(`${url}${path}`);
    const done = await page.waitForFunction(fn, null, { timeout: WAIT_MS });
    const value = done.jsonValue();
    return value.finally(() => page.close());
  };
  return { read, close };
}

/** Firefox ESR through geckodriver, the same `read`. */
async function firefox() {
  const { url, stop } = await serveApp();
  const port = await freePort();
  const driver = spawn("geckodriver", ["--port", String(port)], { stdio: "ignore" });
  const call = async (method, path, body) => {
    for (let tries = 0; ; tries++) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}${path}`, {
          method,
          headers: { "content-type": "application/json" },
          body: body && JSON.stringify(body),
        });
        const { value } = await r.json();
        if (!r.ok) throw new Error(`WebDriver ${path}: ${value.message}`);
        return value;
      } catch (e) {
        // geckodriver takes a moment to listen.
        if (tries > 50 || e.message.startsWith("WebDriver")) throw e;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  };
  const options = { args: ["-headless"], binary: "/usr/bin/firefox-esr" };
  const capabilities = { alwaysMatch: { "moz:firefoxOptions": options } };
  const { sessionId } = await call("POST", "/session", { capabilities });
  const session = `/session/${sessionId}`;
  const read = async (path, fn) => {
    await call("POST", `${session}/url`, { url: `${url}${path}` });
    const script = `return (${fn})()`;
    for (const started = Date.now(); Date.now() - started < WAIT_MS;) {
      const value = await call("POST", `${session}/execute/sync`, { script, args: [] });
      if (value) return value;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    throw new Error(`${path}: no answer in ${WAIT_MS / 1000} s`);
  };
  const close = async () => {
    await call("DELETE", session).catch(() => {});
    driver.kill();
    stop();
  };
  return { read, close };
}

const browser = await (name === "chromium" ? chromium() : firefox());
try {
  const bench = async (threads) => {
    const query = new URLSearchParams({
      model: "25m",
      backend: "cpu",
      threads,
      runs: 1,
      warmup: 1,
      recompute_runs: 0,
      completion_tokens: 32,
    });
    const done = () =>
      (window.benchResult || window.benchError) && {
        isolated: self.crossOriginIsolated,
        report: window.benchResult,
        error: window.benchError,
      };
    const { isolated, report, error } = await browser.read(`/bench.html?${query}`, done);
    if (error) throw new Error(`threads=${threads}: ${error}`);
    if (!isolated)
      throw new Error("bench.html is not cross-origin isolated: scripts/serve.py's COOP/COEP?");
    return report;
  };

  const one = await bench(1);
  const all = await bench(cores);
  const check = (ok, what) => {
    if (!ok) throw new Error(`check failed: ${what}`);
    console.log(`ok - ${name}: ${what}`);
  };
  check(one.threads === 1, `threads=1 runs the single-threaded build (${one.device})`);
  check(
    cores < 2 || all.threads === cores,
    `threads=${cores} runs the threaded build on ${all.threads} threads (${all.device})`,
  );
  for (const key of ["loss", "logps_chosen", "logps_rejected", "grad_norm"]) {
    const [a, b] = [one.update.check[key], all.update.check[key]];
    const close = a.every((x, i) => Math.abs(x - b[i]) <= 1e-5 * Math.max(1, Math.abs(x)));
    check(close, `${key} of both updates agree: ${a.join(", ")} vs ${b.join(", ")}`);
  }
  const ms = (r) => r.update.total_ms.median.toFixed(0);
  console.log(
    `${name}: update of the 25 M model: ${ms(one)} ms on 1 thread, ${ms(all)} ms on ` +
      `${all.threads} (one run each, not a benchmark)`,
  );
} finally {
  await browser.close();
}
