// A lesson as one link: the setup in the URL (objective, β, learning rate, temperature, pair
// style, seed, prompt, which panels are hidden, guided mode) is applied after the model loads, on every load,
// so a reload reproduces it. Only settings come from a link; the stored pairs and ratings are
// never touched by it. "Copy lesson link" writes the current setup back into one.
import { state } from "./state.js";
import { $ } from "./views/dom.js";

/** The panels `?hide=` can hide, by name. */
const PANELS = {
  controls: "controls",
  charts: "charts",
  teach: "teach",
  behaviour: "behaviour",
  presets: "presets",
};

/** The form inputs a link sets, by parameter. */
const FIELDS = {
  objective: "objective",
  beta: "beta",
  lr: "lr",
  temperature: "temperature",
  tokens: "max-tokens",
  pairs: "pairs",
};

/** Puts the link's setup on the page: the form's fields (applied by the caller, as if the user
 *  had set them), the prompt, the hidden panels and guided mode. Returns whether it set fields. */
export function applyLink() {
  const { params } = state;
  let changed = false;
  for (const [name, id] of Object.entries(FIELDS)) {
    const value = params.get(name);
    if (value === null) continue;
    $(id).value = value;
    changed = true;
  }
  if (params.has("prompt")) $("prompt").value = params.get("prompt");
  for (const name of (params.get("hide") ?? "").split(",").filter(Boolean)) {
    const id = PANELS[name];
    if (id) $(id).hidden = true;
  }
  if (params.has("guided")) $("guided").checked = params.get("guided") !== "0";
  return changed;
}

/** The link of the current setup. */
export function lessonLink() {
  const url = new URL(location.href);
  url.search = "";
  const set = (name, value) => url.searchParams.set(name, value);
  for (const [name, id] of Object.entries(FIELDS)) set(name, $(id).value);
  set("prompt", $("prompt").value);
  // A seed, so that everyone who opens the link is shown the same responses.
  set("seed", state.params.get("seed") ?? String(crypto.getRandomValues(new Uint32Array(1))[0]));
  const hidden = Object.entries(PANELS).filter(([, id]) => $(id).hidden);
  if (hidden.length) set("hide", hidden.map(([name]) => name).join(","));
  if ($("guided").checked) set("guided", "1");
  return url.toString();
}
