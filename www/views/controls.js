// Which controls can be used now: none while work runs; in a tab that watches another tab's
// training (tabs.js), only the exports; picking (or rating) only once the responses are written;
// undo only while the worker or the store holds the state before the last update. A rating objective (KTO) shows one response with
// 👍/👎 in place of the pair.
import { $ } from "./dom.js";
import { renderCounts } from "./data.js";

export function renderControls(state, learnt, rating) {
  const { busy, info, current, canUndo, storedUndo, picks, ratings, trainer } = state;
  const readable = !busy && !!info;
  const ready = readable && trainer;
  $("export").disabled = !readable;
  for (const id of ["generate", "compare", "download", "reset"]) $(id).disabled = !ready;
  for (const id of ["import", "load", "folder", "gguf", "builtin", "device-select", "time-again"])
    $(id).disabled = !ready;
  for (const b of $("folders").querySelectorAll("button"))
    b.disabled = !ready || b.dataset.inUse === "1";
  $("settings").inert = !trainer;
  $("tabs").hidden = trainer;
  $("tabs-text").textContent =
    "Another tab of webdpo on this site is training: this tab shows its pairs as they come " +
    "and trains only after that tab closes, or when you take over.";
  $("download-adapter").hidden = !info?.lora;
  $("download-adapter").disabled = !ready;
  const answerable = ready && !!current?.done;
  $("card-b").hidden = $("pick-a").hidden = rating;
  $("rate-row").hidden = $("rate-note").hidden = !rating;
  $("pick-a").disabled = $("pick-b").disabled = !answerable || rating;
  $("rate-up").disabled = $("rate-down").disabled = !answerable || !rating;
  $("skip").disabled = !answerable;
  $("generate").lastChild.textContent = rating ? " Generate one" : " Generate two";
  if (rating) {
    const { kto, rating_batch } = info.trainConfig;
    $("rate-note").textContent =
      `Each rating trains with up to ${rating_batch - 1} earlier ones as one batch` +
      (kto.loss_type === "kto"
        ? "; KTO's reference point z₀ is the batch's mean log π/π_ref of each prompt with " +
          "another rating's response, so a first rating waits for a second."
        : ".");
  }
  $("undo").disabled = !ready || !(canUndo || storedUndo);
  $("export-ratings").disabled = !readable || ratings.length === 0;
  $("train-all").disabled = !ready || (rating ? ratings : picks).length === 0;
  renderCounts(state, learnt);
}
