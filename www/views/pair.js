// The pair: two responses streamed side by side for a pick (one, for a rating), and the
// policy/reference comparison.
import { $ } from "./dom.js";

/** Shows the two responses (while they stream, and when done). */
export function renderPair(texts) {
  $("compare-view").hidden = true;
  $("text-a").textContent = texts[0];
  $("text-b").textContent = texts[1] ?? "";
}

/** Shows one side of the comparison: `reference` false for the policy's sample. */
export function renderComparison(reference, text) {
  $("compare-view").hidden = false;
  $(reference ? "text-reference" : "text-policy").textContent = text;
}

/** The prompt as typed (trimmed). */
export const promptText = () => $("prompt").value.trim();
