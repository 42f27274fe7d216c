// Loads the model named by the page and runs Session.benchmark off the page's thread.
import init, { initWeights, byteLevelTokenizer, defaultLearningRate } from "./pkg/webdpo.js";
import { buildFor } from "./builds.js";

async function bytes(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The files of the model `name` and how it trains: config.json, tokenizer.json and
 *  model.safetensors as `Session.fromFiles` takes them, with LoRA and the optimizer. */
async function model(name) {
  const text = async (path) => new TextDecoder().decode(await bytes(path));
  if (name === "storyworld") {
    const dir = "models/storyworld";
    return {
      config: await text(`${dir}/config.json`),
      tokenizer: await bytes(`${dir}/tokenizer.json`),
      weights: await bytes(`${dir}/model.safetensors`),
    };
  }
  // The same weights as `webdpo init` with bench/run.sh's flags (seeded init on the CPU); only
  // token ids cross into the update, so a byte-level tokenizer serves every vocabulary.
  const seeded = async (configFile) => {
    const config = await text(configFile);
    const tokenizer = new TextEncoder().encode(byteLevelTokenizer());
    return { config, tokenizer, weights: await initWeights(config, 0n) };
  };
  if (name === "25m") return seeded("bench/25m-config.json");
  if (name === "smollm2-lora")
    // As `webdpo bench --lora 8,16 --optim adamw` in bench/run.sh.
    return {
      ...(await seeded("bench/smollm2-135m-config.json")),
      lora: { r: 8, alpha: 16 },
      optim: "adamw",
    };
  throw new Error(`unknown model ${JSON.stringify(name)}; use storyworld, 25m or smollm2-lora`);
}

onmessage = async ({ data: { model: name, backend, threads, bench } }) => {
  let session;
  try {
    await init();
    // On the CPU, the threaded build with `threads` workers where the page is isolated.
    const build = await buildFor(backend, threads);
    const { Session } = build;
    const wasm = await build.default();
    postMessage({ progress: `Loading the ${name} model on ${backend}…` });
    const { config, tokenizer, weights, lora, optim } = await model(name);
    const files = [
      { name: "config.json", bytes: new TextEncoder().encode(config) },
      { name: "tokenizer.json", bytes: tokenizer },
      { name: "model.safetensors", bytes: weights },
    ];
    session = await Session.fromFiles(files, { backend, lora });
    if (optim)
      session.setTrainConfig({
        ...session.trainConfig(),
        optim,
        learning_rate: defaultLearningRate(optim),
      });
    postMessage({
      progress: `Benchmarking ${session.parameterCount.toLocaleString()} parameters on ${session.device}…`,
    });
    const report = await session.benchmark(bench);
    report.model = name;
    // The wasm heap only grows: its size is the peak of host-side memory (all of it, on the CPU).
    report.wasm_memory_bytes = wasm.memory.buffer.byteLength;
    postMessage({ report });
  } catch (e) {
    postMessage({ error: String(e?.message ?? e) });
  } finally {
    session?.free();
  }
};
