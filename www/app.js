// The page: prompt → two streamed responses → a pick (or one response → 👍/👎) → an update in
// the worker → the teaching view, charts and metrics. This module wires the controls to the actions and starts
// the app; the state is in state.js, what changes it in actions.js and models.js, and what shows
// it in views/.
import * as act from "./actions.js";
import { call, listenBehaviour } from "./client.js";
import { applyLink, lessonLink } from "./link.js";
import {
  activate,
  adapterKey,
  forgetDeviceChoice,
  forgetGpuFailure,
  importFolder,
  listFolders,
  overrideDevice,
  rememberedGpuFailure,
  restoreLast,
  startMeter,
  useBuiltIn,
} from "./models.js";
import { isRating, learnt, state } from "./state.js";
import { modelCache, onVersionConflict } from "./store.js";
import { claim, listenTabs, takeOver } from "./tabs.js";
import { $, el, notice, plural, status } from "./views/dom.js";
import { makeCharts, renderCharts } from "./views/charts.js";
import { droppedFiles, pickedFiles, renderImportLimits, renderStorage } from "./views/data.js";
import { droppedSettings } from "./views/settings.js";
import { render, run } from "./work.js";

const PRESETS = [
  "Write a story about a shy fox who finds a red kite.",
  "Tell me a story about Luna the curious owl, who wants a golden bell.",
  "Can you tell me a story about a brave mouse who loses a blue boat?",
  "Write a story about a sleepy bear who finds a green ball.",
  "Tell me a story about Max the kind dog, who wants a silver cup.",
  "Can you tell me a story about a clever turtle who loses a yellow map?",
];

const KEYS = {
  g: "generate",
  c: "compare",
  a: "pick-a",
  b: "pick-b",
  y: "rate-up",
  n: "rate-down",
  s: "skip",
  u: "undo",
};

/** Runs `body` on the first file chosen in a file input, then clears the input. */
const onFile = (id, body) =>
  $(id).addEventListener(
    "change",
    (e) => e.target.files[0] && body(e.target.files[0]).finally(() => (e.target.value = "")),
  );

function wire() {
  for (const p of PRESETS) {
    const b = el("button", { type: "button", class: "preset" }, p);
    b.addEventListener("click", () => {
      $("prompt").value = p;
      if (!state.busy) act.generate();
    });
    $("presets").append(b);
  }
  $("ask").addEventListener("submit", (e) => (e.preventDefault(), act.generate()));
  $("compare").addEventListener("click", act.compare);
  $("pick-a").addEventListener("click", async () => (await act.pick(0), $("generate").focus()));
  $("pick-b").addEventListener("click", async () => (await act.pick(1), $("generate").focus()));
  $("rate-up").addEventListener("click", async () => (await act.rate(true), $("generate").focus()));
  $("rate-down").addEventListener(
    "click",
    async () => (await act.rate(false), $("generate").focus()),
  );
  $("skip").addEventListener("click", act.skip);
  $("undo").addEventListener("click", act.undo);
  $("reset").addEventListener("click", act.reset);
  $("train-all").addEventListener("click", act.trainOnAll);
  $("export").addEventListener("click", act.exportPairs);
  $("export-ratings").addEventListener("click", act.exportRatings);
  $("download").addEventListener("click", act.downloadPolicy);
  $("download-adapter").addEventListener("click", act.downloadAdapter);
  onFile("import", act.importPairs);
  onFile("load", act.loadPolicy);
  for (const id of ["folder", "gguf"])
    $(id).addEventListener("change", (e) => {
      const files = pickedFiles(e.target.files);
      if (files.length) importFolder(files).finally(() => (e.target.value = ""));
    });
  const drop = $("dropzone");
  drop.addEventListener("dragover", (e) => (e.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (state.busy)
      return notice("Wait for the current work to finish, then drop the folder again.", "error");
    importFolder(await droppedFiles(e.dataTransfer));
  });
  $("builtin").addEventListener("click", useBuiltIn);
  // Each optimizer with its own sensible learning rate, unless the user set one of their own
  // (runs before the form's change handler).
  $("optim").addEventListener("change", (e) => {
    const usual = act.learningRateFor(state.info.trainConfig.optim);
    if (Number($("lr").value) === usual) $("lr").value = act.learningRateFor(e.target.value);
  });
  $("settings").addEventListener("change", act.applySettings);
  $("copy-link").addEventListener("click", () => {
    const link = lessonLink();
    $("copy-link").dataset.link = link;
    status(`Lesson link: ${link}`);
    navigator.clipboard
      ?.writeText(link)
      .then(() => status(`Lesson link copied: ${link}`))
      .catch(() => {});
  });
  $("settings").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, select, textarea")) return;
    const button = KEYS[e.key.toLowerCase()];
    if (button && !$(button).disabled) {
      e.preventDefault();
      $(button).click();
    }
  });
  $("take-over").addEventListener("click", () => takeOver());
  $("retry-gpu").addEventListener("click", () => (forgetGpuFailure(), location.reload()));
  // A device chosen, or timed again: the page loads again on it (picks and policy are stored).
  $("device-select").addEventListener("change", (e) => {
    overrideDevice(e.target.value);
    location.reload();
  });
  $("time-again").addEventListener("click", () => (forgetDeviceChoice(), location.reload()));
  onVersionConflict({
    blocked: () =>
      notice("Another tab runs an older version of webdpo: close it to continue here.", "error"),
    replaced: () =>
      notice("webdpo was updated in another tab: reload this one to go on saving.", "error"),
  });
  listenTabs(watched);
  makeCharts();
  listenBehaviour(act.behaviourMeasured);
}

