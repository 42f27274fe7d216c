// The sweep runs here, off the page's thread: fresh copies of the built-in model, each trained
// by the simulated user (Sweep in the core, as `webdpo simulate --sweep`). Protocol:
// {op: "defaults"} → {defaults}; {op: "start", sweep, backend} → {progress, …} after each step
// (with the runs, baselines, CSV and SVG after each measurement), then {done, …}, or {error}.
// The page cancels by terminating the worker.
import init, { defaultSweepConfig } from "./pkg/webdpo.js";
import { buildFor } from "./builds.js";
import { toMessage } from "./errors.js";

const DIR = "models/storyworld";

async function bytes(name) {
  const r = await fetch(`${DIR}/${name}`);
  if (!r.ok) throw new Error(`${DIR}/${name}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

const results = (sweep) => ({
  runs: sweep.runs(),
  baselines: sweep.baselines() ?? null,
  csv: sweep.csv(),
  svg: sweep.svg(),
});

onmessage = async ({ data: { op, sweep: settings, backend } }) => {
  let sweep;
  try {
    await init();
    if (op === "defaults") return postMessage({ defaults: defaultSweepConfig() });
    const [config, tokenizer, weights] = await Promise.all(
      ["config.json", "tokenizer.json", "model.safetensors"].map(bytes),
    );
    const { Sweep } = await buildFor(backend);
    sweep = await Sweep.create(
      new TextDecoder().decode(config),
      tokenizer,
      weights,
      backend,
      settings,
    );
    for (let step; (step = await sweep.next()) !== undefined;) {
      const measured = step.progress.kind === "measured";
      postMessage({ progress: step, ...(measured ? results(sweep) : {}) });
    }
    postMessage({ done: true, ...results(sweep) });
  } catch (e) {
    postMessage(toMessage(e));
  } finally {
    sweep?.free();
  }
};
