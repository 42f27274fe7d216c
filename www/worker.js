// The model lives here, off the page's thread: generation and updates never freeze the UI.
// Protocol: {id, op, args} in; {id, progress} while working; {id, ok, value | error} when done;
// and, unasked, {behaviour} while the behaviour meter measures in the background.
import init, {
  checkMemory,
  defaultLearningRate,
  importLimits,
  PreferenceImport,
  selectModelFiles,
  setReadbackTimeout,
  storyPrompt,
} from "./pkg/webdpo.js";
import { buildFor } from "./builds.js";
import { toMessage } from "./errors.js";

let session = null;
// The built-in story model takes prompts in the story world's format; a folder's model takes the
// text as it is (its chat template, if any, formats it in the core).
let storyModel = false;
// `?simulate-gpu-failure` on the page: the first update on the GPU fails as a lost device would,
// to show (and test) the fallback to the CPU.
let simulateGpuFailure = false;
// `?hold-updates`: every update waits forever, as if the page closed during it (to test the
// journal's recovery at the next start).
let holdUpdates = false;
const held = () => holdUpdates && new Promise(() => {});
// Set by a `cancel` message, which is answered at once (outside the queue): a pass over stored
// pairs or ratings stops after the one under way.
let cancelled = false;
// The undo history, owned here alone: a snapshot taken before each pick's update with the id of
// the pick, newest last. Undo restores the exact previous state and says which pick it undid.
const undoStack = [];
const UNDO_DEPTH = 10;
const clearUndo = () => undoStack.splice(0).forEach(({ snapshot }) => snapshot.free());
const canUndo = () => undoStack.length > 0;

// One operation on the models at a time, in the order asked: each waits for the one before (and
// for at most one step of the behaviour meter's).
let queue = Promise.resolve();
let waiting = 0;
function exclusive(body) {
  waiting++;
  const run = queue.then(() => (waiting--, body()));
  queue = run.catch(() => {});
  return run;
}

// The behaviour meter (built-in model): after each change of the policy, `n` fresh stories for
// preset prompts are sampled and judged by the oracle, one token at a time between the page's
// operations, so the next pick waits for at most one token (or one prompt's judging). A newer
// change abandons a measurement under way. The reference is measured once per load and setting.
// `generation` counts loads and settings: a reference measured under older ones is abandoned.
const meter = { n: 0, sampling: null, version: 0, generation: 0, reference: null };
// The seed of the preset prompts: the same prompts measure every policy.
const METER_PROMPTS = 2024;
const nextTask = () => new Promise((resolve) => setTimeout(resolve));

/** Measures the policy (or the reference) while `current()`, posting `{behaviour}` as it goes;
 *  `pick` names the pick the policy learnt last. Returns whether it finished. */
async function measure(reference, pick, current) {
  const measurement = session.startMeasurement(meter.n, METER_PROMPTS, meter.sampling, reference);
  const tag = { reference, pick, steps: session.steps, total: measurement.total };
  try {
    self.postMessage({ behaviour: { ...tag, measured: 0, done: false } });
    for (;;) {
      // The page's operations first: messages are read between tasks.
      await nextTask();
      while (waiting > 0) await queue.then(nextTask);
      if (!current()) return false;
      const before = measurement.measured;
      const more = await exclusive(() => measurement.next());
      // A step is one token: the page hears of a prompt's stories once they are judged.
      if (more && measurement.measured === before) continue;
      const behaviour = measurement.behaviour();
      const done = !more;
      self.postMessage({ behaviour: { ...tag, measured: measurement.measured, done, behaviour } });
      if (done) return true;
    }
  } catch (e) {
    self.postMessage({ behaviour: { ...tag, error: toMessage(e).error } });
    return false;
  } finally {
    measurement.free();
  }
}

