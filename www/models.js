// Loading models: the built-in one, a folder the user brings (kept in IndexedDB), the saved
// training state of each, and the fallback to the CPU when the GPU fails.
import { call, callAlone, hasWorker, startWorker } from "./client.js";
import { explain, isGpuFailure } from "./errors.js";
import { isRating, learnt, state } from "./state.js";
import { openStore } from "./store.js";
import { replay } from "./journal.js";
import { notice, status } from "./views/dom.js";
import { renderBehaviour } from "./views/behaviour.js";
import {
  forgetTrainConfig,
  meterSettings,
  renderSettings,
  storedTrainConfig,
} from "./views/settings.js";
import { renderCharts } from "./views/charts.js";
import { renderFolders, renderModel, loraChoice } from "./views/your-model.js";
import { renderStorage } from "./views/data.js";
import { showLast } from "./shown.js";
import { run } from "./work.js";

const BUILT_IN = {
  name: "storyworld",
  label: "the built-in story model",
  builtIn: true,
  dir: "models/storyworld",
};

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
  Number(state.params.get("memory-budget")) ||
  (navigator.deviceMemory ? (navigator.deviceMemory * 1e9) / 2 : undefined);

/** What the worker loads `model` from: the built-in model's three files, or a folder's files
 *  with its LoRA setting. Copies: the worker takes ownership of what it is sent, and a fallback
 *  or a timing needs the bytes again. */
const sourceOf = (model) =>
  model.builtIn
    ? { config: model.config, tokenizer: model.tokenizer.slice(), weights: model.weights.slice() }
    : {
        files: model.files.map((f) => ({ name: f.name, bytes: f.bytes.slice() })),
        lora: model.lora,
        budget: memoryBudget(),
      };

/** Starts `state.model` from the saved state (if any) on the device `chooseBackend` says. With
 *  `restart`, in a fresh worker (after a failure); otherwise the worker keeps its current model
 *  until the new one has loaded. */
async function startModel(saved, { restart = true } = {}) {
  const { model, params } = state;
  const backend = await chooseBackend();
  if (restart || !hasWorker()) startWorker();
  const args = {
    ...sourceOf(model),
    backend,
    simulateFailure: params.has("simulate-gpu-failure"),
    holdUpdates: params.has("hold-updates"),
    checkpointEvery: Number(params.get("checkpoint-every")) || 0,
    readbackTimeout: Number(params.get("readback-timeout")) || 0,
    saved: saved ? { weights: saved.weights, optimizer: saved.optimizer } : null,
    trainConfig: storedTrainConfig(),
  };
  status(`Starting ${model.label} on ${backend === "cpu" ? "the CPU" : "WebGPU if available"}…`, {
    progress: null,
  });
  let info;
  try {
    info = await call("load", args);
  } catch (e) {
    // The GPU failed while the model loaded onto it: load on the CPU instead, and remember.
    if (backend === "cpu" || !isGpuFailure(e, true)) throw e;
    rememberGpuFailure("WebGPU", e.message);
    startWorker();
    info = await call("load", { ...args, backend: "cpu" });
    notice(`The GPU failed while loading (${e.message}); running on the CPU.`, "error");
  }
  if (info.refusedSettings) forgetTrainConfig(info.refusedSettings);
  if (info.freshOptimizer)
    notice(
      `The policy is restored with a fresh optimizer: its saved state did not fit the ` +
        `optimizer in use (${info.freshOptimizer}).`,
      "error",
    );
  state.info = info;
  state.canUndo = info.canUndo;
  renderModel(state);
  await startMeter();
}

/** The behaviour meter's settings for the model and device in `state` (off but for the
 *  built-in model, and in a tab that watches another train). */
export const meterOf = ({ model, info, trainer }) =>
  model.builtIn && trainer
    ? meterSettings(info.emulatedGpu)
    : { n: 0, auto: false, sampling: null };

/** Turns the behaviour meter on (built-in model, at least one story) with the current settings;
 *  the worker measures the reference, then the policy. */
export async function startMeter() {
  const settings = meterOf(state);
  // Off by itself on an emulated GPU: the page says so, and how to turn it on.
  const why = settings.auto && settings.n === 0 ? state.info.device.replace(/^GPU: /, "") : null;
  state.behaviour = { on: settings.n > 0, why, reference: null, policy: null, measuring: null };
  state.behaviour.settings = JSON.stringify(settings);
  renderBehaviour(state.behaviour);
  await call("setMeter", settings);
}

/** Tells the worker the stored ratings, so that the next rating's batch draws on them (KTO's
 *  batches are of recent ratings, across reloads too). */
