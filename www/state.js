// The page's state, in one object. Actions (actions.js, models.js) change it; the views render
// from it. The undo history is not here: the worker holds the last states in memory (`canUndo`)
// and the store keeps them across reloads (`storedUndo`).

const params = new URLSearchParams(location.search);

export const state = {
  /** The model in use: the built-in one with { config, tokenizer, weights } as fetched, or a
   *  user's folder { name, label, files: [{name, bytes}], lora }. */
  model: null,
  /** What the worker reports of it: device, isGpu, emulatedGpu, parameterCount, steps,
   *  trainConfig, memory, lora, chat. */
  info: null,
  /** This model's IndexedDB store, and the imported model folders. */
  store: null,
  cache: null,
  /** Every stored pair of this model, oldest first. */
  picks: [],
  /** Every stored rating (👍/👎 of one response: { prompt, completion, label }), oldest first. */
  ratings: [],
  /** The responses awaiting a pick (two) or a rating (one): { prompt, texts, done }. */
  current: null,
  /** The behaviour meter (built-in model): `on`; `why` it is off by itself (the emulated GPU);
   *  the reference's and the policy's last finished measurements (`policy` null while the
   *  policy is the reference); what is being measured. */
  behaviour: { on: false, why: null, reference: null, policy: null, measuring: null, error: null },
  /** Whether this tab trains (holds the trainer's lock, tabs.js) or watches another tab. */
  trainer: true,
  /** How many pending rows the last start-up applied again (journal.js). */
  replayed: 0,
  busy: true,
  canUndo: false,
  /** Whether a stored checkpoint undoes the last update (after a reload: store.js). */
  storedUndo: false,
  /** "auto", "webgpu" or "cpu" (`?backend=`); "cpu" after a GPU failure. */
  backend: params.get("backend") ?? "auto",
  /** A GPU failure remembered from an earlier load on this adapter ({adapter, key, reason,
   *  time}): this page starts on the CPU. */
  gpuFailure: null,
  /** The timings of WebGPU and the CPU on this adapter for the model in use, the faster and the
   *  user's override (models.js `chooseBackend`); null when `?backend=` or a failure decided. */
  deviceChoice: null,
  /** The browser's WebGPU adapter (models.js `adapterKey`): a remembered failure and a device
   *  choice are its own. */
  adapterKey: "",
  /** Each optimizer's usual learning rate, from the core. */
  learningRates: {},
  params,
};

/** The picks that trained the policy, oldest first. */
export const learnt = () => state.picks.filter((p) => p.metrics);

/** Whether the objective learns from ratings of one response (KTO) rather than pairs. */
export const rating = () => state.info?.trainConfig.trainer === "kto";

/** Whether a stored row is a rating (the picks store holds both kinds). */
export const isRating = (row) => "label" in row;

/** A prompt or response as the stored row holds it: for a model with a chat template, TRL's
 *  conversational form (the core formats it with the template, as TRL would), else the text. */
export const turn = (role, text) => (state.info?.chat ? [{ role, content: text }] : text);