// Set once the page has started: a tab that becomes the trainer waits for it.
let started;

/** This tab trains now (the trainer's tab closed, or the user took over): the model's state is
 *  loaded again from the checkpoint, with what the other tab left pending applied. */
async function becomeTrainer() {
  await started;
  state.trainer = true;
  await run("Taking over the training", async () => {
    await activate(state.model);
    status(
      `This tab trains now: ${plural(state.picks.length, "pair")}, the policy after ` +
        `${plural(state.info.steps, "update")}.`,
    );
  });
}

/** Another tab took the training over: this one watches. */
async function becomeWatcher() {
  state.trainer = false;
  status("Another tab took over the training; this tab shows its pairs as they come.");
  render();
  await startMeter();
}

/** A commit in the training tab: a watching tab shows the stored pairs and ratings as they are. */
async function watched({ changed, steps }) {
  if (state.trainer || changed !== state.model?.name) return;
  const stored = await state.store.picks();
  state.picks = stored.filter((p) => !isRating(p));
  state.ratings = stored.filter(isRating);
  state.info.steps = steps;
  renderCharts(learnt(), state.behaviour.reference);
  render();
}

async function main() {
  wire();
  // Offline after the first load (sw.js); the app works without it, only not offline.
  const sw = navigator.serviceWorker;
  const replaced = !!sw?.controller;
  sw?.register("sw.js").catch((e) => console.warn("no offline support:", e));
  // A release installed while this tab is open (the server has a newer app than this tab runs).
  sw?.addEventListener("controllerchange", () => {
    if (replaced)
      notice("A new version of webdpo is installed: reload the page to use it.", "info");
  });
  let begin;
  started = new Promise((resolve) => (begin = resolve));
  try {
    state.trainer = await claim({ becomeTrainer, becomeWatcher });
    // A GPU that failed here before is not tried again until the user asks.
    state.adapterKey = await adapterKey();
    if (state.backend === "auto") state.gpuFailure = rememberedGpuFailure(state.adapterKey);
    if (state.gpuFailure) state.backend = "cpu";
    state.cache = await modelCache();
    const saved = await restoreLast();
    await listFolders();
    renderImportLimits(await call("importLimits"));
    state.learningRates = await call("learningRates", {
      optims: [...$("optim").options].map((o) => o.value),
    });
    // A lesson link's setup, applied as if the user had set it (only settings, never data).
    if (applyLink()) await act.applySettings();
    // Without saved state any notice about why (a changed or unreadable policy) stays up.
    if (saved || state.replayed) {
      const { model, picks, info, replayed } = state;
      notice(
        `Restored from this browser: ${model.builtIn ? "" : `${model.label}, `}` +
          `${plural(picks.length, "pair")} and the policy after ${plural(info.steps, "update")}` +
          (replayed
            ? `; ${replayed} of them saved but not yet learnt when the page closed, learnt now.`
            : "."),
        "info",
      );
    }
    const dropped = droppedSettings();
    if (dropped.length)
      notice(`Not used, and forgotten: ${dropped.join("; ")}. The defaults apply.`, "error");
    status(
      state.trainer
        ? "Ready. Pick a preset or write a prompt, then Generate (G)."
        : "Another tab is training; this one shows its pairs as they come.",
    );
    state.busy = false;
    render();
    $("generate").focus();
    // Kept when the browser is short of space (eviction would take every pick).
    const persisted = await navigator.storage?.persist?.().catch(() => false);
    renderStorage(persisted);
    begin();
  } catch (e) {
    console.error(e);
    status("Could not start.");
    notice(`Could not start: ${e.message}`, "error");
  }
}

main();