async function recallRatings() {
  // A pending rating joins the batch when it is applied again (journal.js).
  const recent = state.ratings.filter((r) => !r.pending).slice(-32);
  const ratings = recent.map(({ prompt, completion, label }) => ({ prompt, completion, label }));
  if (ratings.length) await call("recallRatings", { ratings });
}

// A GPU that failed here is remembered (its name, the browser's adapter, when, why): later
// loads start on the CPU until the user asks to try the GPU again, or the adapter changes.
const GPU_FAILED_KEY = "webdpo.gpu-failed";

/** The browser's WebGPU adapter as a string (vendor, architecture, device, description), or
 *  "" without one: what a remembered failure is tied to. */
export async function adapterKey() {
  try {
    const info = (await navigator.gpu?.requestAdapter())?.info;
    return info ? [info.vendor, info.architecture, info.device, info.description].join("|") : "";
  } catch {
    return "";
  }
}

/** The GPU failure remembered from an earlier load on adapter `key`, or null. */
export function rememberedGpuFailure(key) {
  try {
    const failure = JSON.parse(localStorage.getItem(GPU_FAILED_KEY) ?? "null");
    // One remembered before adapters were told apart applies to any.
    return failure?.adapter && (failure.key ?? key) === key ? failure : null;
  } catch {
    return null;
  }
}

/** Remembers that the GPU `adapter` failed (`reason`): this page and later loads on the same
 *  adapter use the CPU. */
function rememberGpuFailure(adapter, reason) {
  state.gpuFailure = { adapter, key: state.adapterKey, reason, time: Date.now() };
  localStorage.setItem(GPU_FAILED_KEY, JSON.stringify(state.gpuFailure));
  state.backend = "cpu";
}

/** Forgets the remembered GPU failure: the next load tries the GPU again. */
export const forgetGpuFailure = () => localStorage.removeItem(GPU_FAILED_KEY);

// The device each model runs on, per adapter: both timed once (one small update and one token
// on WebGPU and on the CPU, in a worker of their own), the faster per pick chosen, and the
// user's override kept with the timings. Keyed by adapter and model: a GPU that loses to the
// CPU on a tiny model can win on a large one.
const DEVICE_CHOICE_KEY = "webdpo.device-choice";
// What a pick costs, to weigh an update against sampling: one update and 64 sampled tokens.
const PICK_TOKENS = 64;

function deviceChoices() {
  try {
    return JSON.parse(localStorage.getItem(DEVICE_CHOICE_KEY) ?? "{}") ?? {};
  } catch {
    return {};
  }
}

const choiceKey = () => `${state.adapterKey}\n${state.model.name}`;

/** The timings and override of this adapter and model ({webgpu, cpu: {device, isGpu, updateMs,
 *  tokenMs, pickMs}, faster, pickTokens, override, time}; webgpu.adapter names it as the
 *  browser does), or null before they are timed. */
const storedDeviceChoice = () => deviceChoices()[choiceKey()] ?? null;

function storeDeviceChoice(choice) {
  const all = deviceChoices();
  if (choice) all[choiceKey()] = choice;
  else delete all[choiceKey()];
  localStorage.setItem(DEVICE_CHOICE_KEY, JSON.stringify(all));
}

/** The user's device for this adapter and model: "webgpu", "cpu", or null for the faster. */
export const overrideDevice = (override) =>
  storeDeviceChoice({ ...storedDeviceChoice(), override: override || null });

/** Forgets this adapter and model's timings: the next load times both devices again. */
export const forgetDeviceChoice = () => storeDeviceChoice(null);

/** The backend to load on: `?backend=` or a remembered GPU failure decide; without a WebGPU
 *  adapter, the core falls back to the CPU; else the device chosen for this adapter and model,
 *  timed now if it was not before. */
async function chooseBackend() {
  state.deviceChoice = null;
  if (state.backend !== "auto" || !state.adapterKey) return state.backend;
  let choice = storedDeviceChoice();
  if (!choice?.faster) {
    const timings = await timeDevices();
    if (!timings) return "cpu";
    choice = { ...timings, override: choice?.override ?? null, time: Date.now() };
    storeDeviceChoice(choice);
  }
  state.deviceChoice = choice;
  return choice.override ?? choice.faster;
}

/** Times `state.model` on WebGPU, then on the CPU; returns both and the faster per pick, or
 *  null when the GPU failed (remembered: this load and later ones use the CPU). */