/** A fresh measurement of the policy as it is now, after the reference's (once). */
async function remeasure(pick = null) {
  const version = ++meter.version;
  if (!storyModel || meter.n === 0) return;
  const generation = meter.generation;
  if (!meter.reference) {
    // Kept once finished; a run that stopped is forgotten, unless a newer one replaced it.
    const run = measure(true, null, () => generation === meter.generation).then((done) => {
      if (!done && meter.reference === run) meter.reference = null;
    });
    meter.reference = run;
  }
  await meter.reference;
  if (version !== meter.version) return;
  // With no update the policy is the reference: nothing else to measure.
  if (session.steps === 0)
    self.postMessage({ behaviour: { reference: false, pick, steps: 0, done: true } });
  else await measure(false, pick, () => version === meter.version);
}

/** Token scores of a pair's two responses, or of a rating's one (as `chosen`). */
async function scores({ prompt, chosen, rejected, completion }) {
  if (completion !== undefined) return { chosen: await session.tokenScores(prompt, completion) };
  return {
    chosen: await session.tokenScores(prompt, chosen),
    rejected: await session.tokenScores(prompt, rejected),
  };
}

/** Keeps `before` to undo an update that applied (`pick` names what it learnt from). */
function keepUndo(before, applied, pick) {
  if (!applied) return before.free();
  undoStack.push({ snapshot: before, pick });
  if (undoStack.length > UNDO_DEPTH) undoStack.shift().snapshot.free();
}

/** `?simulate-gpu-failure`: the first update on the GPU fails as a lost device would. */
function simulatedFailure() {
  if (simulateGpuFailure && session.isGpu)
    // Worded unlike any real message: the page must recognise it by its kind alone.
    throw Object.assign(
      new Error("the adapter stopped answering (simulated with ?simulate-gpu-failure)"),
      { kind: "device" },
    );
}

/** Weights and optimizer state, to be written to IndexedDB by the page. */
async function trainingState() {
  const started = performance.now();
  const s = await session.saveState();
  checkpoints.seconds = (performance.now() - started) / 1000;
  checkpoints.last = Date.now();
  checkpoints.deferred = 0;
  return { weights: s.weights, optimizer: s.optimizer, steps: session.steps };
}

// A pick's update is checkpointed at once while saving is cheap. When it is not (a large model
// trained in full: the state is the weights and the optimizer's moments), at most every
// CHECKPOINT_SECONDS or CHECKPOINT_UPDATES picks: the picks between stay pending in the journal
// and are applied again after a crash. `?checkpoint-every=n` sets n picks whatever the cost (to
// test it).
const CHECKPOINT_SECONDS = 60;
const CHECKPOINT_UPDATES = 10;
const CHEAP_SAVE_SECONDS = 0.5;
const checkpoints = { seconds: 0, last: 0, deferred: 0, every: 0 };

/** The state to save after a pick's update, or null when its checkpoint is deferred. */
function checkpointDue() {
  const { seconds, last, deferred, every } = checkpoints;
  if (every) return deferred + 1 >= every;
  return (
    seconds < CHEAP_SAVE_SECONDS ||
    Date.now() - last >= CHECKPOINT_SECONDS * 1000 ||
    deferred + 1 >= CHECKPOINT_UPDATES
  );
}

/** What a pick's or rating's update returns for the page to commit: the state (`saved`), or
 *  `deferred` when its checkpoint waits; `applied` false when every step was skipped. */
async function afterUpdate(applied) {
  if (!applied) return { applied, saved: null, deferred: false, steps: session.steps };
  if (checkpointDue()) return { applied, saved: await trainingState(), deferred: false };
  checkpoints.deferred++;
  return { applied, saved: null, deferred: true, steps: session.steps };
}

// The device timing's workload: short enough to take seconds on an emulated GPU, long enough to
// include a whole update (both forwards, backward, optimizer) and a step of the KV cache.
const DEVICE_TIMING = {
  warmup: 1,
  runs: 1,
  prompt_tokens: 8,
  completion_tokens: 16,
  new_tokens: 4,
  recompute_runs: 0,
  seed: 0,
};

