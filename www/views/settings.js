// The settings form: the update's settings (kept by the worker's session, remembered in
// localStorage) and the sampling settings (the page's own).
import { $ } from "./dom.js";

const SAMPLING_DEFAULTS = { temperature: 1.0, max_new_tokens: 160 };
const TRAIN_KEY = "webdpo.train";
const SAMPLING_KEY = "webdpo.sampling";

const storedSampling = () =>
  JSON.parse(localStorage.getItem(SAMPLING_KEY) ?? "null") ?? SAMPLING_DEFAULTS;

/** The training settings the user chose before (in today's terms), or null. */
export function storedTrainConfig() {
  try {
    const stored = JSON.parse(localStorage.getItem(TRAIN_KEY) ?? "null");
    return stored && migrateTrainConfig(stored);
  } catch {
    return null;
  }
}
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

/** The objective menu's value for `trainConfig`: "trainer:loss" ("" for a DPO loss list, which
 *  the menu, offering one loss at a time, cannot show). */
function objectiveOf({ trainer, dpo, cpo, kto }) {
  if (trainer === "dpo") return dpo.loss_type.length === 1 ? `dpo:${dpo.loss_type[0]}` : "";
  return { cpo: `cpo:${cpo.loss_type}`, orpo: "orpo:", kto: `kto:${kto.loss_type}` }[trainer];
}

/** RPO as TRL 1.16 spells it: the `sft` loss, weighted α, after the DPO loss. */
const withoutSft = (dpo) => {
  const at = dpo.loss_type.indexOf("sft");
  if (at <= 0) return { losses: dpo.loss_type, rpo: 0 };
  return {
    losses: dpo.loss_type.filter((_, i) => i !== at),
    rpo: dpo.loss_weights?.[at] ?? 1,
  };
};

/** Shows the session's training settings (`trainConfig`) and the stored sampling settings. */
export function renderSettings(trainConfig) {
  const s = storedSampling();
  const { trainer } = trainConfig;
  const { losses, rpo } = withoutSft(trainConfig.dpo);
  $("beta").value = trainConfig[trainer].beta;
  $("lr").value = trainConfig.learning_rate;
  $("steps").value = trainConfig.steps_per_pair;
  $("objective").value = objectiveOf({
    ...trainConfig,
    dpo: { ...trainConfig.dpo, loss_type: losses },
  });
  $("objective-about").textContent = $("objective").selectedOptions[0]?.title ?? "";
  $("optim").value = trainConfig.optim;
  $("rpo").value = rpo;
  $("rpo").disabled = trainer !== "dpo";
  $("rating-batch").value = trainConfig.rating_batch;
  $("temperature").value = s.temperature;
  $("max-tokens").value = s.max_new_tokens;
}

/** What the form asks for: the training settings over `trainConfig`, and the sampling settings.
 *  Throws (with a message for the user) on what the page checks itself; the core checks the rest. */
export function readSettings(trainConfig) {
  const num = (id) => Number($(id).value);
  const [trainer, loss] = $("objective").value.split(":");
  const beta = num("beta");
  const rpo = trainer === "dpo" ? num("rpo") : 0;
  // RPO's NLL term is TRL 1.16's `sft` loss in the list, weighted α.
  const dpoLosses = trainer === "dpo" ? [loss] : withoutSft(trainConfig.dpo).losses;
  const train = {
    ...trainConfig,
    trainer,
    learning_rate: num("lr"),
    steps_per_pair: num("steps"),
    rating_batch: num("rating-batch"),
    optim: $("optim").value,
    rpo_alpha: 0,
    dpo: {
      ...trainConfig.dpo,
      loss_type: rpo > 0 ? [...dpoLosses, "sft"] : dpoLosses,
      loss_weights: rpo > 0 ? [...dpoLosses.map(() => 1), rpo] : null,
    },
    cpo: trainer === "cpo" ? { ...trainConfig.cpo, loss_type: loss } : trainConfig.cpo,
    kto: trainer === "kto" ? { ...trainConfig.kto, loss_type: loss } : trainConfig.kto,
  };
  train[trainer] = { ...train[trainer], beta };
  const sampling = { temperature: num("temperature"), max_new_tokens: num("max-tokens") };
  if (!(Number.isFinite(sampling.temperature) && sampling.temperature >= 0))
    throw new Error("temperature must be a number ≥ 0");
  if (!(Number.isInteger(sampling.max_new_tokens) && sampling.max_new_tokens >= 1))
    throw new Error("max new tokens must be a whole number ≥ 1");
  if (!Number.isInteger(train.steps_per_pair))
    throw new Error("updates per pick must be a whole number ≥ 1");
  if (!Number.isInteger(train.rating_batch))
    throw new Error("ratings per update must be a whole number ≥ 1");
  if (!(rpo >= 0)) throw new Error("RPO α must be a number ≥ 0");
  return { train, sampling };
}

/** Remembers settings the session accepted. */
export function storeSettings({ train, sampling }) {
  const { learning_rate, steps_per_pair, rating_batch, optim, trainer, dpo, cpo, orpo, kto } =
    train;
  localStorage.setItem(
    TRAIN_KEY,
    JSON.stringify({
      learning_rate,
      steps_per_pair,
      rating_batch,
      optim,
      trainer,
      dpo,
      cpo,
      orpo,
      kto,
    }),
  );
  localStorage.setItem(SAMPLING_KEY, JSON.stringify(sampling));
}

/** Settings saved by an older version, in today's terms: its RPO α (`rpo_alpha`, gone from TRL)
 *  becomes the `sft` loss weighted α in the loss list. */
function migrateTrainConfig(stored) {
  const { rpo_alpha, ...rest } = stored;
  if (!(rpo_alpha > 0) || !rest.dpo || rest.dpo.loss_type.includes("sft")) return rest;
  const losses = rest.dpo.loss_type;
  return {
    ...rest,
    dpo: {
      ...rest.dpo,
      loss_type: [...losses, "sft"],
      loss_weights: [...(rest.dpo.loss_weights ?? losses.map(() => 1)), rpo_alpha],
    },
  };
}

export const settingsError = (text) => ($("settings-error").textContent = text);
