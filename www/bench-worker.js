// Loads the model named by the page and runs Session.benchmark off the page's thread.
import init, { Session, initWeights, byteLevelTokenizer } from "./pkg/webdpo.js";

async function bytes(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function model(name) {
  if (name === "storyworld") {
    const dir = "models/storyworld";
    return [
      await (await fetch(`${dir}/config.json`)).text(),
      await bytes(`${dir}/tokenizer.json`),
      await bytes(`${dir}/model.safetensors`),
    ];
  }
  if (name === "25m") {
    // The same weights as `webdpo init` with bench/run.sh's flags (seeded init on the CPU).
    const config = await (await fetch("bench/25m-config.json")).text();
    return [config, new TextEncoder().encode(byteLevelTokenizer()), await initWeights(config, 0n)];
  }
  throw new Error(`unknown model ${JSON.stringify(name)}; use storyworld or 25m`);
}

onmessage = async ({ data: { model: name, backend, bench } }) => {
  let session;
  try {
    const wasm = await init();
    postMessage({ progress: `Loading the ${name} model on ${backend}…` });
    session = await Session.create(...(await model(name)), backend);
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
