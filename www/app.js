// The page: prompt → two streamed responses → a pick → a DPO update in the worker → the
// teaching view, charts and metrics. Every pick is in IndexedDB before its update runs.
// Model and imported text only ever reach the DOM as textContent, never as HTML.
import { fromMessage, isGpuFailure } from "./errors.js";
import { modelCache, openStore } from "./store.js";

const BUILT_IN = {
  name: "storyworld",
  label: "the built-in story model",
  builtIn: true,
  dir: "models/storyworld",
};
const PRESETS = [
  "Write a story about a shy fox who finds a red kite.",
  "Tell me a story about Luna the curious owl, who wants a golden bell.",
  "Can you tell me a story about a brave mouse who loses a blue boat?",
  "Write a story about a sleepy bear who finds a green ball.",
  "Tell me a story about Max the kind dog, who wants a silver cup.",
  "Can you tell me a story about a clever turtle who loses a yellow map?",
];
const SAMPLING_DEFAULTS = { temperature: 1.0, max_new_tokens: 160 };

const $ = (id) => document.getElementById(id);
/** An element with attributes and children (strings become text nodes, never HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs))
    k === "class" ? (node.className = v) : node.setAttribute(k, v);
  node.append(...children.map((c) => (typeof c === "string" ? document.createTextNode(c) : c)));
  return node;
}
const fmt = (x, digits = 4) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
/** "1 pair", "2 pairs". */
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** The prompt format the built-in model was trained on: the instruction and a newline. Other
 *  models get the text as it is (their chat template, if any, formats it in the worker). */
const formatPrompt = (text) => (model.builtIn ? `${text.trim()}\n` : text.trim());

// ---------------------------------------------------------------------------------------------
// The worker that owns the model.

let worker = null;
let nextId = 1;
const pending = new Map();

function startWorker() {
  worker?.terminate();
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = ({ data }) => {
    const call = pending.get(data.id);
    if (!call) return;
    if ("progress" in data) return call.onProgress?.(data.progress);
    pending.delete(data.id);
    data.ok ? call.resolve(data.value) : call.reject(fromMessage(data));
  };
  worker.onerror = (e) => {
    for (const call of pending.values())
      call.reject(
        Object.assign(new Error(e.message || "the model worker crashed"), { fatal: true }),
      );
    pending.clear();
  };
}

function call(op, args, onProgress, transfer = []) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, op, args }, transfer);
  });
}

// ---------------------------------------------------------------------------------------------
// State.

let store;
let cache; // imported model folders (IndexedDB)
// The model in use: BUILT_IN with { config, tokenizer, weights } as fetched, or a user's folder
// { name, label, files: [{name, bytes}], lora }.
let model;
let info; // what the worker reports: device, isGpu, parameterCount, steps, trainConfig
let picks = []; // every stored pair, oldest first
let current = null; // { prompt, texts } awaiting a pick
let busy = true;
let canUndo = false;
let learningRates = {}; // each optimizer's usual learning rate, from the core
const params = new URLSearchParams(location.search);
let backend = params.get("backend") ?? "auto";
const charts = {};

function status(text, { progress } = {}) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === undefined;
  // null: work of unknown length (an indeterminate bar).
  if (progress === null) bar.removeAttribute("value");
  else if (progress !== undefined) bar.value = progress;
}

function notice(text, kind = "info") {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text ?? "";
  n.className = `notice ${kind}`;
}

function render() {
  const ready = !busy && !!info;
  for (const id of ["generate", "compare", "export", "download", "reset"]) $(id).disabled = !ready;
  for (const id of ["import", "load", "folder", "builtin"]) $(id).disabled = !ready;
  $("builtin").hidden = !!model?.builtIn;
  $("download-adapter").hidden = !info?.lora;
  $("download-adapter").disabled = !ready;
  $("pick-a").disabled = $("pick-b").disabled = $("skip").disabled = !ready || !current?.done;
  $("undo").disabled = !ready || !canUndo;
  $("train-all").disabled = !ready || picks.length === 0;
  const learnt = picks.filter((p) => p.metrics).length;
  $("picks-count").textContent = info
    ? `${plural(picks.length, "pair")} stored · policy after ${plural(info.steps, "update")}`
    : "";
  $("picks-count").dataset.pairs = String(picks.length);
  $("picks-count").dataset.learnt = String(learnt);
}

async function run(what, body) {
  busy = true;
  render();
  try {
    return await body();
  } catch (e) {
    console.error(e);
    status(`${what} failed.`);
    notice(`${what} failed: ${e.message}`, "error");
  } finally {
    busy = false;
    render();
  }
}

// ---------------------------------------------------------------------------------------------
// Loading, saving, and falling back to the CPU.

