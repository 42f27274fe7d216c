// Drives www/bench.html in headless Debian Chromium (playwright-core) and writes its JSON report:
//   node bench/browser.mjs --model storyworld|25m|smollm2-lora --backend webgpu|cpu [--threads N]
//        [--runs 10] [--warmup 2] [--recompute-runs 3] [--completion-tokens 96] [--out FILE]
// `--threads` (the CPU backend, default all the cores): above 1, the threaded build (the page is
// served cross-origin isolated); 1, the single-threaded build.
// WebGPU here is SwiftShader (a CPU emulation) unless the machine has a GPU Chromium can use.
// Serves the repository with scripts/serve.py (the app must be built: scripts/build-web.sh).
import { writeFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { startApp } from "../tests/e2e/harness.mjs";

const { values: a } = parseArgs({
  options: {
    model: { type: "string", default: "storyworld" },
    backend: { type: "string", default: "webgpu" },
    threads: { type: "string", default: String(os.availableParallelism()) },
    runs: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    "recompute-runs": { type: "string", default: "3" },
    "completion-tokens": { type: "string", default: "96" },
    out: { type: "string" },
  },
});

const { browser, url, close } = await startApp({ webgpu: a.backend === "webgpu" });
try {
  const page = await browser.newPage();
  page.on("console", (m) => m.type() === "error" && console.error(`console: ${m.text()}`));
  const query = new URLSearchParams({
    model: a.model,
    backend: a.backend,
    threads: a.threads,
    runs: a.runs,
    warmup: a.warmup,
    recompute_runs: a["recompute-runs"],
    completion_tokens: a["completion-tokens"],
  });
  await page.goto(`${url}/bench.html?${query}`);
  let last = "";
  const poll = setInterval(async () => {
    const status = await page.textContent("#status").catch(() => "");
    if (status !== last) console.error((last = status));
  }, 2000);
  await page.waitForFunction(() => window.benchResult || window.benchError, null, {
    timeout: 3_600_000,
  });
  clearInterval(poll);
  const error = await page.evaluate(() => window.benchError);
  if (error) throw new Error(error);
  const report = await page.evaluate(() => window.benchResult);
  report.browser = `Chromium ${browser.version()}`;
  const text = JSON.stringify(report, null, 1);
  if (a.out) writeFileSync(a.out, text);
  console.log(text);
} finally {
  await close();
}
