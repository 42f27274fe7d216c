// Which controls can be used now: none while work runs; picking only once both responses are
// written; undo only while the worker holds history.
import { $ } from "./dom.js";
import { renderCounts } from "./data.js";

export function renderControls(state, learnt) {
  const { busy, info, current, canUndo, picks } = state;
  const ready = !busy && !!info;
  for (const id of ["generate", "compare", "export", "download", "reset"]) $(id).disabled = !ready;
  for (const id of ["import", "load", "folder", "builtin"]) $(id).disabled = !ready;
  $("download-adapter").hidden = !info?.lora;
  $("download-adapter").disabled = !ready;
  $("pick-a").disabled = $("pick-b").disabled = $("skip").disabled = !ready || !current?.done;
  $("undo").disabled = !ready || !canUndo;
  $("train-all").disabled = !ready || picks.length === 0;
  renderCounts(state, learnt);
}
