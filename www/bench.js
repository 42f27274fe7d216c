// The browser side of `webdpo bench`: the benchmark runs in a worker (bench-worker.js) on WebGPU
// or the wasm CPU backend; this page shows the medians and exposes the JSON report as
// `window.benchResult` (or `window.benchError`) for tests/e2e/bench.mjs.
const params = new URLSearchParams(location.search);
const settings = {
  model: params.get("model") ?? "storyworld",
  backend: params.get("backend") ?? "webgpu",
  // The CPU backend's threads where the page is cross-origin isolated (all the cores by default).
  threads: Number(params.get("threads") ?? navigator.hardwareConcurrency),
  bench: {
    warmup: Number(params.get("warmup") ?? 2),
    runs: Number(params.get("runs") ?? 10),
    recompute_runs: Number(params.get("recompute_runs") ?? 3),
    prompt_tokens: 16,
    completion_tokens: Number(params.get("completion_tokens") ?? 96),
    new_tokens: 128,
    seed: 0,
  },
};
const status = document.getElementById("status");
const worker = new Worker("bench-worker.js", { type: "module" });
worker.onmessage = ({ data }) => {
  if (data.progress) {
    status.textContent = data.progress;
  } else if (data.error) {
    status.textContent = `Benchmark failed: ${data.error}`;
    window.benchError = data.error;
  } else {
    show(data.report);
    window.benchResult = data.report;
  }
};
worker.postMessage(settings);

function show(report) {
  status.textContent = `${report.parameters.toLocaleString()} parameters on ${report.device}`;
  const rows = [
    ["update: reference forward (ms)", report.update.reference_forward_ms],
    ["update: policy forward + backward (ms)", report.update.policy_forward_backward_ms],
    ["update: optimizer step (ms)", report.update.optimizer_step_ms],
    ["update: total (ms)", report.update.total_ms],
    ["sampling with KV cache (ms/token)", report.generation.kv_cache_ms_per_token],
    ["sampling without cache (ms/token)", report.generation.recompute_ms_per_token],
  ];
  const body = document.querySelector("#results tbody");
  for (const [what, s] of rows) {
    const tr = body.insertRow();
    for (const text of [what, s.median.toFixed(2), s.min.toFixed(2), s.max.toFixed(2)])
      tr.insertCell().textContent = text;
  }
  document.getElementById("results").hidden = false;
  const json = document.getElementById("json");
  json.textContent = JSON.stringify(report, null, 1);
  json.hidden = false;
}
