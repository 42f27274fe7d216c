// The pair: two responses streamed side by side for a pick (one, for a rating), and the
// policy/reference comparison.
import { $, el } from "./dom.js";

/** Shows `text`, its first `shared` characters marked as the part both responses share. */
function show(id, text, shared) {
  const common = shared && text.startsWith(shared) ? shared : "";
  $(id).replaceChildren(
    ...(common ? [el("span", { class: "shared", title: "the same in both" }, common)] : []),
    text.slice(common.length),
  );
}

/** Shows the two responses (while they stream, and when done); `shared`: the text a branched
 *  pair's responses start with, shown muted so that the difference stands out. */
export function renderPair(texts, shared = "") {
  $("compare-view").hidden = true;
  show("text-a", texts[0], shared);
  show("text-b", texts[1] ?? "", shared);
}

/** Shows one side of the comparison: `reference` false for the policy's sample. */
export function renderComparison(reference, text) {
  $("compare-view").hidden = false;
  $(reference ? "text-reference" : "text-policy").textContent = text;
}

/** The prompt as typed (trimmed). */
export const promptText = () => $("prompt").value.trim();
