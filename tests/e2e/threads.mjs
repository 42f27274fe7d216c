// The threaded CPU build (pkg/threads/, www/builds.js) against the single-threaded one, in
// headless Chromium with WebGPU off: www/bench.html runs the same two updates on the same pair
// of the 25 M-parameter config with `threads` 1 and with every core. Both must report their
// threads, and the same loss, log-probs and gradient norm (to 1e-5: the split kernels sum in
// the same order); the times are printed, not checked (BENCHMARKS.md has the measurements).
//   node tests/e2e/threads.mjs
// Serves the repository with scripts/serve.py (pkg/ must be built: scripts/build-web.sh).
import os from "node:os";
import { startApp } from "./harness.mjs";

const cores = os.availableParallelism();
const { browser, url, close } = await startApp({ webgpu: false });
try {
  const bench = async (threads) => {
    const page = await browser.newPage();
    // Ours (a threaded build that did not start says so) and errors, not the pool's notices.
    page.on(
      "console",
      (m) =>
        (m.type() === "error" || m.text().startsWith("webdpo:")) &&
        console.log(`console: ${m.text()}`),
    );
    const query = new URLSearchParams({
      model: "25m",
      backend: "cpu",
      threads,
      runs: 1,
      warmup: 1,
      recompute_runs: 0,
      completion_tokens: 32,
    });
    await page.goto(`${url}/bench.html?${query}`);
    if (!(await page.evaluate(() => self.crossOriginIsolated)))
      throw new Error("bench.html is not cross-origin isolated: scripts/serve.py's COOP/COEP?");
    await page.waitForFunction(() => window.benchResult || window.benchError, null, {
      timeout: 900_000,
    });
    const { benchResult: report, benchError: error } = await page.evaluate(() => ({
      benchResult: window.benchResult,
      benchError: window.benchError,
    }));
    await page.close();
    if (error) throw new Error(`threads=${threads}: ${error}`);
    return report;
  };

  const one = await bench(1);
  const all = await bench(cores);
  const check = (ok, what) => {
    if (!ok) throw new Error(`check failed: ${what}`);
    console.log(`ok - ${what}`);
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
    `update of the 25 M model: ${ms(one)} ms on 1 thread, ${ms(all)} ms on ${all.threads} ` +
      `(one run each, not a benchmark)`,
  );
} finally {
  await close();
}
