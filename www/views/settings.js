// The settings form: the update's settings (kept by the worker's session, remembered in
// localStorage) and the sampling settings (the page's own).
import { $ } from "./dom.js";

// `meter`: stories per behaviour measurement; null (the field left empty) for METER_AUTO.
// `pairs`: how a pair's two responses are drawn (the core's PairStyle).
const SAMPLING_DEFAULTS = {
  temperature: 1.0,
  max_new_tokens: 160,
  meter: null,
  pairs: "independent",
};
// Sized to take about a second on the CPU fallback; off on a GPU emulated on the CPU, where one
// prompt's stories take over a minute.
const METER_AUTO = { stories: 16, emulated: 0 };
const TRAIN_KEY = "webdpo.train";
const SAMPLING_KEY = "webdpo.sampling";

// What each sampling setting may be, and what to say when it is not.
const SAMPLING_CHECKS = {
  temperature: [
    (v) => Number.isFinite(v) && v >= 0 && v <= 10,
    "temperature must be a number from 0 to 10",
  ],
  max_new_tokens: [
    (v) => Number.isInteger(v) && v >= 1 && v <= 4096,
    "max new tokens must be a whole number from 1 to 4096",
  ],
  meter: [
    (v) => v === null || (Number.isInteger(v) && v >= 0 && v <= 256),
    "stories per behaviour measurement must be empty or a whole number from 0 to 256",
  ],
  pairs: [(v) => ["independent", "branched"].includes(v), "pairs must be independent or branched"],
};

/** Why `sampling` cannot be used (the first setting out of range), or null. */
const samplingProblem = (sampling) =>
  Object.entries(SAMPLING_CHECKS).find(([key, [ok]]) => !ok(sampling[key]))?.[1][1] ?? null;

// Saved settings that could not be used, dropped at start-up: the page says so once.
const dropped = [];

/** Takes the saved settings `key` as `read` makes them, or drops them (with a reason in
 *  `dropped`) when they do not parse or `read` refuses them. */
function saved(key, what, read) {
  const text = localStorage.getItem(key);
  if (text === null) return null;
  try {
    return read(JSON.parse(text));
  } catch (e) {
    localStorage.removeItem(key);
    dropped.push(`the saved ${what} (${e.message})`);
    return null;
  }
}

/** The saved sampling settings over the defaults. */
const storedSampling = () => ({
  ...SAMPLING_DEFAULTS,
  ...saved(SAMPLING_KEY, "sampling settings", (stored) => {
    const s = { ...SAMPLING_DEFAULTS, ...stored };
    const problem = samplingProblem(s);
    if (problem) throw new Error(problem);
    return s;
  }),
});

/** Why saved settings were dropped (each once), for a notice at start-up. */
export const droppedSettings = () => dropped.splice(0);

/** The training settings the user chose before (in today's terms), or null. */
export const storedTrainConfig = () =>
  saved(TRAIN_KEY, "training settings", (stored) => {
    if (typeof stored !== "object" || !stored || Array.isArray(stored))
      throw new Error("not a set of settings");
    return migrateTrainConfig(stored);
  });
/** Forgets the saved training settings, which the session refused (`why`). */
export function forgetTrainConfig(why) {
  localStorage.removeItem(TRAIN_KEY);
  dropped.push(`the saved training settings (${why})`);
}

// `?seed=` (a lesson link) makes the page's samples reproducible: its n-th generation uses
// seed + n; without it every generation draws a fresh seed.
const linkSeed = new URLSearchParams(location.search).get("seed");
let generations = 0;

/** The sampling settings of one generation, with its seed. */
export function sampling() {
  const s = storedSampling();
  const seed =
    linkSeed !== null && Number.isInteger(Number(linkSeed))
      ? (Number(linkSeed) + generations++) >>> 0
      : crypto.getRandomValues(new Uint32Array(1))[0];
  return {
    temperature: s.temperature,
    top_k: 0,
    top_p: 1.0,
    max_new_tokens: s.max_new_tokens,
    seed,
  };
}

/** How the two responses of a pair are drawn: "independent" or "branched". */
export const pairStyle = () => storedSampling().pairs;

/** The behaviour meter's settings on a device (`emulated`: a GPU emulated on the CPU): stories
 *  per measurement (0: off; `auto` when the user left it to the page), sampled as the pairs are
 *  but with a fixed seed, so that measurements differ by the policy alone. */