async function fetchBytes(path, label) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`could not load ${path}: HTTP ${r.status}`);
  // A compressed response's length is not the length of what the reader yields.
  const total = r.headers.get("content-encoding")
    ? 0
    : Number(r.headers.get("content-length")) || 0;
  if (!r.body) return new Uint8Array(await r.arrayBuffer());
  const reader = r.body.getReader();
  const chunks = [];
  let received = 0;
  for (let chunk; !(chunk = await reader.read()).done;) {
    chunks.push(chunk.value);
    received += chunk.value.length;
    const of = total ? ` of ${(total / 1e6).toFixed(1)}` : "";
    status(`Loading ${label}… ${(received / 1e6).toFixed(1)}${of} MB`, {
      progress: total ? Math.min(1, received / total) : null,
    });
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const c of chunks) bytes.set(c, (offset += c.length) - c.length);
  return bytes;
}

/** What training may take in this browser: `?memory-budget=<bytes>` (to try the check), else half
 *  its memory when it says (Chrome caps what it reports at 8 GB), else the session's default. */
const memoryBudget = () =>
  Number(params.get("memory-budget")) ||
  (navigator.deviceMemory ? (navigator.deviceMemory * 1e9) / 2 : undefined);

/** Starts `model` on `backend` from the saved state (if any); returns what the worker reports.
 *  With `restart`, in a fresh worker (after a failure); otherwise the worker keeps its current
 *  model until the new one has loaded. */
async function startModel(saved, { restart = true } = {}) {
  if (restart || !worker) startWorker();
  // Copies: the worker takes ownership of what it is sent, and a fallback needs the bytes again.
  const source = model.builtIn
    ? { config: model.config, tokenizer: model.tokenizer.slice(), weights: model.weights.slice() }
    : {
        files: model.files.map((f) => ({ name: f.name, bytes: f.bytes.slice() })),
        lora: model.lora,
        budget: memoryBudget(),
      };
  const args = {
    ...source,
    backend,
    simulateFailure: params.has("simulate-gpu-failure"),
    saved: saved ? { weights: saved.weights, optimizer: saved.optimizer } : null,
  };
  status(`Starting ${model.label} on ${backend === "cpu" ? "the CPU" : "WebGPU if available"}…`, {
    progress: null,
  });
  info = await call("load", args);
  const stored = JSON.parse(localStorage.getItem("webdpo.train") ?? "null");
  if (stored) {
    try {
      info.trainConfig = await call("setTrainConfig", { ...info.trainConfig, ...stored });
    } catch (e) {
      notice(`Saved settings were not valid and were reset: ${e.message}`, "error");
      localStorage.removeItem("webdpo.train");
    }
  }
  showDevice();
  return info;
}

function showDevice() {
  const d = $("device");
  const label = model.builtIn ? "" : `${model.label} · `;
  const lora = info.lora ? ` · ${info.lora}` : "";
  const params = `${label}${info.parameterCount.toLocaleString()} parameters${lora}`;
  if (info.isGpu) {
    d.textContent = `WebGPU · ${info.device.replace(/^GPU: /, "")} · ${params}`;
  } else {
    const [why, hint] =
      backend === "cpu"
        ? ["chosen", ""]
        : !("gpu" in navigator)
          ? [
              "no WebGPU in this browser",
              "For speed, use a recent Chrome or Edge (on Linux: enable chrome://flags/#enable-unsafe-webgpu).",
            ]
          : [
              "WebGPU offers no usable adapter here",
              "On Linux, enable chrome://flags/#enable-unsafe-webgpu; elsewhere, check the GPU driver.",
            ];
    d.textContent = `CPU (${why}) · ${params}${hint ? ` — ${hint}` : ""}`;
  }
  d.dataset.backend = info.isGpu ? "webgpu" : "cpu";
  const name = model.builtIn ? "The built-in story model" : model.label;
  $("model-info").textContent =
    `${name}${info.chat ? " (chat template)" : ""}: ${info.memory.summary}.`;
}

/** Stores the worker's training state (absent when nothing changed). */
async function saveState(state) {
  if (!state) return;
  await store.saveState({
    weights: state.weights,
    optimizer: state.optimizer,
    steps: state.steps,
    reference: model.fingerprint,
  });
  info.steps = state.steps;
}

/** Runs `op` on the worker; on a GPU failure, restarts on the CPU from the last saved state and
 *  runs it again there, telling the user. Picks are already in IndexedDB, so none is lost. */