/** A session of the built-in model ({config, tokenizer, weights}) or of a user's folder
 *  ({files, lora, budget}) on `backend`: on the CPU, in the threaded build where the page can
 *  run it (builds.js). */
async function openSession({ config, tokenizer, weights, files, lora, budget, backend }) {
  const { Session } = await buildFor(backend);
  return files
    ? Session.fromFiles(files, { backend, lora, budget })
    : Session.create(config, tokenizer, weights, backend);
}

const ops = {
  /** The built-in model ({config, tokenizer, weights}) or a user's folder ({files, lora, budget});
   *  the session in use is replaced only once the new one has loaded. The user's saved training
   *  settings (`trainConfig`) apply before the saved state, whose optimizer state is that of
   *  their optimizer; it reports settings it refused, and an optimizer state it could not use
   *  (the weights are then restored with a fresh optimizer). */
  async load(args) {
    const { files, saved, trainConfig } = args;
    simulateGpuFailure = !!args.simulateFailure;
    holdUpdates = !!args.holdUpdates;
    checkpoints.every = args.checkpointEvery ?? 0;
    await init();
    // `?readback-timeout=ms` on the page: a GPU read waits at most that long (to test a hang).
    if (args.readbackTimeout) setReadbackTimeout(args.readbackTimeout);
    const next = await openSession(args);
    let refusedSettings = null;
    let freshOptimizer = null;
    try {
      if (trainConfig) {
        try {
          next.setTrainConfig({ ...next.trainConfig(), ...trainConfig });
        } catch (e) {
          refusedSettings = toMessage(e).error;
        }
      }
      if (saved) {
        try {
          next.loadState(saved.weights, saved.optimizer ?? undefined);
        } catch (e) {
          if (!saved.optimizer) throw e;
          next.loadState(saved.weights, undefined);
          freshOptimizer = toMessage(e).error;
        }
      }
    } catch (e) {
      next.free();
      throw e;
    }
    session?.free();
    session = next;
    storyModel = !files;
    meter.generation++;
    meter.reference = null;
    clearUndo();
    return {
      device: session.device,
      isGpu: session.isGpu,
      emulatedGpu: session.isEmulatedGpu,
      threads: session.threads ?? null,
      parameterCount: session.parameterCount,
      steps: session.steps,
      trainConfig: session.trainConfig(),
      memory: session.memory,
      lora: session.lora ?? null,
      chat: session.hasChatTemplate,
      canUndo: canUndo(),
      refusedSettings,
      freshOptimizer,
    };
  },

  /** Times the model of `load`'s arguments on `backend` (a copy, freed after; the session in
   *  use is untouched): one small update after a warm-up one, and one sampled token with the KV
   *  cache, as the app uses them. What the page chooses the device by. */
  async timeDevice(args) {
    await init();
    if (args.readbackTimeout) setReadbackTimeout(args.readbackTimeout);
    const timed = await openSession(args);
    try {
      const report = await timed.benchmark(DEVICE_TIMING);
      return {
        device: timed.device,
        isGpu: timed.isGpu,
        threads: timed.threads ?? null,
        updateMs: report.update.total_ms.median,
        tokenMs: report.generation.kv_cache_ms_per_token.median,
      };
    } finally {
      timed.free();
    }
  },

  /** The memory check of `load`, from config.json alone (before the page reads the weights). */
  async checkMemory({ config, backend, lora, budget }) {
    await init();
    return checkMemory(config, { backend, lora, budget });
  },

  /** The LoRA adapter in PEFT's format. */
  async adapter() {
    return session.adapter();
  },

  /** The behaviour meter's settings: `n` stories per measurement (0: off), sampled so. */
  setMeter({ n, sampling }) {
    meter.n = n;
    meter.sampling = sampling;
    meter.generation++;
    meter.reference = null;
  },

  setTrainConfig(config) {
    session.setTrainConfig(config);
    return session.trainConfig();
  },

  /** `n` responses to `text` (a pair drawn as `pairs` says), streamed through `progress`;
   *  returns them with the prompt as the model saw it (what a pick stores) and, for a branched
   *  pair, the text both start with. */
  async generate({ text, n, sampling, reference, pairs }, progress) {
    const prompt = storyModel ? storyPrompt(text) : text;
    const generation = session.startGeneration(prompt, n, sampling, reference, pairs);
    let texts = Array(n).fill("");
    try {
      for (let next; (next = await generation.next()) !== undefined;) {
        texts = next;
        progress(texts);
      }
      return { prompt, texts, shared: generation.shared };
    } finally {
      generation.free();
    }
  },

  /** The update of pick `pick`: its step reports, its tokens' scores after it, and the state to
   *  save (null when every step was skipped, and then nothing to undo either). */
  async prefer({ prompt, chosen, rejected, pick }) {
    await held();
    simulatedFailure();
    // Both responses were sampled from the policy as it is now, before the update.
    const kl = await session.sequenceKl(prompt, [chosen, rejected]);
    const before = session.snapshot();
    const reports = await session.prefer({ prompt, chosen, rejected });
    const applied = reports.some((r) => !r.skipped);
    keepUndo(before, applied, pick);
    return {
      reports,
      kl,
      scores: await scores({ prompt, chosen, rejected }),
      ...(await afterUpdate(applied)),
      canUndo: canUndo(),
    };
  },

  /** The update of rating `pick` (KTO), as `prefer`; no reports when it waits for a batch. */
  async rate({ prompt, completion, label, pick }) {
    await held();
    simulatedFailure();
    const before = session.snapshot();
    const reports = await session.rate({ prompt, completion, label });
    const applied = reports.some((r) => !r.skipped);
    keepUndo(before, applied, pick);
    return {
      reports,
      scores: await scores({ prompt, completion }),
      ...(await afterUpdate(applied)),
      canUndo: canUndo(),
    };
  },

  /** Stored ratings, for the next rating's batch. */
  recallRatings({ ratings }) {
    session.recallRatings(ratings);
  },

  /** One pass over `ratings` in batches of `batch` (until cancelled); not undoable rating by
   *  rating. */
  async trainOnRatings({ ratings, batch }, progress) {
    await held();
    cancelled = false;
    const reports = [];
    for (let i = 0; i < ratings.length; i += batch) {
      // A `cancel` message is read between tasks.
      await nextTask();
      if (cancelled) break;
      const r = await session.trainOnRatings(ratings.slice(i, i + batch));
      reports.push(r[r.length - 1]);
      const done = Math.min(i + batch, ratings.length);
      progress({ done, total: ratings.length, metrics: r[r.length - 1].metrics });
    }
    clearUndo();
    return { reports, cancelled, saved: await trainingState(), canUndo: canUndo() };
  },

  /** Restores the state before the last pick's update; says which pick that was. */
  async undo() {
    const last = undoStack.pop();
    if (!last) throw new Error("nothing to undo: the worker holds no state from before an update");
    session.restore(last.snapshot);
    last.snapshot.free();
    return { saved: await trainingState(), canUndo: canUndo(), pick: last.pick };
  },

  /** A stored checkpoint (weights and optimizer state, or `fresh`: the reference with a fresh
   *  optimizer) becomes the state, exactly: undo after a reload. */
  async restore({ weights, optimizer, fresh }) {
    if (fresh) session.reset();
    else session.loadState(weights, optimizer);
    clearUndo();
    return { saved: await trainingState(), canUndo: canUndo() };
  },

  async reset() {
    session.reset();
    clearUndo();
    return { saved: await trainingState(), canUndo: canUndo() };
  },

  /** One pass over `pairs` (until cancelled), `steps_per_pair` updates each; not undoable pick
   *  by pick. */
  async trainOn({ pairs }, progress) {
    await held();
    cancelled = false;
    const reports = [];
    for (const [i, p] of pairs.entries()) {
      await nextTask();
      if (cancelled) break;
      const r = await session.trainOn({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected });
      reports.push(r[r.length - 1]);
      progress({ done: i + 1, total: pairs.length, metrics: r[r.length - 1].metrics });
    }
    clearUndo();
    return { reports, cancelled, saved: await trainingState(), canUndo: canUndo() };
  },

  /** The names among `names` that loading the model folder `folder` reads; a "format" error
   *  when it has no config.json. */
  async modelFiles({ names, folder }) {
    await init();
    return selectModelFiles(names, folder);
  },

  /** What the page needs to know of each optimizer it offers. */
  async learningRates({ optims }) {
    await init();
    return Object.fromEntries(optims.map((optim) => [optim, defaultLearningRate(optim)]));
  },

  /** The caps every import is read under. */
  async importLimits() {
    await init();
    return importLimits();
  },

  /** The pairs or ratings of a TRL JSONL `file` (a File, read here chunk by chunk, with its
   *  bytes as progress): `{kind, rows}`, or null when cancelled. A bad line, bytes that are not
   *  UTF-8 or a file past the core's caps is a "data" error naming the line and byte. */
  async importPreferences({ file }, progress) {
    await init();
    cancelled = false;
    const reader = new PreferenceImport(file.name, file.size);
    const chunks = file.stream().getReader();
    try {
      let read = 0;
      for (let chunk; !(chunk = await chunks.read()).done;) {
        if (cancelled) return null;
        reader.push(chunk.value);
        read += chunk.value.length;
        progress({ read, total: file.size, rows: reader.rows });
      }
      return reader.finish();
    } finally {
      chunks.cancel().catch(() => {});
      reader.free();
    }
  },

  async scores(row) {
    return scores(row);
  },

  async policyWeights() {
    return session.policyWeights();
  },

  /** A model.safetensors from the user: becomes the policy, with a fresh optimizer. */
  async loadWeights({ weights }) {
    session.loadState(weights, undefined);
    clearUndo();
    return { saved: await trainingState(), canUndo: canUndo() };
  },
};