async function timeDevices() {
  const { model } = state;
  const timings = {};
  for (const backend of ["webgpu", "cpu"]) {
    status(
      `Choosing where ${model.label} runs (once on this device): timing an update and a token ` +
        `on ${backend === "cpu" ? "the CPU" : "WebGPU"}…`,
      { progress: null },
    );
    try {
      const readbackTimeout = Number(state.params.get("readback-timeout")) || 0;
      const args = { ...sourceOf(model), backend, readbackTimeout };
      const t = await callAlone("timeDevice", args);
      timings[backend] = { ...t, pickMs: t.updateMs + PICK_TOKENS * t.tokenMs };
    } catch (e) {
      if (backend === "cpu" || !isGpuFailure(e, true)) throw e;
      rememberGpuFailure("WebGPU", e.message);
      notice(`The GPU failed while it was timed (${e.message}); running on the CPU.`, "error");
      return null;
    }
  }
  const { webgpu, cpu } = timings;
  const faster = !webgpu.isGpu || cpu.pickMs < webgpu.pickMs ? "cpu" : "webgpu";
  // Browsers hide the adapter's name from wgpu; their own adapter info names it.
  const adapter = state.adapterKey.split("|").filter(Boolean).join(" ");
  return { webgpu: { ...webgpu, adapter }, cpu, faster, pickTokens: PICK_TOKENS };
}

/** Runs `op` on the worker; on a GPU failure, restarts on the CPU from the last saved state and
 *  runs it again there, telling the user. Picks are already in IndexedDB, so none is lost. */