async function callWithFallback(op, args, onProgress) {
  try {
    return await call(op, args, onProgress);
  } catch (e) {
    if (!isGpuFailure(e, info?.isGpu)) throw e;
    const reason = e.message;
    backend = "cpu";
    await startModel(await store.loadState());
    canUndo = false;
    notice(
      `The GPU failed (${reason}). Continuing on the CPU from the last saved state; your picks are kept.`,
      "error",
    );
    return call(op, args, onProgress);
  }
}

// ---------------------------------------------------------------------------------------------
// The loop: generate, pick, learn.

function sampling() {
  const s = JSON.parse(localStorage.getItem("webdpo.sampling") ?? "null") ?? SAMPLING_DEFAULTS;
  return {
    temperature: s.temperature,
    top_k: 0,
    top_p: 1.0,
    max_new_tokens: s.max_new_tokens,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
  };
}

/** The prompt in the model's format, or null (and a notice) when there is none. */
function promptOrNotice() {
  const text = $("prompt").value.trim();
  if (!text) notice("Write a prompt first, or pick one of the presets.", "error");
  return text ? formatPrompt(text) : null;
}

function generate() {
  const prompt = promptOrNotice();
  if (!prompt) return;
  notice(null);
  return run("Generating", async () => {
    current = { prompt, texts: ["", ""], done: false };
    $("compare-view").hidden = true;
    for (const id of ["text-a", "text-b"]) $(id).textContent = "";
    status("Writing two responses…");
    current.texts = await callWithFallback(
      "generate",
      { prompt, n: 2, sampling: sampling(), reference: false },
      (texts) => {
        $("text-a").textContent = texts[0];
        $("text-b").textContent = texts[1];
      },
    );
    $("text-a").textContent = current.texts[0];
    $("text-b").textContent = current.texts[1];
    current.done = true;
    status("Which one is better? Press A or B (or S to skip).");
  });
}

function compare() {
  const prompt = promptOrNotice();
  if (!prompt) return;
  return run("Comparing", async () => {
    $("compare-view").hidden = false;
    const s = sampling();
    for (const [target, reference] of [
      ["text-policy", false],
      ["text-reference", true],
    ]) {
      $(target).textContent = "";
      status(`Sampling from the ${reference ? "reference" : "policy"}…`);
      const [t] = await callWithFallback(
        "generate",
        { prompt, n: 1, sampling: s, reference },
        ([t]) => ($(target).textContent = t),
      );
      $(target).textContent = t;
    }
    status("Policy and reference, same prompt and seed.");
  });
}

function pick(winner) {
  if (!current?.done) return;
  const [chosen, rejected] = winner === 0 ? current.texts : [current.texts[1], current.texts[0]];
  const prompt = current.prompt;
  return run("Learning from the pick", async () => {
    // The pick is stored before the update runs: whatever happens next, it is not lost.
    const pick = await store.addPick({
      model: model.name,
      prompt,
      chosen,
      rejected,
      source: "pick",
      time: Date.now(),
    });
    picks.push(pick);
    current = null;
    notice(null);
    status("Updating the policy…");
    const { reports, scores, state } = await callWithFallback("prefer", {
      prompt,
      chosen,
      rejected,
    });
    const first = reports[0];
    const v = first.values;
    pick.metrics = first.metrics;
    pick.values = {
      pc: v.policy_chosen[0],
      pr: v.policy_rejected[0],
      rc: v.reference_chosen[0],
      rr: v.reference_rejected[0],
      h: v.h[0],
      sigma: v.sigma[0],
      loss: v.losses[0],
    };
    // Both responses were sampled from the policy: their mean log-ratio estimates KL(π‖π_ref).
    pick.kl = (pick.values.pc - pick.values.rc + pick.values.pr - pick.values.rr) / 2;
    pick.config = info.trainConfig;
    // The worker returns state (and keeps an undo snapshot) only when at least one step applied.
    const skipped = reports.find((r) => r.skipped)?.skipped;
    if (!state) pick.skipped = skipped;
    await store.putPick(pick);
    await saveState(state);
    canUndo = canUndo || !!state;
    teach(pick, scores);
    showMetrics(reports[reports.length - 1].metrics, reports.length);
    updateCharts();
    if (skipped)
      notice(`${state ? "An update of this pick was" : "Update"} skipped: ${skipped}`, "error");
    status(
      !state
        ? "The update was skipped; your pick is kept."
        : `Learned from your pick (${plural(reports.length, "update")}). ` +
            "Generate again to see the change.",
    );
    $("generate").focus();
  });
}

function skip() {
  if (!current?.done) return;
  current = null;
  status("Skipped. Generate again when you are ready.");
  render();
}

// ---------------------------------------------------------------------------------------------
// The teaching view: the DPO loss with this pick's numbers, and log π − log π_ref per token.