export function meterSettings(emulated) {
  const s = storedSampling();
  const sampling = { temperature: s.temperature, top_k: 0, top_p: 1.0, seed: 0 };
  const auto = s.meter === null;
  const n = auto ? (emulated ? METER_AUTO.emulated : METER_AUTO.stories) : s.meter;
  return { n, auto, sampling: { ...sampling, max_new_tokens: s.max_new_tokens } };
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
  const { dpo, cpo, kto } = trainConfig;
  $("eps").value = trainer === "cpo" ? cpo.label_smoothing : dpo.label_smoothing;
  $("tau").value = dpo.discopop_tau;
  $("gamma").value = cpo.simpo_gamma;
  $("cpo-alpha").value = cpo.cpo_alpha;
  $("w-good").value = kto.desirable_weight;
  $("w-bad").value = kto.undesirable_weight;
  $("rating-batch").value = trainConfig.rating_batch;
  showKnobs($("objective").value);
  $("temperature").value = s.temperature;
  $("max-tokens").value = s.max_new_tokens;
  $("meter-n").value = s.meter ?? "";
  $("pairs").value = s.pairs;
}

/** Whether the knob `id` is read by the objective `chosen` ("trainer:loss"). */
const knobOf = (id, chosen) =>
  $(id)
    .dataset.for.split(" ")
    .some((f) => f === chosen || f === chosen.split(":")[0]);

/** Shows the knobs the objective `chosen` reads, hides the others. */
export function showKnobs(chosen) {
  for (const e of document.querySelectorAll("#settings input[data-for]")) {
    e.hidden = !knobOf(e.id, chosen);
    document.querySelector(`label[for="${e.id}"]`).hidden = e.hidden;
  }
}

/** What the form asks for: the training settings over `trainConfig`, and the sampling settings.
 *  Throws (with a message for the user) on what the page checks itself; the core checks the rest. */
export function readSettings(trainConfig) {
  // An emptied field is refused, not read as 0 (nor anything else as NaN).
  const num = (id) => {
    const text = $(id).value.trim();
    const label = document.querySelector(`label[for="${id}"]`).textContent;
    if (text === "") throw new Error(`${label} is empty`);
    if (!Number.isFinite(Number(text))) throw new Error(`${label} must be a number`);
    return Number(text);
  };
  const chosen = $("objective").value;
  const [trainer, loss] = chosen.split(":");
  // EXO is undefined at ε = 0 (TRL refuses it); the EXO paper recommends 1e-3.
  if (chosen === "dpo:exo_pair" && num("eps") === 0) $("eps").value = 0.001;
  const eps = knobOf("eps", chosen) ? num("eps") : 0;
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
    dpo: {
      ...trainConfig.dpo,
      loss_type: rpo > 0 ? [...dpoLosses, "sft"] : dpoLosses,
      loss_weights: rpo > 0 ? [...dpoLosses.map(() => 1), rpo] : null,
    },
    cpo:
      trainer === "cpo"
        ? {
            ...trainConfig.cpo,
            loss_type: loss,
            label_smoothing: eps,
            simpo_gamma: num("gamma"),
            cpo_alpha: num("cpo-alpha"),
          }
        : trainConfig.cpo,
    kto:
      trainer === "kto"
        ? {
            ...trainConfig.kto,
            loss_type: loss,
            desirable_weight: num("w-good"),
            undesirable_weight: num("w-bad"),
          }
        : trainConfig.kto,
  };
  if (trainer === "dpo") {
    // ε and τ are read by some DPO losses only; with the others ε is 0, as TRL's default.
    train.dpo.label_smoothing = eps;
    if (knobOf("tau", chosen)) train.dpo.discopop_tau = num("tau");
  }
  train[trainer] = { ...train[trainer], beta };
  const sampling = {
    temperature: num("temperature"),
    max_new_tokens: num("max-tokens"),
    meter: $("meter-n").value.trim() === "" ? null : num("meter-n"),
    pairs: $("pairs").value,
  };
  const problem = samplingProblem(sampling);
  if (problem) throw new Error(problem);
  if (!Number.isInteger(train.steps_per_pair))
    throw new Error("updates per pick must be a whole number ≥ 1");
  if (!Number.isInteger(train.rating_batch))
    throw new Error("ratings per update must be a whole number ≥ 1");
  if (!(rpo >= 0)) throw new Error("RPO α must be a number ≥ 0");
  return { train, sampling };
}

/** Remembers the sampling settings (the page's own: the next generation uses them). */
export const storeSampling = (sampling) =>
  localStorage.setItem(SAMPLING_KEY, JSON.stringify(sampling));

/** Remembers training settings the session accepted, and the sampling settings. */
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
  storeSampling(sampling);
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
