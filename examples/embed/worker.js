// The model, off the page's thread: webdpo from the installed package, the built-in story model
// it ships, and the loop (generate two → prefer one → one DPO update). Without a WebGPU adapter,
// on a cross-origin isolated page (served with COOP + COEP), the threaded build uses every core.
const threaded =
  self.crossOriginIsolated &&
  navigator.hardwareConcurrency > 1 &&
  !(await navigator.gpu?.requestAdapter().catch(() => null));
const webdpo = await import(`./node_modules/webdpo/${threaded ? "threads/" : ""}webdpo.js`);
const { Session, storyPrompt } = webdpo;

const file = (name) => new URL(`./node_modules/webdpo/models/storyworld/${name}`, import.meta.url);
const bytes = async (name) => new Uint8Array(await (await fetch(file(name))).arrayBuffer());
const sampling = { temperature: 1, top_k: 0, top_p: 1, max_new_tokens: 48, seed: 1 };
let session;
let prompt;

async function handle(message) {
  if (message.generate !== undefined) {
    prompt = storyPrompt(message.generate);
    const generation = session.startGeneration(prompt, 2, sampling, false, "independent");
    try {
      for (let texts; (texts = await generation.next()) !== undefined;) self.postMessage({ texts });
    } finally {
      generation.free();
    }
    sampling.seed += 1;
    return self.postMessage({ done: true });
  }
  const [chosen, rejected] = message.prefer === 0 ? message.texts : [...message.texts].reverse();
  const reports = await session.prefer({ prompt, chosen, rejected });
  self.postMessage({ metrics: reports[reports.length - 1].metrics });
}

self.onmessage = ({ data }) =>
  handle(data).catch((e) => self.postMessage({ error: `${e.message} (${e.kind ?? "error"})` }));

try {
  await webdpo.default();
  if (threaded) await webdpo.initThreadPool(navigator.hardwareConcurrency);
  const config = await (await fetch(file("config.json"))).text();
  session = await Session.create(
    config,
    await bytes("tokenizer.json"),
    await bytes("model.safetensors"),
    "auto",
  );
  self.postMessage({ ready: true, device: session.device });
} catch (e) {
  self.postMessage({ error: e.message });
}