function teach(pick, scores) {
  // h and σ(β·h) as the update computed them (src/dpo.rs); a pick stored by an older version of
  // the app lacks them, and is not taught again.
  const { pc, pr, rc, rr, h, sigma } = pick.values;
  $("teach-empty").hidden = h !== undefined;
  $("teach-body").hidden = h === undefined;
  if (h === undefined) return;
  const { beta, loss_type, label_smoothing: eps } = pick.config.dpo;
  const ratioW = pc - rc;
  const ratioL = pr - rr;
  const per = loss_type === "ipo" ? " (per-token averages: IPO normalises by length)" : "";
  const line = (...parts) => el("div", { class: "line" }, ...parts);
  const num = (x, cls = "") => el("span", { class: `num ${cls}` }, fmt(x));
  const sym = (s) => el("span", { class: "sym" }, s);
  const lossLine = {
    sigmoid: [
      sym(eps > 0 ? "loss = −(1−ε)·log σ(β·h) − ε·log σ(−β·h) = " : "loss = −log σ(β·h) = −log σ("),
      ...(eps > 0 ? [] : [num(beta), " × ", num(h), ") = −log "]),
      ...(eps > 0 ? [] : [num(sigma), " = "]),
      num(pick.values.loss, "result"),
    ],
    ipo: [
      sym("loss = (h − 1/(2β))² = ("),
      num(h),
      " − ",
      num(1 / (2 * beta)),
      ")² = ",
      num(pick.values.loss, "result"),
    ],
    hinge: [
      sym("loss = max(0, 1 − β·h) = max(0, 1 − "),
      num(beta),
      " × ",
      num(h),
      ") = ",
      num(pick.values.loss, "result"),
    ],
    robust: [
      sym("loss = (−(1−ε)·log σ(β·h) + ε·log σ(−β·h)) / (1 − 2ε) = "),
      num(pick.values.loss, "result"),
    ],
  }[loss_type];
  $("formula").replaceChildren(
    line(
      sym("chosen y_w:   "),
      "log π = ",
      num(pc),
      ",  log π_ref = ",
      num(rc),
      ",  log-ratio = ",
      num(ratioW, ratioW >= 0 ? "up" : "down"),
    ),
    line(
      sym("rejected y_l: "),
      "log π = ",
      num(pr),
      ",  log π_ref = ",
      num(rr),
      ",  log-ratio = ",
      num(ratioL, ratioL >= 0 ? "up" : "down"),
    ),
    line(
      sym("h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)) = "),
      num(ratioW),
      " − (",
      num(ratioL),
      ") = ",
      num(h),
      per,
    ),
    line(...lossLine, `   (β = ${beta})`),
    ...(h === 0 && loss_type === "sigmoid" && eps === 0
      ? [
          line(
            el(
              "span",
              { class: "muted" },
              "π = π_ref here (no update yet), so h = 0, σ = 0.5 and the loss is ln 2 = 0.6931.",
            ),
          ),
        ]
      : []),
    ...(pick.config.rpo_alpha > 0 && pick.metrics.nll_loss != null
      ? [
          line(
            sym("RPO: total loss = DPO loss + α·NLL(y_w) per token = "),
            num(pick.values.loss),
            " + ",
            num(pick.config.rpo_alpha),
            " × ",
            num(pick.metrics.nll_loss),
            " = ",
            num(pick.metrics.loss, "result"),
          ),
        ]
      : []),
    line(
      sym("implicit rewards β·log-ratio: "),
      "chosen ",
      num(beta * ratioW, "up"),
      ",  rejected ",
      num(beta * ratioL, "down"),
      ",  margin ",
      num(beta * h),
    ),
    line(
      el(
        "span",
        { class: "muted" },
        "These are the numbers the update used (before it). " +
          "The tokens below are coloured with the policy after the update.",
      ),
    ),
  );
  tokens($("tokens-chosen"), scores.chosen);
  tokens($("tokens-rejected"), scores.rejected);
}

function tokens(target, s) {
  const deltas = s.policy.map((p, i) => p - s.reference[i]);
  const scale = Math.max(0.05, ...deltas.map(Math.abs));
  let sum = 0;
  target.replaceChildren(
    ...s.tokens.map((t, i) => {
      const d = deltas[i];
      sum += d;
      const span = el(
        "span",
        {
          class: "tok",
          title:
            `${JSON.stringify(t)}: log π = ${fmt(s.policy[i])}, ` +
            `log π_ref = ${fmt(s.reference[i])}, Δ = ${fmt(d)}`,
        },
        t,
      );
      span.style.setProperty("--a", (Math.abs(d) / scale).toFixed(3));
      span.classList.add(d >= 0 ? "up" : "down");
      return span;
    }),
  );
  target.setAttribute(
    "aria-label",
    `${s.tokens.length} tokens; summed log π − log π_ref after the update: ${fmt(sum)}`,
  );
  target.dataset.sum = String(sum);
}

