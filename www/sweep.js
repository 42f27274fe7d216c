// The sweep page: its settings, a worker that runs the sweep (sweep-worker.js), the figure as it
// grows, the table of runs, and the CSV, SVG and PNG downloads. Cancel terminates the worker;
// what it measured until then stays.
import { $, download, el } from "./views/dom.js";

const params = new URLSearchParams(location.search);
let worker = null;
let defaults = null;
let last = null;

const FIELDS = {
  attribute: "sweep-attribute",
  betas: "sweep-betas",
  losses: "sweep-losses",
  picks: "sweep-picks",
  every: "sweep-every",
  samples: "sweep-samples",
  seed: "sweep-seed",
  backend: "sweep-backend",
};

const list = (text) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function status(text, progress) {
  $("sweep-status").textContent = text;
  $("sweep-progress").hidden = progress === undefined;
  if (progress !== undefined) $("sweep-progress").value = progress;
}

function error(text) {
  $("sweep-error").hidden = !text;
  $("sweep-error").textContent = text ?? "";
}

/** The settings on the form (every field may be set from the address, e.g. `?betas=0.1,1`). */
function showDefaults() {
  const s = defaults.simulation;
  const values = {
    attribute: s.attribute,
    betas: defaults.betas.join(", "),
    losses: defaults.losses.join(", "),
    picks: s.picks,
    every: s.eval_every,
    samples: s.eval_samples,
    seed: s.seed,
    backend: "cpu",
  };
  for (const [name, id] of Object.entries(FIELDS)) $(id).value = params.get(name) ?? values[name];
}

/** The sweep the form asks for; the core checks it (and says what is wrong) when it starts. */
function readSweep() {
  const num = (id) => Number($(id).value);
  const betas = list($("sweep-betas").value).map(Number);
  if (!betas.length || betas.some((b) => !(b > 0)))
    throw new Error("β values must be numbers > 0, separated by commas");
  return {
    ...defaults,
    betas,
    losses: list($("sweep-losses").value),
    simulation: {
      ...defaults.simulation,
      attribute: $("sweep-attribute").value,
      picks: num("sweep-picks"),
      eval_every: num("sweep-every"),
      eval_samples: num("sweep-samples"),
      seed: num("sweep-seed"),
    },
  };
}

const fixed = (x, digits) => (Number.isFinite(x) ? x.toFixed(digits) : "–");

function showResults({ runs, svg, csv }) {
  last = { svg, csv };
  const img = $("sweep-figure");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  img.hidden = false;
  $("sweep-table").hidden = false;
  $("sweep-table").tBodies[0].replaceChildren(
    ...runs.map((run) => {
      const end = run.points[run.points.length - 1];
      const reached = run.points.find((p) => p.rate >= 0.9);
      return el(
        "tr",
        {},
        el("th", { scope: "row" }, `${run.loss}, β = ${run.beta}`),
        el("td", {}, String(end?.picks ?? 0)),
        el("td", {}, end ? `${Math.round(end.rate * 100)} %` : "–"),
        el("td", {}, end ? `${fixed(end.kl, 2)} ± ${fixed(end.kl_stderr, 2)}` : "–"),
        el("td", {}, end ? `${Math.round(end.well_formed * 100)} %` : "–"),
        el("td", {}, reached ? String(reached.picks) : "not yet"),
      );
    }),
  );
  for (const id of ["sweep-csv", "sweep-svg", "sweep-png"]) $(id).disabled = false;
}

function describe({ run, runs, loss, beta, progress }, picks) {
  const done = progress.kind === "measured" ? progress.point.picks : progress.picks;
  const what =
    progress.kind === "measured" ? `measured after ${done} picks` : `${done} of ${picks} picks`;
  return {
    text: `Run ${run + 1} of ${runs} (${loss}, β = ${beta}): ${what}`,
    fraction: (run + Math.min(done / picks, 1)) / runs,
  };
}

function setRunning(running) {
  $("sweep-run").disabled = running;
  $("sweep-cancel").disabled = !running;
  for (const id of Object.values(FIELDS)) $(id).disabled = running;
}

function start() {
  error(null);
  let sweep;
  try {
    sweep = readSweep();
  } catch (e) {
    return error(e.message);
  }
  worker = new Worker("sweep-worker.js", { type: "module" });
  const started = performance.now();
  const picks = sweep.simulation.picks;
  worker.onmessage = ({ data }) => {
    if (data.error !== undefined) {
      setRunning(false);
      worker.terminate();
      status("The sweep stopped.");
      return error(`The sweep stopped: ${data.error}`);
    }
    if (data.svg) showResults(data);
    if (data.done) {
      setRunning(false);
      const seconds = Math.round((performance.now() - started) / 1000);
      $("sweep-status").dataset.done = "1";
      return status(`Done: ${data.runs.length} runs in ${seconds} s.`);
    }
    const { text, fraction } = describe(data.progress, picks);
    status(`${text}…`, fraction);
  };
  worker.onerror = (e) => {
    setRunning(false);
    error(`The sweep stopped: ${e.message || "its worker crashed"}`);
  };
  delete $("sweep-status").dataset.done;
  setRunning(true);
  status("Loading the model…", 0);
  worker.postMessage({ op: "start", sweep, backend: $("sweep-backend").value });
}

function cancel() {
  worker?.terminate();
  worker = null;
  setRunning(false);
  status(last ? "Cancelled; what was measured is kept." : "Cancelled.");
}

async function png() {
  const img = new Image();
  img.src = URL.createObjectURL(new Blob([last.svg], { type: "image/svg+xml" }));
  await img.decode();
  const canvas = el("canvas", { width: img.width * 2, height: img.height * 2 });
  const context = canvas.getContext("2d");
  context.scale(2, 2);
  context.drawImage(img, 0, 0);
  URL.revokeObjectURL(img.src);
  canvas.toBlob((blob) => download(blob, "sweep.png", "image/png"), "image/png");
}

$("sweep-form").addEventListener("submit", (e) => (e.preventDefault(), start()));
$("sweep-cancel").addEventListener("click", cancel);
$("sweep-csv").addEventListener("click", () => download(last.csv, "sweep.csv", "text/csv"));
$("sweep-svg").addEventListener("click", () => download(last.svg, "sweep.svg", "image/svg+xml"));
$("sweep-png").addEventListener("click", png);

const loader = new Worker("sweep-worker.js", { type: "module" });
loader.onmessage = ({ data }) => {
  loader.terminate();
  if (data.error !== undefined) return error(`Could not start: ${data.error}`);
  defaults = data.defaults;
  showDefaults();
  $("sweep-run").disabled = false;
  status("Ready: set the sweep and run it.");
};
loader.postMessage({ op: "defaults" });