// The operations after which the policy is measured again (when the meter is on).
const CHANGES = [
  "load",
  "setMeter",
  "prefer",
  "rate",
  "undo",
  "restore",
  "reset",
  "trainOn",
  "trainOnRatings",
  "loadWeights",
];

self.onmessage = async ({ data: { id, op, args } }) => {
  if (op === "cancel") {
    cancelled = true;
    return self.postMessage({ id, ok: true, value: null });
  }
  try {
    if (
      ![
        "load",
        "timeDevice",
        "checkMemory",
        "importLimits",
        "importPreferences",
        "modelFiles",
        "learningRates",
      ].includes(op) &&
      !session
    )
      throw new Error("the model is not loaded yet");
    const progress = (progress) => self.postMessage({ id, progress });
    const value = await exclusive(() => ops[op](args ?? {}, progress));
    // A pick's or rating's update that was skipped (or waits for a batch) changed nothing.
    const changed = CHANGES.includes(op) && !(["prefer", "rate"].includes(op) && !value.applied);
    if (changed)
      setTimeout(() =>
        remeasure(args?.pick ?? null).catch((e) =>
          self.postMessage({ behaviour: { error: toMessage(e).error } }),
        ),
      );
    const transfer = value?.saved
      ? [value.saved.weights.buffer, value.saved.optimizer.buffer]
      : value instanceof Uint8Array
        ? [value.buffer]
        : value?.weights instanceof Uint8Array
          ? [value.weights.buffer]
          : [];
    self.postMessage({ id, ok: true, value }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, ...toMessage(e) });
  }
};