function showMetrics(metrics, updates) {
  const rows = Object.entries(metrics).filter(([, v]) => v !== null && v !== undefined);
  rows.push(["updates this pick", updates]);
  $("metrics").tBodies[0].replaceChildren(
    ...rows.map(([k, v]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, k),
        el("td", {}, Number.isInteger(v) ? String(v) : fmt(v)),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Charts (uPlot, vendored).

function makeChart(id, series) {
  const target = $(id);
  const opts = {
    width: Math.max(240, target.clientWidth),
    height: 170,
    scales: { x: { time: false } },
    axes: [{ label: "pick", size: 36, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { size: 52 }],
    legend: { live: false },
    series: [
      { label: "pick" },
      ...series.map(([label, stroke, dash]) => ({
        label,
        stroke,
        width: 2,
        dash,
        points: { show: true, size: 5 },
      })),
    ],
  };
  charts[id] = new uPlot(opts, [[], ...series.map(() => [])], target);
}

function updateCharts() {
  const learnt = picks.filter((p) => p.metrics);
  const x = learnt.map((_, i) => i + 1);
  const m = (k) => learnt.map((p) => p.metrics[k]);
  charts["chart-loss"].setData([x, m("loss"), m("rewards/accuracies")]);
  charts["chart-rewards"].setData([
    x,
    m("rewards/chosen"),
    m("rewards/rejected"),
    m("rewards/margins"),
  ]);
  charts["chart-kl"].setData([x, learnt.map((p) => p.kl)]);
  for (const id of Object.keys(charts)) $(id).dataset.points = String(x.length);
}

function resizeCharts() {
  for (const [id, chart] of Object.entries(charts))
    chart.setSize({ width: Math.max(240, $(id).clientWidth), height: 170 });
}

// ---------------------------------------------------------------------------------------------
// Controls: settings, undo, reset, training on everything, import/export.

function fillSettings() {
  const t = info.trainConfig;
  const s = JSON.parse(localStorage.getItem("webdpo.sampling") ?? "null") ?? SAMPLING_DEFAULTS;
  $("beta").value = t.dpo.beta;
  $("lr").value = t.learning_rate;
  $("steps").value = t.steps_per_pair;
  $("loss").value = t.dpo.loss_type;
  $("optim").value = t.optim;
  $("rpo").value = t.rpo_alpha;
  $("temperature").value = s.temperature;
  $("max-tokens").value = s.max_new_tokens;
}

async function applySettings() {
  $("settings-error").textContent = "";
  const num = (id) => Number($(id).value);
  const wanted = {
    ...info.trainConfig,
    learning_rate: num("lr"),
    steps_per_pair: num("steps"),
    optim: $("optim").value,
    rpo_alpha: num("rpo"),
    dpo: { ...info.trainConfig.dpo, beta: num("beta"), loss_type: $("loss").value },
  };
  const s = { temperature: num("temperature"), max_new_tokens: num("max-tokens") };
  try {
    if (!(Number.isFinite(s.temperature) && s.temperature >= 0))
      throw new Error("temperature must be a number ≥ 0");
    if (!(Number.isInteger(s.max_new_tokens) && s.max_new_tokens >= 1))
      throw new Error("max new tokens must be a whole number ≥ 1");
    if (!Number.isInteger(wanted.steps_per_pair))
      throw new Error("updates per pick must be a whole number ≥ 1");
    info.trainConfig = await call("setTrainConfig", wanted);
    localStorage.setItem(
      "webdpo.train",
      JSON.stringify({
        learning_rate: wanted.learning_rate,
        steps_per_pair: wanted.steps_per_pair,
        optim: wanted.optim,
        rpo_alpha: wanted.rpo_alpha,
        dpo: wanted.dpo,
      }),
    );
    localStorage.setItem("webdpo.sampling", JSON.stringify(s));
  } catch (e) {
    $("settings-error").textContent = `Not applied: ${e.message}`;
    fillSettings();
  }
}

function undo() {
  return run("Undo", async () => {
    const { state, canUndo: more } = await call("undo");
    // The pick whose update is undone: the last one that changed the policy.
    const last = picks.filter((p) => p.source === "pick" && p.metrics && !p.skipped).pop();
    if (last) {
      await store.deletePick(last.id);
      picks = picks.filter((p) => p !== last);
    }
    await saveState(state);
    canUndo = more;
    const prev = picks.filter((p) => p.metrics).pop();
    if (prev) showMetrics(prev.metrics, prev.config?.steps_per_pair ?? 1);
    else $("metrics").tBodies[0].replaceChildren();
    if (prev) teach(prev, await call("scores", prev));
    else (($("teach-empty").hidden = false), ($("teach-body").hidden = true));
    updateCharts();
    status(
      "Undone: the policy and optimizer are exactly as before the last update, and that pick is removed.",
    );
  });
}

function reset() {
  if (
    !confirm(
      "Reset the policy to the reference? Your stored pairs are kept; you can train on them again.",
    )
  )
    return;
  return run("Reset", async () => {
    const { state } = await call("reset");
    await saveState(state);
    canUndo = false;
    status("The policy is the reference again (fresh optimizer). Your pairs are kept.");
  });
}

function trainOn(pairs, label) {
  return run(label, async () => {
    status(`${label}: 0 of ${pairs.length} pairs`, { progress: 0 });
    const { reports, state } = await callWithFallback(
      "trainOn",
      { pairs: pairs.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected })) },
      ({ done, total, metrics }) =>
        status(`${label}: ${done} of ${total} pairs (loss ${fmt(metrics.loss)})`, {
          progress: done / total,
        }),
    );
    await saveState(state);
    canUndo = false;
    const meanLoss = reports.reduce((s, r) => s + r.metrics.loss, 0) / Math.max(1, reports.length);
    showMetrics(reports[reports.length - 1].metrics, info.trainConfig.steps_per_pair);
    const skipped = reports.filter((r) => r.skipped).length;
    status(
      `${label}: done, ${reports.length} pairs, mean loss ${fmt(meanLoss)}` +
        `${skipped ? `, ${skipped} updates skipped (non-finite)` : ""}.`,
    );
  });
}

function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function exportPairs() {
  const lines = picks.map(({ prompt, chosen, rejected }) =>
    JSON.stringify({ prompt, chosen, rejected }),
  );
  download(
    lines.join("\n") + (lines.length ? "\n" : ""),
    "webdpo-pairs.jsonl",
    "application/jsonl",
  );
  status(`Exported ${lines.length} pairs as TRL JSONL ({"prompt","chosen","rejected"} per line).`);
}

async function importPairs(file) {
  let pairs;
  try {
    pairs = await call("parsePairs", { text: await file.text(), name: file.name });
  } catch (e) {
    notice(`Nothing imported: ${e.message}`, "error");
    return;
  }
  notice(null);
  const added = await store.addPicks(
    pairs.map((p) => ({ ...p, model: model.name, source: "import", time: Date.now() })),
  );
  picks.push(...added);
  render();
  await trainOn(added, `Imported ${added.length} pairs; training on them`);
}

async function loadPolicy(file) {
  await run("Loading the policy", async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const { state } = await call("loadWeights", { weights: bytes }, null, [bytes.buffer]);
    await saveState(state);
    canUndo = false;
    status(
      `Loaded ${file.name} as the ${info.lora ? "LoRA adapter" : "policy"} (fresh optimizer); ` +
        "the reference is unchanged.",
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Wiring.

function wire() {
  for (const p of PRESETS) {
    const b = el("button", { type: "button", class: "preset" }, p);
    b.addEventListener("click", () => {
      $("prompt").value = p;
      if (!busy) generate();
    });
    $("presets").append(b);
  }
  $("ask").addEventListener("submit", (e) => (e.preventDefault(), generate()));
  $("compare").addEventListener("click", compare);
  $("pick-a").addEventListener("click", () => pick(0));
  $("pick-b").addEventListener("click", () => pick(1));
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("reset").addEventListener("click", reset);
  $("train-all").addEventListener("click", () => trainOn(picks, "Training again on all pairs"));
  $("export").addEventListener("click", exportPairs);
  $("download").addEventListener("click", () =>
    run("Downloading the policy", async () =>
      download(
        await call("policyWeights"),
        "webdpo-policy.safetensors",
        "application/octet-stream",
      ),
    ),
  );
  $("import").addEventListener(
    "change",
    (e) => e.target.files[0] && importPairs(e.target.files[0]).finally(() => (e.target.value = "")),
  );
  $("load").addEventListener(
    "change",
    (e) => e.target.files[0] && loadPolicy(e.target.files[0]).finally(() => (e.target.value = "")),
  );
  $("folder").addEventListener("change", (e) => {
    const files = [...e.target.files].map((file) => ({
      file,
      path: file.webkitRelativePath || file.name,
    }));
    if (files.length) importFolder(files).finally(() => (e.target.value = ""));
  });
  const drop = $("dropzone");
  drop.addEventListener("dragover", (e) => (e.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (busy)
      return notice("Wait for the current work to finish, then drop the folder again.", "error");
    importFolder(await droppedFiles(e.dataTransfer));
  });
  $("builtin").addEventListener("click", useBuiltIn);
  $("download-adapter").addEventListener("click", downloadAdapter);
  // Each optimizer with its own sensible learning rate (runs before the form's change handler).
  $("optim").addEventListener("change", (e) => ($("lr").value = learningRates[e.target.value]));
  $("settings").addEventListener("change", applySettings);
  $("settings").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, select, textarea")) return;
    const button = { g: "generate", c: "compare", a: "pick-a", b: "pick-b", s: "skip", u: "undo" }[
      e.key.toLowerCase()
    ];
    if (button && !$(button).disabled) {
      e.preventDefault();
      $(button).click();
    }
  });
  window.addEventListener("resize", resizeCharts);
  makeChart("chart-loss", [
    ["loss", "#1d4ed8"],
    ["rewards/accuracies", "#6b7280", [4, 4]],
  ]);
  makeChart("chart-rewards", [
    ["rewards/chosen", "#047857"],
    ["rewards/rejected", "#b91c1c"],
    ["rewards/margins", "#7c3aed", [4, 4]],
  ]);
  makeChart("chart-kl", [["KL estimate (nats)", "#b45309"]]);
}

/** SHA-256 of a model's files: what its saved policy was trained from. */
async function fingerprint(m) {
  const parts = m.builtIn ? [m.weights] : m.files.map((f) => f.bytes);
  const digests = await Promise.all(parts.map((bytes) => crypto.subtle.digest("SHA-256", bytes)));
  const bytes =
    digests.length === 1
      ? digests[0]
      : await crypto.subtle.digest(
          "SHA-256",
          new Uint8Array(digests.flatMap((d) => [...new Uint8Array(d)])),
        );
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The built-in model's files, fetched (and cached offline by sw.js). */
async function builtIn() {
  const [config, tokenizer, weights] = await Promise.all([
    fetchBytes(`${BUILT_IN.dir}/config.json`, "config").then((b) => new TextDecoder().decode(b)),
    fetchBytes(`${BUILT_IN.dir}/tokenizer.json`, "tokenizer"),
    fetchBytes(`${BUILT_IN.dir}/model.safetensors`, "the model"),
  ]);
  return { ...BUILT_IN, config, tokenizer, weights };
}

/** Makes `next` the model in use, with its own stored pairs and training state. If it cannot
 *  load (a refused memory check, a bad file), the model in use stays and the error propagates. */
async function activate(next, { restart = false } = {}) {
  const nextStore = await openStore(next.name);
  next.fingerprint ??= await fingerprint(next);
  let saved = await nextStore.loadState();
  if (saved && saved.reference !== next.fingerprint) {
    // A policy trained from other reference weights (the app's model was updated, or a folder of
    // the same name changed) would load without error and mean nothing against this reference.
    notice(
      "The model's weights changed since its policy was saved, so training starts again from " +
        "the new reference. The pairs are kept.",
      "error",
    );
    saved = null;
  }
  const previous = { model, info };
  model = next;
  try {
    try {
      await startModel(saved, { restart });
    } catch (e) {
      if (!saved) throw e;
      // Saved state that no longer loads (e.g. the model was updated): start fresh, keep the pairs.
      notice(
        `The saved policy could not be restored (${e.message}); starting from the reference. The pairs are kept.`,
        "error",
      );
      saved = null;
      await startModel(null, { restart: false });
    }
  } catch (e) {
    ({ model, info } = previous);
    throw e;
  }
  store = nextStore;
  picks = await store.picks();
  canUndo = false;
  current = null;
  fillSettings();
  updateCharts();
  $("teach-empty").hidden = false;
  $("teach-body").hidden = true;
  const last = picks.filter((p) => p.metrics).pop();
  if (last) {
    showMetrics(last.metrics, last.config?.steps_per_pair ?? 1);
    teach(last, await call("scores", last));
  }
  return saved;
}

/** The model files of a picked or dropped folder (top level only; the core says which names
 *  loading reads), and the folder's name. */
async function modelFiles(files) {
  const top = files.filter((f) => (f.path.match(/\//g) ?? []).length <= 1);
  const read = new Set(await call("modelFiles", { names: top.map((f) => f.file.name) }));
  const label = files[0]?.path.includes("/") ? files[0].path.split("/")[0] : "your model";
  return { label, files: top.filter((f) => read.has(f.file.name)).map((f) => f.file) };
}

/** The files of a dropped folder (`webkitGetAsEntry`), or the dropped files themselves. */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const dir = entries.length === 1 && entries[0].isDirectory ? entries[0] : null;
  if (!dir) return [...transfer.files].map((file) => ({ file, path: file.name }));
  const reader = dir.createReader();
  const children = [];
  for (let batch; (batch = await new Promise((ok, fail) => reader.readEntries(ok, fail))).length;)
    children.push(...batch);
  const files = await Promise.all(
    children.filter((e) => e.isFile).map((e) => new Promise((ok, fail) => e.file(ok, fail))),
  );
  return files.map((file) => ({ file, path: `${dir.name}/${file.name}` }));
}

/** Loads a Hugging Face model folder the user brought (`picked`: its files with their paths), and
 *  keeps it in IndexedDB for reloads. */
async function importFolder(picked) {
  // What an earlier action said is cleared now, not once the worker has filtered the files.
  notice(null);
  const { label, files } = await modelFiles(picked);
  if (!files.some((f) => f.name === "config.json")) {
    notice(
      `No config.json in ${label}: choose the folder that holds config.json, tokenizer.json ` +
        "and model.safetensors (or its shards).",
      "error",
    );
    return;
  }
  await run("Loading your model", async () => {
    notice(null);
    const lora = $("use-lora").checked
      ? {
          r: Number($("lora-r").value),
          alpha: Number($("lora-alpha").value),
          all_linear: $("lora-all").checked,
        }
      : null;
    // The memory check first, from config.json alone: a model too large is refused before its
    // weights are read into the tab.
    const config = await files.find((f) => f.name === "config.json").text();
    await call("checkMemory", { config, backend, lora, budget: memoryBudget() });
    const total = files.reduce((n, f) => n + f.size, 0);
    status(`Reading ${files.length} files of ${label} (${(total / 1e6).toFixed(0)} MB)…`, {
      progress: null,
    });
    const bytes = await Promise.all(
      files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })),
    );
    const next = {
      name: `folder:${label}${lora ? `:lora${lora.r}` : ""}`,
      label,
      builtIn: false,
      files: bytes,
      lora,
    };
    await activate(next);
    localStorage.setItem("webdpo.model", next.name);
    try {
      await cache.save({ name: next.name, label, files: bytes, lora });
    } catch (e) {
      notice(
        `${label} is loaded but could not be kept in this browser (${e.message}); ` +
          "after a reload, choose the folder again.",
        "error",
      );
    }
    status(
      `${label} is ready${info.lora ? ` (${info.lora})` : ""}. Write a prompt, then Generate (G).`,
    );
  });
}

async function useBuiltIn() {
  await run("Loading the built-in model", async () => {
    await activate(await builtIn());
    localStorage.removeItem("webdpo.model");
    status("Ready. Pick a preset or write a prompt, then Generate (G).");
  });
}

async function downloadAdapter() {
  await run("Exporting the adapter", async () => {
    const { config, weights } = await call("adapter");
    download(config, "adapter_config.json", "application/json");
    download(weights, "adapter_model.safetensors", "application/octet-stream");
    status(
      "Downloaded the LoRA adapter in PEFT's format (adapter_config.json, adapter_model.safetensors).",
    );
  });
}

async function main() {
  wire();
  // Offline after the first load (sw.js); the app works without it, only not offline.
  navigator.serviceWorker?.register("sw.js").catch((e) => console.warn("no offline support:", e));
  try {
    cache = await modelCache();
    // The folder the user brought last time, from IndexedDB; else the built-in model.
    const chosen = localStorage.getItem("webdpo.model");
    const entry = chosen ? await cache.load(chosen).catch(() => null) : null;
    let saved;
    if (entry) {
      try {
        saved = await activate(
          {
            name: entry.name,
            label: entry.label,
            builtIn: false,
            files: entry.files,
            lora: entry.lora,
          },
          { restart: true },
        );
      } catch (e) {
        notice(
          `${entry.label} could not be loaded again (${e.message}); using the built-in model.`,
          "error",
        );
      }
    }
    if (!info) saved = await activate(await builtIn(), { restart: true });
    learningRates = await call("learningRates", {
      optims: [...$("optim").options].map((o) => o.value),
    });
    // Without saved state any notice about why (a changed or unreadable policy) stays up.
    if (saved) {
      notice(
        `Restored from this browser: ${model.builtIn ? "" : `${model.label}, `}` +
          `${plural(picks.length, "pair")} and the policy after ${plural(info.steps, "update")}.`,
        "info",
      );
    }
    status("Ready. Pick a preset or write a prompt, then Generate (G).");
    busy = false;
    render();
    $("generate").focus();
  } catch (e) {
    console.error(e);
    status("Could not start.");
    notice(`Could not start: ${e.message}`, "error");
  }
}

main();
