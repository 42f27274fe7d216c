// The data: how many pairs and ratings are stored, exporting them as TRL JSONL, and the files of
// a dropped or picked folder.
import { $, plural } from "./dom.js";

/** The count line ("3 pairs, 2 ratings stored · policy after 2 updates"); its data attributes
 *  are what tests read. */
export function renderCounts({ picks, ratings, info }, learnt) {
  const stored = [
    plural(picks.length, "pair"),
    ...(ratings.length ? [plural(ratings.length, "rating")] : []),
  ];
  $("picks-count").textContent = info
    ? `${stored.join(", ")} stored · policy after ${plural(info.steps, "update")}`
    : "";
  $("picks-count").dataset.pairs = String(picks.length);
  $("picks-count").dataset.ratings = String(ratings.length);
  $("picks-count").dataset.learnt = String(learnt);
}

let persisted = null;

/** Shows how much of this site's storage is used, and whether the browser keeps it
 *  (`kept`, once known: navigator.storage.persist's answer). */
export async function renderStorage(kept = persisted) {
  persisted = kept;
  const estimate = await navigator.storage?.estimate?.().catch(() => null);
  if (!estimate) return;
  const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
  $("storage").textContent =
    `Stored in this browser: ${mb(estimate.usage)} of ${mb(estimate.quota)} available` +
    (persisted
      ? " (kept: the browser will not evict it)."
      : " (the browser may evict it when space runs low; export your pairs to keep them).");
}

/** What one import may hold, as the core caps it (`importLimits()`). */
export function renderImportLimits({ max_bytes, max_rows, max_line_bytes }) {
  const mib = (b) => `${Math.round(b / 2 ** 20)} MiB`;
  $("import-limits").textContent =
    `An import is UTF-8 JSONL of at most ${max_rows.toLocaleString("en")} rows and ` +
    `${mib(max_bytes)} (a line at most ${mib(max_line_bytes)}); a file past one of these, or ` +
    "with a bad line, is refused whole, naming the line and byte.";
}

/** TRL's JSONL: {"prompt","chosen","rejected"} per line. */
export function toJsonl(picks) {
  const lines = picks.map(({ prompt, chosen, rejected }) =>
    JSON.stringify({ prompt, chosen, rejected }),
  );
  return lines.join("\n") + (lines.length ? "\n" : "");
}

/** TRL's unpaired JSONL (KTO's): {"prompt","completion","label"} per line. */
export function ratingsJsonl(ratings) {
  const lines = ratings.map(({ prompt, completion, label }) =>
    JSON.stringify({ prompt, completion, label }),
  );
  return lines.join("\n") + (lines.length ? "\n" : "");
}

/** The files of a picked folder (`<input webkitdirectory>`) with their paths. */
export const pickedFiles = (list) =>
  [...list].map((file) => ({ file, path: file.webkitRelativePath || file.name }));

/** The files of a dropped folder (`webkitGetAsEntry`), or the dropped files themselves. */
export async function droppedFiles(transfer) {
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
