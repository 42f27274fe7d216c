// The settings form: the update's settings (kept by the worker's session, remembered in
// localStorage) and the sampling settings (the page's own).
import { $ } from "./dom.js";

const SAMPLING_DEFAULTS = { temperature: 1.0, max_new_tokens: 160 };
const TRAIN_KEY = "webdpo.train";
const SAMPLING_KEY = "webdpo.sampling";

const storedSampling = () =>
  JSON.parse(localStorage.getItem(SAMPLING_KEY) ?? "null") ?? SAMPLING_DEFAULTS;

/** The training settings the user chose before, or null. */
export const storedTrainConfig = () => JSON.parse(localStorage.getItem(TRAIN_KEY) ?? "null");
export const forgetTrainConfig = () => localStorage.removeItem(TRAIN_KEY);

/** The sampling settings of one generation, with a fresh seed. */
export function sampling() {
  const s = storedSampling();
  return {
    temperature: s.temperature,
    top_k: 0,
    top_p: 1.0,
    max_new_tokens: s.max_new_tokens,
    seed: crypto.getRandomValues(new Uint32Array(1))[0],
  };
}

/** Shows the session's training settings (`trainConfig`) and the stored sampling settings. */
export function renderSettings(trainConfig) {
  const s = storedSampling();
  $("beta").value = trainConfig.dpo.beta;
  $("lr").value = trainConfig.learning_rate;
  $("steps").value = trainConfig.steps_per_pair;
  // The menu offers one loss at a time; a list (from the CLI's settings) shows as none selected.
  const losses = trainConfig.dpo.loss_type;
  $("loss").value = losses.length === 1 ? losses[0] : "";
  $("optim").value = trainConfig.optim;
  $("rpo").value = trainConfig.rpo_alpha;
  $("temperature").value = s.temperature;
  $("max-tokens").value = s.max_new_tokens;
}

/** What the form asks for: the training settings over `trainConfig`, and the sampling settings.
 *  Throws (with a message for the user) on what the page checks itself; the core checks the rest. */
export function readSettings(trainConfig) {
  const num = (id) => Number($(id).value);
  const train = {
    ...trainConfig,
    learning_rate: num("lr"),
    steps_per_pair: num("steps"),
    optim: $("optim").value,
    rpo_alpha: num("rpo"),
    dpo: { ...trainConfig.dpo, beta: num("beta"), loss_type: [$("loss").value] },
  };
  const sampling = { temperature: num("temperature"), max_new_tokens: num("max-tokens") };
  if (!(Number.isFinite(sampling.temperature) && sampling.temperature >= 0))
    throw new Error("temperature must be a number ≥ 0");
  if (!(Number.isInteger(sampling.max_new_tokens) && sampling.max_new_tokens >= 1))
    throw new Error("max new tokens must be a whole number ≥ 1");
  if (!Number.isInteger(train.steps_per_pair))
    throw new Error("updates per pick must be a whole number ≥ 1");
  return { train, sampling };
}

/** Remembers settings the session accepted. */
export function storeSettings({ train, sampling }) {
  const { learning_rate, steps_per_pair, optim, rpo_alpha, dpo } = train;
  localStorage.setItem(
    TRAIN_KEY,
    JSON.stringify({ learning_rate, steps_per_pair, optim, rpo_alpha, dpo }),
  );
  localStorage.setItem(SAMPLING_KEY, JSON.stringify(sampling));
}

export const settingsError = (text) => ($("settings-error").textContent = text);
