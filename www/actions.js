// What the user does: generate a pair and pick one (or one response and rate it 👍/👎), undo,
// reset, train on stored data, import and export pairs, ratings and weights, change settings.
// Each changes the state, then the views show it. Every pick and rating is in IndexedDB (as
// pending, journal.js) before its update runs, and settled with the checkpoint after it.
import { call } from "./client.js";
import { explain } from "./errors.js";
import { append, commit, learnPick, learnRating, trainOnRows } from "./journal.js";
import { callWithFallback, meterOf, startMeter } from "./models.js";
import { showLast, showPick } from "./shown.js";
import { learnt, rating, state, turn } from "./state.js";
import { $, download, fmt, notice, plural, status } from "./views/dom.js";
import { renderBehaviour } from "./views/behaviour.js";
import { renderCharts } from "./views/charts.js";
import { ratingsJsonl, toJsonl } from "./views/data.js";
import { askGuess, reveal } from "./views/guided.js";
import { renderMetrics } from "./views/metrics.js";
import { promptText, renderComparison, renderPair } from "./views/pair.js";
import {
  pairStyle,
  readSettings,
  renderSettings,
  sampling,
  settingsError,
  storeSampling,
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
  $("reveal").hidden = true;
  // A rating objective (KTO) asks about one response, a pairwise one about two.
  const n = rating() ? 1 : 2;
  return run("Generating", async () => {
    state.current = { prompt: null, texts: Array(n).fill(""), done: false };
    renderPair(state.current.texts);
    status(n === 1 ? "Writing a response…" : "Writing two responses…");
    const { prompt, texts, shared } = await callWithFallback(
      "generate",
      { text, n, sampling: sampling(), reference: false, pairs: pairStyle() },
      renderPair,
    );
    state.current = { prompt, texts, done: true };
    renderPair(texts, shared);
    status(
      n === 1
        ? "Is it good? Press Y (👍) or N (👎), or S to skip."
        : "Which one is better? Press A or B (or S to skip).",
    );
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

export function pick(winner) {
  const current = state.current;
  if (!current?.done) return;
  const [a, b] = current.texts.map((t) => turn("assistant", t));
  const [chosen, rejected] = winner === 0 ? [a, b] : [b, a];
  const prompt = turn("user", current.prompt);
  return run("Learning from the pick", async () => {
    // The pick is stored before the update runs: whatever happens next, it is not lost.
    const [pick] = await append([{ prompt, chosen, rejected, source: "pick" }]);
    state.picks.push(pick);
    state.current = null;
    render();
    notice(null);
    // Guided mode: the guess comes first, with the responses' token scores before the update.
    const guided = $("guided").checked;
    const before = guided && (await callWithFallback("scores", { prompt, chosen, rejected }));
    const guess = guided && (status("Your guess first."), await askGuess());
    status("Updating the policy…");
    // The worker returns state (and keeps an undo snapshot) only when at least one step applied.
    const reply = await learnPick(pick);
    if (guided) reveal(guess, before, reply.scores);
    const { reports, scores, saved, skipped, deferred, steps } = reply;
    const undo = { keep: pick.id, from: state.info.steps };
    await commit(saved, { put: [pick], undo, deferred, steps });
    state.canUndo = reply.canUndo;
    showPick(pick, scores, reports[reports.length - 1].metrics, reports.length);
    renderCharts(learnt(), state.behaviour.reference);
    if (skipped)
      notice(
        `${reply.applied ? "An update of this pick was" : "Update"} skipped: ${skipped}`,
        "error",
      );
    status(
      !reply.applied
        ? "The update was skipped; your pick is kept."
        : `Learned from your pick (${plural(reports.length, "update")}). ` +
            "Generate again to see the change.",
    );
  });
}

/** Rates the response on show: 👍 (`label` true) or 👎. Stored first, then learnt with KTO on a
 *  batch of it and recent ratings; with `kto` a first rating waits for a second. */
export function rate(label) {
  const current = state.current;
  if (!current?.done) return;
  const completion = turn("assistant", current.texts[0]);
  const prompt = turn("user", current.prompt);
  return run("Learning from the rating", async () => {
    const [rated] = await append([{ prompt, completion, label, source: "rating" }]);
    state.ratings.push(rated);
    state.current = null;
    render();
    notice(null);
    status("Updating the policy…");
    const reply = await learnRating(rated);
    const { reports, scores, saved, skipped, settled, deferred, steps } = reply;
    const undo = { keep: rated.id, from: state.info.steps };
    await commit(saved, { put: settled, undo, deferred, steps });
    state.canUndo = reply.canUndo;
    if (reports.length === 0) {
      status(
        "Kept. KTO compares each rating with the others in its batch (its reference point " +
          "z₀), so it learns once there is a second rating: rate one more.",
      );
      return;
    }
    showPick(rated, scores, reports[reports.length - 1].metrics, reports.length);
    if (skipped)
      notice(
        `${reply.applied ? "An update of this rating was" : "Update"} skipped: ${skipped}`,
        "error",
      );
    const batch = reports[0].values.labels.length;
    status(
      !reply.applied
        ? "The update was skipped; your rating is kept."
        : `Learned from your rating with ${plural(batch - 1, "earlier rating")} ` +
            `(${plural(reports.length, "update")}). Generate again to see the change.`,
    );
  });
}

export function skip() {
  if (!state.current?.done) return;
  state.current = null;
  status("Skipped. Generate again when you are ready.");
  render();
}

/** Undoes the last update: from the worker's memory when it holds the state before it, else
 *  (after a reload) from the checkpoint stored before it. What it learnt from is removed. */
export function undo() {
  return run("Undo", async () => {
    const undone = state.info.steps;
    let reply;
    if (state.canUndo) {
      reply = await callWithFallback("undo");
    } else {
      const stored = await state.store.undoFrom(undone);
      if (!stored) throw new Error("nothing to undo: the last update was not a pick or a rating");
      reply = await callWithFallback(
        "restore",
        stored.fresh ? { fresh: true } : { weights: stored.weights, optimizer: stored.optimizer },
      );
      reply.pick = stored.pick;
    }
    const { saved, canUndo, pick } = reply;
    await commit(saved, { remove: [pick], undo: { drop: undone } });
    state.picks = state.picks.filter((p) => p.id !== pick);
    state.ratings = state.ratings.filter((r) => r.id !== pick);
    state.canUndo = canUndo;
    await showLast();
    renderCharts(learnt(), state.behaviour.reference);
    status(
      "Undone: the policy and optimizer are exactly as before the last update, and what it learnt from is removed.",
    );
  });
}

export function reset() {
  const question =
    "Reset the policy to the reference? Your stored pairs are kept; you can train on them again.";
  if (!confirm(question)) return;
  return run("Reset", async () => {
    const { saved, canUndo } = await callWithFallback("reset");
    await commit(saved, { undo: { clear: true } });
    state.canUndo = canUndo;
    status("The policy is the reference again (fresh optimizer). Your pairs are kept.");
  });
}

/** Shows Cancel while `work` (a pass over stored rows) runs: the worker stops after the pair
 *  or batch under way, and the updates made so far are kept. */
async function cancellable(work) {
  const button = $("cancel");
  Object.assign(button, { hidden: false, disabled: false });
  button.onclick = () => ((button.disabled = true), call("cancel"));
  try {
    return await work();
  } finally {
    Object.assign(button, { hidden: true, onclick: null });
  }
}

/** One pass over stored `pairs` (all of them, or just imported: pending), with progress; a
 *  cancelled pass keeps its updates, and what it did not reach stays stored, untrained. */
export function trainOn(pairs, label) {
  return run(label, async () => {
    status(`${label}: 0 of ${pairs.length} pairs`, { progress: 0 });
    const { reports, saved, canUndo, cancelled } = await cancellable(() =>
      trainOnRows(pairs, false, ({ done, total, metrics }) =>
        status(`${label}: ${done} of ${total} pairs (loss ${fmt(metrics.loss)})`, {
          progress: done / total,
        }),
      ),
    );
    await commit(saved, { put: pairs.filter((p) => p.pending), undo: { clear: true } });
    state.canUndo = canUndo;
    const meanLoss = reports.reduce((s, r) => s + r.metrics.loss, 0) / Math.max(1, reports.length);
    const updates = state.info.trainConfig.steps_per_pair;
    if (reports.length) renderMetrics({ metrics: reports[reports.length - 1].metrics, updates });
    const skipped = reports.filter((r) => r.skipped).length;
    const how = cancelled
      ? `cancelled after ${reports.length} of ${pairs.length}`
      : `done, ${reports.length}`;
    status(
      `${label}: ${how} pairs, mean loss ${fmt(meanLoss)}` +
        `${skipped ? `, ${skipped} updates skipped (non-finite)` : ""}.`,
    );
  });
}

/** One pass over `ratings` with KTO, in batches of `rating_batch`, with progress. */
export function trainOnRatings(ratings, label) {
  return run(label, async () => {
    const batch = state.info.trainConfig.rating_batch;
    status(`${label}: 0 of ${ratings.length} ratings`, { progress: 0 });
    const { reports, saved, canUndo, cancelled } = await cancellable(() =>
      trainOnRows(ratings, true, ({ done, total, metrics }) =>
        status(`${label}: ${done} of ${total} ratings (loss ${fmt(metrics.loss)})`, {
          progress: done / total,
        }),
      ),
    );
    await commit(saved, { put: ratings.filter((r) => r.pending), undo: { clear: true } });
    state.canUndo = canUndo;
    if (reports.length)
      renderMetrics({ metrics: reports[reports.length - 1].metrics, updates: reports.length });
    status(
      `${label}: ${cancelled ? "cancelled after" : "done,"} ` +
        `${plural(reports.length, "batch", "batches")} of up to ${batch}.`,
    );
  });
}

/** Trains again on everything stored that the objective reads: ratings for KTO, else pairs. */
export const trainOnAll = () =>
  rating()
    ? trainOnRatings(state.ratings, "Training again on all ratings")
    : trainOn(state.picks, "Training again on all pairs");

export function exportPairs() {
  download(toJsonl(state.picks), "webdpo-pairs.jsonl", "application/jsonl");
  const n = state.picks.length;
  status(`Exported ${n} pairs as TRL JSONL ({"prompt","chosen","rejected"} per line).`);
}

export function exportRatings() {
  download(ratingsJsonl(state.ratings), "webdpo-ratings.jsonl", "application/jsonl");
  const n = state.ratings.length;
  status(
    `Exported ${plural(n, "rating")} as TRL's unpaired JSONL ({"prompt","completion","label"} per line).`,
  );
}

/** The rows of a TRL JSONL file, read in the worker chunk by chunk with progress (cancellable),
 *  or null: cancelled, or refused (the notice names the line and byte). */
function readPreferences(file) {
  return run(`Reading ${file.name}`, async () => {
    notice(null);
    const mb = (bytes) => (bytes / 1e6).toFixed(1);
    try {
      const parsed = await cancellable(() =>
        call("importPreferences", { file }, ({ read, total, rows }) =>
          status(`Reading ${file.name}: ${mb(read)} of ${mb(total)} MB, ${plural(rows, "row")}`, {
            progress: total ? read / total : null,
          }),
        ),
      );
      if (!parsed) status(`Reading ${file.name} cancelled: nothing imported.`);
      return parsed;
    } catch (e) {
      notice(`Nothing imported: ${explain(e)}`, "error");
      status(`${file.name} was not imported.`);
      return null;
    }
  });
}

/** Stores the pairs or ratings of a TRL JSONL file (text or conversational rows) and trains on
 *  them (ratings only with KTO); a bad line refuses the whole file. */
export async function importPairs(file) {
  const parsed = await readPreferences(file);
  if (!parsed) return;
  // Pending until trained on: only pairs, or ratings with KTO, are.
  const learns = parsed.kind === "pairs" || rating();
  let added;
  try {
    added = await append(
      parsed.rows.map((p) => ({ ...p, source: "import" })),
      { pending: learns },
    );
  } catch (e) {
    notice(`Nothing imported: ${explain(e)}`, "error");
    return;
  }
  if (parsed.kind === "pairs") {
    state.picks = state.picks.concat(added);
    render();
    return trainOn(added, `Imported ${added.length} pairs; training on them`);
  }
  state.ratings = state.ratings.concat(added);
  render();
  if (!rating()) {
    status(
      `Imported ${plural(added.length, "rating")}; choose KTO (Objective) and "Train again" to learn from them.`,
    );
    return;
  }
  return trainOnRatings(added, `Imported ${plural(added.length, "rating")}; training on them`);
}

/** A model.safetensors (or adapter) from the user becomes the policy. */
export function loadPolicy(file) {
  return run("Loading the policy", async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const reply = await callWithFallback("loadWeights", { weights: bytes });
    await commit(reply.saved, { undo: { clear: true } });
    state.canUndo = reply.canUndo;
    const what = state.info.lora ? "LoRA adapter" : "policy";
    status(`Loaded ${file.name} as the ${what} (fresh optimizer); the reference is unchanged.`);
  });
}

export function downloadPolicy() {
  return run("Downloading the policy", async () => {
    const weights = await callWithFallback("policyWeights");
    download(weights, "webdpo-policy.safetensors", "application/octet-stream");
  });
}

export function downloadAdapter() {
  return run("Exporting the adapter", async () => {
    const { config, weights } = await callWithFallback("adapter");
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
  if (!state.trainer) return;
  const wasRating = rating();
  try {
    const wanted = readSettings(state.info.trainConfig);
    // A generation asked for meanwhile already samples with them.
    storeSampling(wanted.sampling);
    state.info.trainConfig = await call("setTrainConfig", wanted.train);
    storeSettings(wanted);
    if (JSON.stringify(meterOf(state)) !== state.behaviour.settings) await startMeter();
  } catch (e) {
    settingsError(`Not applied: ${e.message}`);
  }
  renderSettings(state.info.trainConfig);
  if (rating() !== wasRating) {
    // A pair cannot be rated, nor one response picked from: ask again.
    state.current = null;
    renderPair(["", ""]);
    status(
      rating()
        ? "Rate one response: Generate (G), then 👍 (Y) or 👎 (N)."
        : "Pick between two responses: Generate (G), then A or B.",
    );
  }
  render();
}

/** The learning rate that goes with an optimizer, as the core says. */
export const learningRateFor = (optim) => state.learningRates[optim];

/** A report of the behaviour meter (worker.js): progress, a finished measurement (a policy's
 *  after a pick is kept with the pick, for the chart), or why it stopped. */
export async function behaviourMeasured(report) {
  const meter = state.behaviour;
  if (report.error) {
    Object.assign(meter, { measuring: null, error: report.error });
  } else if (!report.done) {
    const { reference, measured, total } = report;
    Object.assign(meter, { measuring: { reference, measured, total }, error: null });
  } else {
    meter.measuring = null;
    if (report.reference) meter.reference = report.behaviour;
    else meter.policy = report.steps > 0 ? report : null;
    const pick = report.pick !== null && learnt().find((p) => p.id === report.pick);
    if (pick && !report.reference) {
      const { rates, kl } = report.behaviour;
      pick.behaviour = { rates, kl: { mean: kl.mean, stderr: kl.stderr } };
      await state.store.putPick(pick);
    }
    renderCharts(learnt(), meter.reference);
  }
  renderBehaviour(meter);
}
