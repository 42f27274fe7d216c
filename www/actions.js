// What the user does: generate a pair, pick one, undo, reset, train on stored pairs, import and
// export pairs and weights, change settings. Each changes the state, then the views show it.
// Every pick is in IndexedDB before its update runs.
import { call } from "./client.js";
import { callWithFallback, saveState } from "./models.js";
import { showLast, showPick } from "./shown.js";
import { learnt, state } from "./state.js";
import { download, fmt, notice, plural, status } from "./views/dom.js";
import { renderCharts } from "./views/charts.js";
import { toJsonl } from "./views/data.js";
import { renderMetrics } from "./views/metrics.js";
import { promptText, renderComparison, renderPair } from "./views/pair.js";
import {
  readSettings,
  renderSettings,
  sampling,
  settingsError,
  storeSettings,
} from "./views/settings.js";
import { render, run } from "./work.js";

/** The prompt as typed, or null (and a notice) when there is none. */
function promptOrNotice() {
  const text = promptText();
  if (!text) notice("Write a prompt first, or pick one of the presets.", "error");
  return text || null;
}

export function generate() {
  const text = promptOrNotice();
  if (!text) return;
  notice(null);
  return run("Generating", async () => {
    state.current = { prompt: null, texts: ["", ""], done: false };
    renderPair(state.current.texts);
    status("Writing two responses…");
    const { prompt, texts } = await callWithFallback(
      "generate",
      { text, n: 2, sampling: sampling(), reference: false },
      renderPair,
    );
    state.current = { prompt, texts, done: true };
    renderPair(texts);
    status("Which one is better? Press A or B (or S to skip).");
  });
}

export function compare() {
  const text = promptOrNotice();
  if (!text) return;
  return run("Comparing", async () => {
    const s = sampling();
    for (const reference of [false, true]) {
      renderComparison(reference, "");
      status(`Sampling from the ${reference ? "reference" : "policy"}…`);
      const { texts } = await callWithFallback(
        "generate",
        { text, n: 1, sampling: s, reference },
        ([t]) => renderComparison(reference, t),
      );
      renderComparison(reference, texts[0]);
    }
    status("Policy and reference, same prompt and seed.");
  });
}

/** What the update of a pick computed, from its first step report (before the update). */
function pickValues(report) {
  const v = report.values;
  const values = {
    pc: v.policy_chosen[0],
    pr: v.policy_rejected[0],
    rc: v.reference_chosen[0],
    rr: v.reference_rejected[0],
    h: v.h[0],
    sigma: v.sigma[0],
    loss: v.losses[0],
  };
  // Both responses were sampled from the policy: their mean log-ratio estimates KL(π‖π_ref).
  const kl = (values.pc - values.rc + values.pr - values.rr) / 2;
  return { metrics: report.metrics, values, kl };
}

export function pick(winner) {
  const current = state.current;
  if (!current?.done) return;
  const [a, b] = current.texts;
  const [chosen, rejected] = winner === 0 ? [a, b] : [b, a];
  const prompt = current.prompt;
  return run("Learning from the pick", async () => {
    // The pick is stored before the update runs: whatever happens next, it is not lost.
    const pick = await state.store.addPick({
      model: state.model.name,
      prompt,
      chosen,
      rejected,
      source: "pick",
      time: Date.now(),
    });
    state.picks.push(pick);
    state.current = null;
    notice(null);
    status("Updating the policy…");
    const reply = await callWithFallback("prefer", { prompt, chosen, rejected, pick: pick.id });
    const { reports, scores, saved } = reply;
    Object.assign(pick, pickValues(reports[0]), { config: state.info.trainConfig });
    // The worker returns state (and keeps an undo snapshot) only when at least one step applied.
    const skipped = reports.find((r) => r.skipped)?.skipped;
    if (!saved) pick.skipped = skipped;
    await state.store.putPick(pick);
    await saveState(saved);
    state.canUndo = reply.canUndo;
    showPick(pick, scores, reports[reports.length - 1].metrics, reports.length);
    renderCharts(learnt());
    if (skipped)
      notice(`${saved ? "An update of this pick was" : "Update"} skipped: ${skipped}`, "error");
    status(
      !saved
        ? "The update was skipped; your pick is kept."
        : `Learned from your pick (${plural(reports.length, "update")}). ` +
            "Generate again to see the change.",
    );
  });
}

export function skip() {
  if (!state.current?.done) return;
  state.current = null;
  status("Skipped. Generate again when you are ready.");
  render();
}

