// The model lives here, off the page's thread: generation and DPO updates never freeze the UI.
// Protocol: {id, op, args} in; {id, progress} while working; {id, ok, value | error} when done.
import init, {
  Session,
  checkMemory,
  defaultLearningRate,
  isModelFile,
  parsePairs,
} from "./pkg/webdpo.js";
import { toMessage } from "./errors.js";

let session = null;
// `?simulate-gpu-failure` on the page: the first update on the GPU fails as a lost device would,
// to show (and test) the fallback to the CPU.
let simulateGpuFailure = false;
// Snapshots taken before each update, newest last: undo restores the exact previous state.
const undoStack = [];
const UNDO_DEPTH = 10;
const clearUndo = () => undoStack.splice(0).forEach((s) => s.free());

async function scores(prompt, chosen, rejected) {
  return {
    chosen: await session.tokenScores(prompt, chosen),
    rejected: await session.tokenScores(prompt, rejected),
  };
}

/** Weights and optimizer state, to be written to IndexedDB by the page. */
async function state() {
  const s = await session.saveState();
  return { weights: s.weights, optimizer: s.optimizer, steps: session.steps };
}

const ops = {
  /** The built-in model ({config, tokenizer, weights}) or a user's folder ({files, lora, budget});
   *  the session in use is replaced only once the new one has loaded. */
  async load({ config, tokenizer, weights, files, lora, budget, backend, saved, simulateFailure }) {
    simulateGpuFailure = !!simulateFailure;
    await init();
    const next = files
      ? await Session.fromFiles(files, { backend, lora, budget })
      : await Session.create(config, tokenizer, weights, backend);
    try {
      if (saved) next.loadState(saved.weights, saved.optimizer ?? undefined);
    } catch (e) {
      next.free();
      throw e;
    }
    session?.free();
    session = next;
    clearUndo();
    return {
      device: session.device,
      isGpu: session.isGpu,
      parameterCount: session.parameterCount,
      steps: session.steps,
      trainConfig: session.trainConfig(),
      memory: session.memory,
      lora: session.lora ?? null,
      chat: session.hasChatTemplate,
    };
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

  setTrainConfig(config) {
    session.setTrainConfig(config);
    return session.trainConfig();
  },

  async generate({ prompt, n, sampling, reference }, progress) {
    const generation = session.startGeneration(prompt, n, sampling, reference);
    let texts = Array(n).fill("");
    try {
      for (let next; (next = await generation.next()) !== undefined;) {
        texts = next;
        progress(texts);
      }
    } finally {
      generation.free();
    }
    return texts;
  },

  async prefer({ prompt, chosen, rejected }) {
    if (simulateGpuFailure && session.isGpu) {
      // Worded unlike any real message: the page must recognise it by its kind alone.
      throw Object.assign(
        new Error("the adapter stopped answering (simulated with ?simulate-gpu-failure)"),
        { kind: "device" },
      );
    }
    const before = session.snapshot();
    const reports = await session.prefer(prompt, chosen, rejected);
    const applied = reports.some((r) => !r.skipped);
    if (applied) {
      undoStack.push(before);
      if (undoStack.length > UNDO_DEPTH) undoStack.shift().free();
    } else {
      before.free();
    }
    return {
      reports,
      scores: await scores(prompt, chosen, rejected),
      state: applied ? await state() : null,
    };
  },

  async undo() {
    const snapshot = undoStack.pop();
    if (!snapshot)
      throw new Error(
        "Nothing to undo in this session (undo keeps the last 10 updates until the page reloads).",
      );
    session.restore(snapshot);
    snapshot.free();
    return { state: await state(), canUndo: undoStack.length > 0 };
  },

  async reset() {
    session.reset();
    clearUndo();
    return { state: await state() };
  },

  /** One pass over `pairs`, `steps_per_pair` updates each; not undoable pick by pick. */
  async trainOn({ pairs }, progress) {
    const reports = [];
    for (const [i, p] of pairs.entries()) {
      const r = await session.trainOn({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected });
      reports.push(r[r.length - 1]);
      progress({ done: i + 1, total: pairs.length, metrics: r[r.length - 1].metrics });
    }
    clearUndo();
    return { reports, state: await state() };
  },

  /** The names among `names` that loading a model folder reads. */
  async modelFiles({ names }) {
    await init();
    return names.filter((name) => isModelFile(name));
  },

  /** What the page needs to know of each optimizer it offers. */
  async learningRates({ optims }) {
    await init();
    return Object.fromEntries(optims.map((optim) => [optim, defaultLearningRate(optim)]));
  },

  /** The pairs of a TRL JSONL file (text or conversational rows); a bad line is a "data" error. */
  async parsePairs({ text, name }) {
    await init();
    return parsePairs(text, name);
  },

  async scores({ prompt, chosen, rejected }) {
    return scores(prompt, chosen, rejected);
  },

  async policyWeights() {
    return session.policyWeights();
  },

  /** A model.safetensors from the user: becomes the policy, with a fresh optimizer. */
  async loadWeights({ weights }) {
    session.loadState(weights, undefined);
    clearUndo();
    return { state: await state() };
  },
};

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    if (
      !["load", "checkMemory", "parsePairs", "modelFiles", "learningRates"].includes(op) &&
      !session
    )
      throw new Error("the model is not loaded yet");
    const value = await ops[op](args ?? {}, (progress) => self.postMessage({ id, progress }));
    const transfer = value?.state
      ? [value.state.weights.buffer, value.state.optimizer.buffer]
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
