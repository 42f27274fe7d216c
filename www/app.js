// Minimal page: load the model, report the device, generate two responses, learn from a pick.
// Model text is only ever set as textContent, never as HTML.
import init, { Session } from "./pkg/webdpo.js";

const $ = (id) => document.getElementById(id);
const status = (text, error = false) => { $("status").textContent = text; $("status").classList.toggle("error", error); };
let session, prompt, responses;
let seed = 1;

async function fetchModel(dir) {
  const get = async (name) => {
    const r = await fetch(`${dir}/${name}`);
    if (!r.ok) throw new Error(`could not load ${dir}/${name}: HTTP ${r.status}`);
    return r;
  };
  const [config, tokenizer, weights] = await Promise.all([
    get("config.json").then((r) => r.text()),
    get("tokenizer.json").then((r) => r.arrayBuffer()),
    get("model.safetensors").then((r) => r.arrayBuffer()),
  ]);
  return [config, new Uint8Array(tokenizer), new Uint8Array(weights)];
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("pick-a").disabled = $("pick-b").disabled = busy || !responses;
}

async function generate(event) {
  event.preventDefault();
  setBusy(true);
  prompt = $("prompt").value;
  status("Generating…");
  try {
    const sampling = { temperature: 1.0, top_k: 0, top_p: 1.0, max_new_tokens: 48, seed: seed++ };
    responses = await session.generate(prompt, 2, sampling, false);
    $("a").textContent = responses[0];
    $("b").textContent = responses[1];
    status("Which response is better?");
  } catch (e) {
    status(e.message, true);
  }
  setBusy(false);
}

async function pick(winner) {
  setBusy(true);
  status("Updating the policy…");
  try {
    const [chosen, rejected] = winner === 0 ? responses : [responses[1], responses[0]];
    const reports = await session.prefer(prompt, chosen, rejected);
    const last = reports[reports.length - 1];
    const rows = $("metrics").tBodies[0];
    rows.replaceChildren(...Object.entries(reports[0].metrics).map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const text of [k, v.toFixed(4)]) tr.appendChild(document.createElement("td")).textContent = text;
      return tr;
    }));
    responses = null;
    status(last.skipped ? `Update skipped: ${last.skipped}` : "Updated. Generate again to see the change.", !!last.skipped);
  } catch (e) {
    status(e.message, true);
  }
  setBusy(false);
}

async function main() {
  try {
    await init();
    const [config, tokenizer, weights] = await fetchModel("models/tiny");
    session = await Session.create(config, tokenizer, weights, "auto");
    const hint = session.isGpu ? "" : " (no WebGPU in this browser; in Chrome enable chrome://flags/#enable-unsafe-webgpu)";
    status(`Running on ${session.device}${hint}. ${session.parameterCount.toLocaleString()} parameters.`);
    $("generate").disabled = false;
  } catch (e) {
    status(`Could not start: ${e.message}`, true);
  }
}

$("ask").addEventListener("submit", generate);
$("pick-a").addEventListener("click", () => pick(0));
$("pick-b").addEventListener("click", () => pick(1));
main();