export async function callWithFallback(op, args, onProgress) {
  try {
    return await call(op, args, onProgress);
  } catch (e) {
    if (!isGpuFailure(e, state.info?.isGpu)) throw e;
    const reason = e.message;
    rememberGpuFailure(state.info.device.replace(/^GPU: /, ""), reason);
    // Whatever happens next, this page no longer runs on that GPU.
    state.info.isGpu = false;
    try {
      await startModel(await state.store.loadState());
    } catch (restart) {
      throw new Error(
        `the GPU failed (${reason}) and starting on the CPU failed too (${restart.message}); ` +
          "reload the page",
      );
    }
    await recallRatings();
    notice(
      `The GPU failed (${reason}). Continuing on the CPU from the last saved state; your picks ` +
        "are kept. Later loads start on the CPU (Your model → Try the GPU again).",
      "error",
    );
    return call(op, args, onProgress);
  }
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
export async function builtIn() {
  const [config, tokenizer, weights] = await Promise.all([
    fetchBytes(`${BUILT_IN.dir}/config.json`, "config").then((b) => new TextDecoder().decode(b)),
    fetchBytes(`${BUILT_IN.dir}/tokenizer.json`, "tokenizer"),
    fetchBytes(`${BUILT_IN.dir}/model.safetensors`, "the model"),
  ]);
  return { ...BUILT_IN, config, tokenizer, weights };
}

/** Makes `next` the model in use, with its own stored pairs and training state; returns the
 *  state it restored. If it cannot load (a refused memory check, a bad file), the model in use
 *  stays and the error propagates. */
export async function activate(next, { restart = false } = {}) {
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
  const previous = { model: state.model, info: state.info };
  state.model = next;
  try {
    try {
      await startModel(saved, { restart });
    } catch (e) {
      if (!saved) throw e;
      // Saved state that does not load (e.g. the model was updated): start fresh, keep the pairs.
      notice(
        `The saved policy could not be restored (${e.message}); starting from the reference. The pairs are kept.`,
        "error",
      );
      saved = null;
      await startModel(null, { restart: false });
    }
  } catch (e) {
    Object.assign(state, previous);
    throw e;
  }
  state.store = nextStore;
  state.storedUndo = await nextStore.canUndo(state.info.steps);
  const stored = await nextStore.picks();
  state.picks = stored.filter((p) => !isRating(p));
  state.ratings = stored.filter(isRating);
  await recallRatings();
  state.current = null;
  // What was saved but not learnt when the page last closed is learnt now, from the checkpoint.
  try {
    state.replayed = state.trainer ? await replay() : 0;
  } catch (e) {
    // The model is loaded; what could not be applied stays pending for the next start.
    state.replayed = 0;
    notice(`What was saved but not yet learnt could not be learnt now: ${explain(e)}`, "error");
  }
  renderSettings(state.info.trainConfig);
  renderCharts(learnt(), state.behaviour.reference);
  await showLast();
  return saved;
}

/** The model files of a picked or dropped folder (top level only; the core says which names
 *  loading reads, and refuses a folder without config.json or a .gguf file), and the name of
 *  the folder (or of the one file). */
async function modelFiles(files) {
  const top = files.filter((f) => (f.path.match(/\//g) ?? []).length <= 1);
  const label = files[0]?.path.includes("/")
    ? files[0].path.split("/")[0]
    : files.length === 1
      ? files[0].file.name
      : "your model";
  const names = top.map((f) => f.file.name);
  const read = new Set(await call("modelFiles", { names, folder: label }));
  return { label, files: top.filter((f) => read.has(f.file.name)).map((f) => f.file) };
}

/** Loads a Hugging Face model folder the user brought (`picked`: its files with their paths), and
 *  keeps it in IndexedDB for reloads. */
export async function importFolder(picked) {
  // What an earlier action said is cleared now, not once the worker has filtered the files.
  notice(null);
  let label, files;
  try {
    ({ label, files } = await modelFiles(picked));
  } catch (e) {
    notice(e.message, "error");
    return;
  }
  await run("Loading your model", async () => {
    notice(null);
    const lora = loraChoice();
    // The memory check first, from config.json alone: a model too large is refused before its
    // weights are read into the tab (a .gguf file's config is inside it: checked on load).
    const configFile = files.find((f) => f.name === "config.json");
    if (configFile) {
      const config = await configFile.text();
      await call("checkMemory", { config, backend: state.backend, lora, budget: memoryBudget() });
    }
    const total = files.reduce((n, f) => n + f.size, 0);
    status(`Reading ${files.length} files of ${label} (${(total / 1e6).toFixed(0)} MB)…`, {
      progress: null,
    });
    const bytes = await Promise.all(
      files.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })),
    );
    // Known by its content, not its name: two folders named alike keep their own pairs and
    // state, and the same files brought again find theirs.
    const next = { label, builtIn: false, files: bytes, lora };
    next.fingerprint = await fingerprint(next);
    next.name = folderName(next.fingerprint, lora);
    await activate(next);
    localStorage.setItem("webdpo.model", next.name);
    try {
      await state.cache.save({ name: next.name, label, files: bytes, lora });
    } catch (e) {
      notice(
        `${label} is loaded but could not be kept in this browser (${explain(e)}); ` +
          "after a reload, choose the folder again.",
        "error",
      );
    }
    await listFolders();
    const adapters = state.info.lora ? ` (${state.info.lora})` : "";
    status(`${label} is ready${adapters}. Write a prompt, then Generate (G).`);
  });
}

export async function useBuiltIn() {
  await run("Loading the built-in model", async () => {
    await activate(await builtIn());
    localStorage.removeItem("webdpo.model");
    await listFolders();
    status("Ready. Pick a preset or write a prompt, then Generate (G).");
  });
}

/** A stored folder's name: its files' SHA-256 (16 hex digits) and the LoRA setting, whose
 *  training state is its own. */
const folderName = (hash, lora) =>
  `folder:${hash.slice(0, 16)}` +
  (lora ? `:lora-r${lora.r}-a${lora.alpha}${lora.all_linear ? "-all" : ""}` : ":full");

/** Shows the folders kept in this browser, each to use again or delete. */
export async function listFolders() {
  const folders = await state.cache.list().catch(() => []);
  renderFolders(folders, state.model?.name, { use: useStored, remove: deleteStored });
}

/** Loads a folder kept in this browser. */
export function useStored(name) {
  return run("Loading your model", async () => {
    const entry = await state.cache.load(name);
    if (!entry) throw new Error("that folder is no longer stored in this browser");
    const { label, files, lora } = entry;
    await activate({ name, label, builtIn: false, files, lora });
    localStorage.setItem("webdpo.model", name);
    await listFolders();
    status(`${label} is ready. Write a prompt, then Generate (G).`);
  });
}

/** Deletes a stored folder's files and its trained policy (after asking); its pairs stay. The
 *  folder in use is left for the built-in model first. */
export async function deleteStored({ name, label, bytes }) {
  const question =
    `Delete ${label} (${(bytes / 1e6).toFixed(0)} MB) and its trained policy from this browser? ` +
    "Its pairs and ratings are kept: export them first to take them elsewhere; bringing the " +
    "same folder back shows them again.";
  if (!confirm(question)) return;
  if (state.model?.name === name) await useBuiltIn();
  if (state.model?.name === name) return;
  await run("Deleting the folder", async () => {
    await state.cache.remove(name);
    await listFolders();
    await renderStorage();
    status(`${label} is deleted from this browser; its pairs are kept.`);
  });
}

/** The folder the user brought last time (from IndexedDB), else the built-in model; returns the
 *  training state it restored. */
export async function restoreLast() {
  const chosen = localStorage.getItem("webdpo.model");
  const entry = chosen ? await state.cache.load(chosen).catch(() => null) : null;
  if (entry) {
    try {
      const { name, label, files, lora } = entry;
      return await activate({ name, label, builtIn: false, files, lora }, { restart: true });
    } catch (e) {
      notice(
        `${entry.label} could not be loaded again (${e.message}); using the built-in model.`,
        "error",
      );
    }
  }
  return activate(await builtIn(), { restart: true });
}