export function undo() {
  return run("Undo", async () => {
    const { saved, canUndo, pick } = await call("undo");
    // The pick whose update the worker undid is removed with it.
    await state.store.deletePick(pick);
    state.picks = state.picks.filter((p) => p.id !== pick);
    await saveState(saved);
    state.canUndo = canUndo;
    await showLast();
    renderCharts(learnt());
    status(
      "Undone: the policy and optimizer are exactly as before the last update, and that pick is removed.",
    );
  });
}

export function reset() {
  const question =
    "Reset the policy to the reference? Your stored pairs are kept; you can train on them again.";
  if (!confirm(question)) return;
  return run("Reset", async () => {
    const { saved, canUndo } = await call("reset");
    await saveState(saved);
    state.canUndo = canUndo;
    status("The policy is the reference again (fresh optimizer). Your pairs are kept.");
  });
}

/** One pass over `pairs` (stored ones, or just imported), with progress. */
export function trainOn(pairs, label) {
  return run(label, async () => {
    status(`${label}: 0 of ${pairs.length} pairs`, { progress: 0 });
    const { reports, saved, canUndo } = await callWithFallback(
      "trainOn",
      { pairs: pairs.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected })) },
      ({ done, total, metrics }) =>
        status(`${label}: ${done} of ${total} pairs (loss ${fmt(metrics.loss)})`, {
          progress: done / total,
        }),
    );
    await saveState(saved);
    state.canUndo = canUndo;
    const meanLoss = reports.reduce((s, r) => s + r.metrics.loss, 0) / Math.max(1, reports.length);
    const updates = state.info.trainConfig.steps_per_pair;
    renderMetrics({ metrics: reports[reports.length - 1].metrics, updates });
    const skipped = reports.filter((r) => r.skipped).length;
    status(
      `${label}: done, ${reports.length} pairs, mean loss ${fmt(meanLoss)}` +
        `${skipped ? `, ${skipped} updates skipped (non-finite)` : ""}.`,
    );
  });
}

export const trainOnAll = () => trainOn(state.picks, "Training again on all pairs");

export function exportPairs() {
  download(toJsonl(state.picks), "webdpo-pairs.jsonl", "application/jsonl");
  const n = state.picks.length;
  status(`Exported ${n} pairs as TRL JSONL ({"prompt","chosen","rejected"} per line).`);
}

/** Stores the pairs of a TRL JSONL file (text or conversational rows) and trains on them; a bad
 *  line refuses the whole file. */
export async function importPairs(file) {
  let pairs;
  try {
    pairs = await call("parsePairs", { text: await file.text(), name: file.name });
  } catch (e) {
    notice(`Nothing imported: ${e.message}`, "error");
    return;
  }
  notice(null);
  const added = await state.store.addPicks(
    pairs.map((p) => ({ ...p, model: state.model.name, source: "import", time: Date.now() })),
  );
  state.picks.push(...added);
  render();
  await trainOn(added, `Imported ${added.length} pairs; training on them`);
}

/** A model.safetensors (or adapter) from the user becomes the policy. */
export function loadPolicy(file) {
  return run("Loading the policy", async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const reply = await call("loadWeights", { weights: bytes }, null, [bytes.buffer]);
    await saveState(reply.saved);
    state.canUndo = reply.canUndo;
    const what = state.info.lora ? "LoRA adapter" : "policy";
    status(`Loaded ${file.name} as the ${what} (fresh optimizer); the reference is unchanged.`);
  });
}

export function downloadPolicy() {
  return run("Downloading the policy", async () => {
    const weights = await call("policyWeights");
    download(weights, "webdpo-policy.safetensors", "application/octet-stream");
  });
}

export function downloadAdapter() {
  return run("Exporting the adapter", async () => {
    const { config, weights } = await call("adapter");
    download(config, "adapter_config.json", "application/json");
    download(weights, "adapter_model.safetensors", "application/octet-stream");
    status(
      "Downloaded the LoRA adapter in PEFT's format (adapter_config.json, adapter_model.safetensors).",
    );
  });
}

/** Applies the form's settings, or says why not and shows the settings in use. */
export async function applySettings() {
  settingsError("");
  try {
    const wanted = readSettings(state.info.trainConfig);
    state.info.trainConfig = await call("setTrainConfig", wanted.train);
    storeSettings(wanted);
  } catch (e) {
    settingsError(`Not applied: ${e.message}`);
    renderSettings(state.info.trainConfig);
  }
}

/** The learning rate that goes with an optimizer, as the core says. */
export const learningRateFor = (optim) => state.learningRates[optim];
