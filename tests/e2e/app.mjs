// End-to-end test of the app in headless Debian Chromium (playwright-core), on WebGPU
// (SwiftShader) or, with WebGPU unavailable, on the CPU fallback:
//   node tests/e2e/app.mjs webgpu|cpu
// Serves the repository with scripts/serve.py (pkg/ must be built: scripts/build-web.sh).
// Screenshots and downloads go to artifacts/e2e/<mode>/.
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { startApp } from "./harness.mjs";

const mode = process.argv[2];
if (!["webgpu", "cpu"].includes(mode)) throw new Error("usage: node tests/e2e/app.mjs webgpu|cpu");
const out = join("artifacts", "e2e", mode);
mkdirSync(out, { recursive: true });
const WAIT = { timeout: 600_000 };
// Responses' length: on SwiftShader (a GPU emulated on the CPU) a token costs about half a
// second to sample and more to train on, so the WebGPU run checks its part on short ones.
const TOKENS = mode === "webgpu" ? "24" : "160";

const started = Date.now();
// Each check with the seconds since the start, to see where a run spends its time.
function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what} [${((Date.now() - started) / 1000).toFixed(0)} s]`);
}

const { port, browser, close } = await startApp({ webgpu: mode === "webgpu" });
const errors = [];
try {
  const context = await browser.newContext({
    viewport: { width: 1366, height: 768 },
    acceptDownloads: true,
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && console.log(`console: ${m.text()}`));

  const shot = (name) => page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
  const ready = () =>
    page.waitForFunction(
      () =>
        !document.getElementById("generate").disabled ||
        (!document.getElementById("notice").hidden &&
          document.getElementById("notice").classList.contains("error")),
      null,
      WAIT,
    );
  const learnt = () => page.$eval("#picks-count", (e) => Number(e.dataset.learnt));
  const pairs = () => page.$eval("#picks-count", (e) => Number(e.dataset.pairs));
  const ratings = () => page.$eval("#picks-count", (e) => Number(e.dataset.ratings));
  const metrics = () => page.$eval("#metrics", (e) => e.textContent);
  const noError = async (what) =>
    check(
      await page.$eval("#notice", (n) => n.hidden || !n.classList.contains("error")),
      `${what}: no error shown`,
    );
  const download = async (button, name) => {
    const [d] = await Promise.all([page.waitForEvent("download", WAIT), page.click(button)]);
    const bytes = readFileSync(await d.path());
    writeFileSync(join(out, name), bytes);
    return bytes;
  };
  /** Imports `name` (in the artifacts) and waits until the status says `done`, or an error shows. */
  const importAndWait = async (name, done) => {
    await page.setInputFiles("#import", join(out, name));
    await page.waitForFunction(
      (done) =>
        document.getElementById("status-text").textContent.includes(done) ||
        (!document.getElementById("notice").hidden &&
          document.getElementById("notice").classList.contains("error")),
      done,
      WAIT,
    );
  };
  /** Generates a pair and picks one (by keyboard or by clicking). The random fixture model may
   *  sample its end token first, so `written` (the built-in model's stories) is not asked of it. */
  const pickOne = async (how, { written = true } = {}) => {
    const before = await learnt();
    await page.click("#generate");
    await page.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
    const [a, b] = [await page.textContent("#text-a"), await page.textContent("#text-b")];
    check(
      !written || (a.length > 0 && b.length > 0),
      `two responses generated (${a.length} and ${b.length} characters)`,
    );
    if (how === "key") await page.keyboard.press("a");
    else await page.click("#pick-b");
    await page.waitForFunction(
      (n) =>
        Number(document.getElementById("picks-count").dataset.learnt) === n + 1 &&
        !document.getElementById("generate").disabled,
      before,
      WAIT,
    );
    await noError("update");
  };

  // Bytes on the wire (compressed), per page load; the threaded CPU build's apart (loaded only
  // where the CPU runs or is timed).
  let wire = 0;
  let wireThreads = 0;
  const fresh = [];
  context.on("response", async (r) => {
    if (r.fromServiceWorker()) return;
    const length = Number((await r.allHeaders())["content-length"] ?? 0);
    if (r.url().includes("/pkg/threads/")) wireThreads += length;
    else wire += length;
    if (r.status() === 200 && length > 100_000) fresh.push(r.url());
  });

  // Load: the built-in model on the expected device.
  const started = Date.now();
  await page.goto(`http://127.0.0.1:${port}/`);
  await ready();
  check(
    wire <= 6e6,
    `first load is ${(wire / 1e6).toFixed(2)} MB compressed (≤ 6 MB; large: ${fresh.join(", ")})`,
  );
  check(
    wireThreads <= 1.5e6,
    `the threaded CPU build is ${(wireThreads / 1e6).toFixed(2)} MB compressed (≤ 1.5 MB)`,
  );
  await noError("load");
  if (mode === "webgpu") {
    // Both devices timed on the first load, the faster per pick chosen and shown with the figures.
    const choice = await page.$eval("#device-choice", (e) => ({ hidden: e.hidden, ...e.dataset }));
    const [gpuMs, cpuMs] = [Number(choice.webgpuPickMs), Number(choice.cpuPickMs)];
    const faster = cpuMs < gpuMs ? "cpu" : "webgpu";
    const timing = await page.textContent("#device-timing");
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    check(
      !choice.hidden &&
        gpuMs > 0 &&
        cpuMs > 0 &&
        /WebGPU \(.*swiftshader/i.test(timing) &&
        (cores < 2 || timing.includes(`the CPU (${cores} threads)`)),
      `WebGPU and the CPU (the threaded build) timed on the first load: ${timing}`,
    );
    check(
      choice.faster === faster &&
        (await page.$eval("#device", (e) => e.dataset.backend)) === faster,
      `the faster per pick is chosen (${faster}; ${gpuMs.toFixed(0)} vs ${cpuMs.toFixed(0)} ms)`,
    );
    await shot("00-device-timed");
    // Remembered for this adapter and model: a reload does not time again.
    const timedAt = () =>
      page.evaluate(() =>
        Object.values(JSON.parse(localStorage.getItem("webdpo.device-choice"))).map((c) => c.time),
      );
    const before = await timedAt();
    await page.reload();
    await ready();
    check(
      JSON.stringify(await timedAt()) === JSON.stringify(before) &&
        (await page.$eval("#device", (e) => e.dataset.backend)) === faster,
      "a reload keeps the timed choice without timing again",
    );
    // The user's override: WebGPU (this run's subject) whatever the timing said, remembered.
    await Promise.all([page.waitForNavigation(), page.selectOption("#device-select", "webgpu")]);
    await ready();
    check(
      /your choice/.test(await page.textContent("#device")),
      `the override is kept across the reload: ${await page.textContent("#device")}`,
    );
  }
  const backend = await page.$eval("#device", (e) => e.dataset.backend);
  check(
    backend === mode,
    `runs on ${mode} (badge: ${await page.textContent("#device")}), ` +
      `loaded in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (mode === "cpu") {
    // Served cross-origin isolated, the CPU backend is the threaded build, on every core.
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const badge = await page.textContent("#device");
    check(
      (await page.evaluate(() => self.crossOriginIsolated)) &&
        (cores < 2 || badge.startsWith(`CPU, ${cores} threads`)),
      `the CPU backend splits its work over the ${cores} cores: ${badge}`,
    );
  }
  await shot("01-loaded");
  if (mode === "webgpu") {
    // On an emulated GPU (SwiftShader) the meter is off unless asked for: the page says why.
    await page.waitForFunction(
      () => /emulated on the CPU/.test(document.getElementById("behaviour-status").textContent),
      null,
      WAIT,
    );
    check(
      await page.$eval("#behaviour-table", (e) => e.hidden),
      `the meter is off by itself on SwiftShader: ${await page.textContent("#behaviour-status")}`,
    );
    await page.fill("#max-tokens", TOKENS);
    await page.dispatchEvent("#max-tokens", "change");
  }

  // First pick: loss is ln 2 (policy = reference), metrics, teaching view and charts update.
  await pickOne("key");
  const m1 = await metrics();
  check(/loss\s*0\.6931/.test(m1), `first update's loss is ln 2 (${m1.slice(0, 40)}…)`);
  check(
    await page.$eval("#formula", (e) => e.textContent.includes("0.6931")),
    "the formula shows this pick's loss",
  );
  check(
    await page.$eval("#tokens-chosen", (e) => e.querySelectorAll(".tok").length > 0),
    "per-token view of the chosen response",
  );
  check(
    await page.$eval(
      "#chart-loss",
      (e) => e.dataset.points === "1" && e.querySelector("canvas") !== null,
    ),
    "loss chart has one point",
  );
  check(
    await page.$eval(
      "#chart-weighing",
      (e) => e.dataset.x === "0" && e.querySelector("canvas") !== null,
    ),
    "the loss and gradient-weight curve marks this pick at h = 0",
  );
  await shot("02-first-pick");

  if (mode === "cpu") {
    // The behaviour meter: after the load the reference's stories, after the pick the policy's,
    // measured in the background while the page takes the next action.
    const meterText = () => page.textContent("#behaviour-status");
    await page.waitForFunction(
      () =>
        /stopped/.test(document.getElementById("behaviour-status").textContent) ||
        (/Measuring the (reference|policy)/.test(
          document.getElementById("behaviour-status").textContent,
        ) &&
          !document.getElementById("generate").disabled),
      null,
      WAIT,
    );
    check(
      /Measuring/.test(await meterText()),
      `the meter measures while the page is free (${await meterText()})`,
    );
    await page.waitForFunction(
      () => /after 1 update|stopped/.test(document.getElementById("behaviour-status").textContent),
      null,
      WAIT,
    );
    const happy = await page.textContent('#behaviour-table tr[data-behaviour="happy"]');
    const klRow = await page.textContent('#behaviour-table tr[data-behaviour="kl"]');
    check(
      /\d+ % \(\d+–\d+ %\)\d+ % → \d+ % \(\d+–\d+ %\)/.test(happy) && /nats/.test(klRow),
      `the meter shows the reference's and the policy's rates with intervals: ${happy}; ${klRow}`,
    );
    check(
      await page.$eval("#chart-behaviour", (e) => e.dataset.points === "2"),
      "the behaviour chart has the reference and the first pick",
    );
  }

  // Second pick, then reload: pairs and weights come back from IndexedDB.
  await pickOne("click");
  const m2 = await metrics();
  check(m2 !== m1, "second pick shows new metrics");
  check(await page.$eval("#chart-kl", (e) => e.dataset.points === "2"), "KL chart has two points");
  const w2 = await download("#download", "policy-after-2.safetensors");
  wire = 0;
  fresh.length = 0;
  await page.reload();
  await ready();
  check(
    fresh.length === 0,
    `reload downloads nothing large again (${(wire / 1e3).toFixed(0)} kB on the wire; ${fresh.join(", ")})`,
  );
  await noError("reload");
  check((await learnt()) === 2 && (await pairs()) === 2, "reload restored both picks");
  check(
    await page.$eval("#notice", (e) => /Restored.*2 pairs.*after 2 updates/.test(e.textContent)),
    "reload says what it restored",
  );
  check((await metrics()) === m2, "reload restored the last metrics");
  check(
    (await download("#download", "policy-restored.safetensors")).equals(w2),
    `reload restored the updated weights exactly (${w2.length} bytes)`,
  );

  // Offline: the service worker serves the app, IndexedDB the state.
  await context.setOffline(true);
  await page.reload();
  await ready();
  await noError("offline reload");
  check(
    (await learnt()) === 2 && (await metrics()) === m2,
    "offline reload works and restores the picks",
  );
  if (mode === "cpu")
    check(
      /^CPU, \d+ threads/.test(await page.textContent("#device")),
      "offline, the CPU runs the threaded build (kept by the service worker once used)",
    );
  await context.setOffline(false);

  // A third pick, then undo: the previous metrics and exactly the previous weights.
  await pickOne("key");
  check((await metrics()) !== m2, "third pick shows new metrics");
  await shot("03-three-picks");
  await page.click("#undo");
  await page.waitForFunction(
    () =>
      Number(document.getElementById("picks-count").dataset.learnt) === 2 &&
      !document.getElementById("generate").disabled,
    null,
    WAIT,
  );
  check((await metrics()) === m2, "undo restored the previous metrics");
  check(
    (await download("#download", "policy-after-undo.safetensors")).equals(w2),
    "undo restored exactly the previous weights",
  );

  // The rest of the page (import and export, other objectives, ratings, lesson links, a model
  // of your own, the sweep) runs the same on either device: the CPU run checks it. On
  // SwiftShader each update takes half a minute; the WebGPU run goes on to the GPU's failures.
  if (mode === "cpu") {
    // Export → import: the same pairs come back (and are trained on).
    const exported = (await download("#export", "pairs.jsonl")).toString();
    const rows = exported
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    check(
      rows.length === 2 && rows.every((r) => Object.keys(r).join() === "prompt,chosen,rejected"),
      "export is TRL JSONL with 2 pairs",
    );
    await importAndWait("pairs.jsonl", "Imported 2 pairs; training on them: done");
    await noError("import");
    check((await pairs()) === 4, "import added the 2 pairs");
    const again = (await download("#export", "pairs-after-import.jsonl")).toString();
    check(again === exported + exported, "the imported pairs are the exported ones");

    // A bad import says what is wrong and changes nothing.
    writeFileSync(
      join(out, "bad.jsonl"),
      `${exported.split("\n")[0]}\n{"prompt": "x", "chosen": 3}\n`,
    );
    await page.setInputFiles("#import", join(out, "bad.jsonl"));
    await page.waitForFunction(
      () =>
        !document.getElementById("notice").hidden &&
        /bad\.jsonl:2:/.test(document.getElementById("notice").textContent),
      null,
      WAIT,
    );
    check((await pairs()) === 4, `bad import refused: ${await page.textContent("#notice")}`);

    // Policy vs reference, side by side.
    await page.click("#compare");
    await page.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    const [fromPolicy, fromReference] = [
      await page.textContent("#text-policy"),
      await page.textContent("#text-reference"),
    ];
    check(
      fromPolicy.length > 0 && fromReference.length > 0 && (await page.isVisible("#compare-view")),
      `compare shows a policy and a reference sample (${fromPolicy.length} and ${fromReference.length} characters)`,
    );
    await page.screenshot({ path: join(out, "04-end.png") });
    await shot("05-end-full");
    // Another of TRL's objectives from the menu: the next pick trains with IPO, is taught with
    // IPO's loss, and the setting is kept as TRL's loss list; undo then removes that pick.
    const beforeIpo = await learnt();
    await page.selectOption("#objective", "dpo:ipo");
    await pickOne("key");
    check(
      await page.$eval("#formula", (e) => e.textContent.includes("− 1/(2β))²")),
      "a pick under IPO is taught with IPO's loss",
    );
    const storedLoss = await page.evaluate(
      () => JSON.parse(localStorage.getItem("webdpo.train")).dpo.loss_type,
    );
    check(
      JSON.stringify(storedLoss) === '["ipo"]',
      `the objective is kept as a loss list (${storedLoss})`,
    );
    await page.click("#undo");
    await page.waitForFunction(
      (n) =>
        Number(document.getElementById("picks-count").dataset.learnt) === n &&
        !document.getElementById("generate").disabled,
      beforeIpo,
      WAIT,
    );
    check((await pairs()) === 4, "undo removed the IPO pick");

    // Rate one (KTO from the menu's unpaired group): one response with 👍/👎 by key. The first
    // rating waits for a second (KTO's reference point needs a batch); the second trains on both.
    // Short responses: what is checked here is the rating loop, not the stories.
    await page.fill("#max-tokens", "48");
    await page.dispatchEvent("#max-tokens", "change");
    await page.selectOption("#objective", "kto:kto");
    await page.waitForFunction(() => !document.getElementById("rate-row").hidden, null, WAIT);
    check(
      (await page.isVisible("#rate-up")) && !(await page.isVisible("#card-b")),
      "KTO shows one response to rate, with 👍/👎",
    );
    check(
      (await page.isVisible("#w-good")) &&
        (await page.isVisible("#rating-batch")) &&
        !(await page.isVisible("#eps")) &&
        !(await page.isVisible("#rpo")),
      "KTO's knobs (desirable/undesirable weights, batch) are shown, DPO's are not",
    );
    const rateOne = async (key) => {
      const before = await ratings();
      await page.click("#generate");
      await page.waitForFunction(() => !document.getElementById("rate-up").disabled, null, WAIT);
      const text = await page.textContent("#text-a");
      check(text.length > 0, `one response generated (${text.length} characters)`);
      await page.keyboard.press(key);
      await page.waitForFunction(
        (n) =>
          Number(document.getElementById("picks-count").dataset.ratings) === n + 1 &&
          !document.getElementById("generate").disabled,
        before,
        WAIT,
      );
      await noError(`rating ${key}`);
    };
    await rateOne("y");
    check(
      /learns once there is a second rating/.test(await page.textContent("#status-text")),
      "a first KTO rating waits for a second",
    );
    await rateOne("n");
    const kto = await metrics();
    check(
      /^loss/.test(kto) &&
        /kl/.test(kto) &&
        /rewards\/chosen/.test(kto) &&
        /rewards\/rejected/.test(kto),
      `the ratings trained with KTO, its metrics shown (${kto.slice(0, 60)}…)`,
    );
    check(
      await page.$eval("#formula", (e) => /z₀/.test(e.textContent) && /1 − σ/.test(e.textContent)),
      "the rating is taught with KTO's loss and reference point",
    );
    check(
      await page.$eval("#weighing-caption", (e) => /functions of r/.test(e.textContent)),
      "the rating's loss is drawn as a function of its log-ratio r",
    );
    await shot("05b-kto-rating");
    const rated = (await download("#export-ratings", "ratings.jsonl"))
      .toString()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    check(
      rated.length === 2 &&
        rated.every((r) => Object.keys(r).join() === "prompt,completion,label") &&
        rated[0].label === true &&
        rated[1].label === false,
      "ratings export as TRL's unpaired rows (👍 true, 👎 false)",
    );
    await importAndWait("ratings.jsonl", "Imported 2 ratings; training on them: done");
    await noError("ratings import");
    check(
      (await ratings()) === 4 && (await pairs()) === 4,
      "imported ratings are kept apart from pairs",
    );
    await page.fill("#max-tokens", TOKENS);
    await page.dispatchEvent("#max-tokens", "change");
    await page.selectOption("#objective", "dpo:sigmoid");
    await page.waitForFunction(() => !document.getElementById("card-b").hidden, null, WAIT);
    check(await page.isVisible("#pick-b"), "back to pairs with a pairwise objective");
    // A setting saved by an older version with `rpo_alpha` (gone from TRL) comes back as RPO α:
    // TRL 1.16's sft loss in the list, weighted α.
    await page.evaluate(() => {
      const train = JSON.parse(localStorage.getItem("webdpo.train"));
      const dpo = { ...train.dpo, loss_type: ["sigmoid"], loss_weights: null };
      localStorage.setItem("webdpo.train", JSON.stringify({ ...train, dpo, rpo_alpha: 0.5 }));
    });
    await page.reload();
    await ready();
    await noError("reload with an old rpo_alpha setting");
    check(
      (await page.inputValue("#rpo")) === "0.5" &&
        (await page.inputValue("#objective")) === "dpo:sigmoid",
      "an old rpo_alpha setting is migrated to RPO α (the sft loss weighted 0.5)",
    );
    await page.fill("#rpo", "0");
    await page.dispatchEvent("#rpo", "change");
    await page.waitForFunction(
      () => JSON.parse(localStorage.getItem("webdpo.train")).dpo.loss_type.join() === "sigmoid",
      null,
      WAIT,
    );

    // A lesson link: its setup is applied on load (and again on reload), the same seed gives the
    // same responses in another browser, and guided mode asks for a guess before the update.
    const lesson =
      `http://127.0.0.1:${port}/?objective=dpo:ipo&beta=0.2&temperature=0.8&tokens=32&seed=7` +
      `&prompt=${encodeURIComponent("Write a story about a sleepy bear who finds a green ball.")}` +
      `&hide=charts&guided=1`;
    const students = [];
    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
      const student = await context.newPage();
      student.on("pageerror", (e) => errors.push(e.message));
      await student.goto(lesson);
      await student.waitForFunction(
        () => !document.getElementById("generate").disabled,
        null,
        WAIT,
      );
      await student.click("#generate");
      await student.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
      students.push({ context, student, text: await student.textContent("#text-a") });
    }
    const { student } = students[0];
    check(
      (await student.inputValue("#beta")) === "0.2" &&
        (await student.inputValue("#objective")) === "dpo:ipo" &&
        (await student.inputValue("#max-tokens")) === "32" &&
        !(await student.isVisible("#charts")) &&
        /sleepy bear/.test(await student.inputValue("#prompt")),
      "a lesson link sets the objective, β, length, prompt and hidden panels",
    );
    check(
      students[0].text.length > 0 && students[0].text === students[1].text,
      "the link's seed gives every student the same responses",
    );
    await student.click("#pick-a");
    await student.waitForFunction(() => !document.getElementById("guess").hidden, null, WAIT);
    await student.click('[data-guess="chosen"]');
    await student.waitForFunction(() => !document.getElementById("reveal").hidden, null, WAIT);
    await student.screenshot({ path: join(out, "05c-lesson-guided.png"), fullPage: true });
    const revealed = await student.textContent("#reveal");
    check(
      /log π\(chosen\).*log π\(rejected\)/.test(revealed),
      `guided mode asks, then reveals with the numbers (${revealed.slice(0, 80)}…)`,
    );
    await student.click("#copy-link");
    const link = await student.$eval("#copy-link", (e) => e.dataset.link);
    check(
      /objective=dpo%3Aipo/.test(link) && /beta=0.2/.test(link) && /hide=charts/.test(link),
      "copy lesson link writes the setup back into a link",
    );
    await student.reload();
    await student.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    check(
      (await student.inputValue("#beta")) === "0.2" && !(await student.isVisible("#charts")),
      "a reload of the link reproduces its setup",
    );
    for (const { context } of students) await context.close();

    // Bring your own model: the Llama fixture (sharded weights, chat template) as a folder, with
    // LoRA. Its context is raised so that the chat-formatted prompt (86 tokens) and a response fit.
    const folder = join(out, "llama");
    mkdirSync(folder, { recursive: true });
    const fixture = join("tests", "fixtures", "hf", "llama");
    for (const f of readdirSync(fixture))
      if (statSync(join(fixture, f)).isFile()) copyFileSync(join(fixture, f), join(folder, f));
    const hfConfig = JSON.parse(readFileSync(join(fixture, "config.json"), "utf8"));
    writeFileSync(
      join(folder, "config.json"),
      JSON.stringify({ ...hfConfig, max_position_embeddings: 512 }, null, 2),
    );
    // First with a memory budget it cannot fit: refused with the figures, the story model stays.
    // In a context of its own: a second tab of this one would watch the first tab train.
    const smallContext = await browser.newContext();
    const small = await smallContext.newPage();
    small.on("pageerror", (e) => errors.push(e.message));
    await small.goto(`http://127.0.0.1:${port}/?memory-budget=1000000`);
    await small.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    await small.setInputFiles("#folder", folder);
    await small.waitForFunction(
      () =>
        /needs about/.test(document.getElementById("notice").textContent) &&
        !document.getElementById("generate").disabled,
      null,
      WAIT,
    );
    const refusal = await small.textContent("#notice");
    check(
      /weights .* activations .* but about 1 MB is available/.test(refusal) &&
        !/llama/.test(await small.textContent("#device")),
      `over budget: refused, the built-in model kept (${refusal})`,
    );
    await smallContext.close();
    await page.setInputFiles("#folder", folder);
    await page.waitForFunction(
      () =>
        /is ready/.test(document.getElementById("status-text").textContent) ||
        (document.getElementById("notice").classList.contains("error") &&
          !document.getElementById("notice").hidden),
      null,
      WAIT,
    );
    await noError("model folder import");
    const badge = await page.textContent("#device");
    check(
      /llama · .*parameters · LoRA r=8, α=16/.test(badge),
      `the folder's model runs with LoRA (badge: ${badge})`,
    );
    const memory = await page.textContent("#model-info");
    check(
      /chat template/.test(memory) && /reference 0(\.0)? MB/.test(memory),
      `memory estimate shown: ${memory}`,
    );
    check((await pairs()) === 0, "the folder's model starts with its own (empty) pairs");
    await pickOne("key", { written: false });
    check(
      /loss\s*0\.6931/.test(await metrics()),
      "LoRA's first update on the folder's model has loss ln 2",
    );
    await shot("06-own-model");
    // TRL's conversational rows, formatted with the folder's chat template: imported and trained on.
    const turn = (role, content) => [{ role, content }];
    const chat = [
      {
        prompt: turn("user", "Tell me a story."),
        chosen: turn("assistant", "A fox ran home happy."),
        rejected: turn("assistant", "No."),
      },
      {
        prompt: turn("user", "Be kind."),
        chosen: turn("assistant", "Thank you!"),
        rejected: turn("assistant", "Go away."),
      },
    ];
    writeFileSync(join(out, "chat.jsonl"), chat.map((r) => JSON.stringify(r)).join("\n") + "\n");
    await importAndWait("chat.jsonl", "Imported 2 pairs; training on them: done");
    await noError("conversational import");
    check(
      (await pairs()) === 3,
      "conversational TRL rows imported and trained on with the chat template",
    );
    const chatExport = (await download("#export", "chat-pairs.jsonl"))
      .toString()
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => JSON.parse(l));
    check(
      JSON.stringify(chatExport) === JSON.stringify(chat),
      "they export as the conversational rows they were",
    );
    const adapterFiles = [];
    const bothDownloaded = new Promise((resolve) => {
      const on = (d) => adapterFiles.push(d) === 2 && (page.off("download", on), resolve());
      page.on("download", on);
    });
    await page.click("#download-adapter");
    await bothDownloaded;
    const named = Object.fromEntries(
      await Promise.all(
        adapterFiles.map(async (d) => [d.suggestedFilename(), readFileSync(await d.path())]),
      ),
    );
    const adapterConfig = JSON.parse(named["adapter_config.json"].toString());
    const st = named["adapter_model.safetensors"];
    const tensors = Object.keys(
      JSON.parse(st.subarray(8, 8 + Number(st.readBigUInt64LE(0))).toString()),
    ).filter((k) => k !== "__metadata__");
    check(
      adapterConfig.peft_type === "LORA" &&
        adapterConfig.r === 8 &&
        tensors.length === 16 &&
        tensors.every((t) =>
          /^base_model\.model\.model\.layers\.\d\.self_attn\.[qkvo]_proj\.lora_[AB]\.weight$/.test(
            t,
          ),
        ),
      `PEFT adapter downloaded (${tensors.length} tensors)`,
    );
    writeFileSync(join(out, "adapter_config.json"), named["adapter_config.json"]);
    // A reload brings the folder back from IndexedDB without asking for it.
    await page.reload();
    await ready();
    await noError("reload with the folder's model");
    check(
      /llama · /.test(await page.textContent("#device")) && (await learnt()) === 1,
      "reload restored the folder's model and its pick from IndexedDB",
    );
    // A llama.cpp GGUF file (the same Llama, converted as convert_hf_to_gguf.py does) is a model
    // of its own: config, tokenizer and chat template from its metadata; LoRA on top.
    await page.setInputFiles("#gguf", join("tests", "fixtures", "gguf", "llama.gguf"));
    await page.waitForFunction(
      () =>
        /llama\.gguf · /.test(document.getElementById("device").textContent) &&
        !document.getElementById("generate").disabled,
      null,
      WAIT,
    );
    await noError("GGUF file import");
    check(
      (await pairs()) === 0 && /LoRA r=8/.test(await page.textContent("#device")),
      `a GGUF file loads with its own pairs (${await page.textContent("#device")})`,
    );
    await pickOne("key", { written: false });
    check(
      /loss\s*0\.6931/.test(await metrics()),
      "LoRA's first update on the GGUF model has loss ln 2",
    );
    await page.click("#builtin");
    await page.waitForFunction(
      () =>
        !/llama/.test(document.getElementById("device").textContent) &&
        !document.getElementById("generate").disabled,
      null,
      WAIT,
    );
    check(
      (await pairs()) === 4 && /Ready/.test(await page.textContent("#status-text")),
      "back to the built-in model with its own pairs",
    );
    // A policy saved from other reference weights (an app update changed the model) is not loaded.
    await page.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const open = indexedDB.open("webdpo");
          open.onsuccess = () => {
            const tx = open.result.transaction("state", "readwrite");
            const states = tx.objectStore("state");
            const get = states.get("storyworld");
            get.onsuccess = () =>
              states.put({ ...get.result, reference: "weights of an older release" }, "storyworld");
            tx.oncomplete = () => (open.result.close(), resolve());
            tx.onerror = () => reject(tx.error);
          };
        }),
    );
    await page.reload();
    await page.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    const stale = await page.textContent("#notice");
    check(
      /weights changed.*starts again from the new reference.*pairs are kept/.test(stale) &&
        (await pairs()) === 4,
      `a policy saved from other weights is not restored: ${stale}`,
    );

    // Branched pairs: the second response starts as the first and differs from one token on;
    // the shared start is shown muted.
    await page.selectOption("#pairs", "branched");
    await page.fill("#max-tokens", "160");
    await page.dispatchEvent("#settings", "change");
    await page.fill("#prompt", "Write a story about a shy fox who finds a red kite.");
    await page.click("#generate");
    await page.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
    const shared = await page.$$eval("#text-a .shared, #text-b .shared", (s) =>
      s.map((e) => e.textContent),
    );
    const [ta, tb] = [await page.textContent("#text-a"), await page.textContent("#text-b")];
    check(
      ta !== tb &&
        shared.length === 2 &&
        shared[0].length > 0 &&
        shared[0] === shared[1] &&
        ta.startsWith(shared[0] ?? "") &&
        tb.startsWith(shared[0] ?? ""),
      `a branched pair shares its start (${(shared[0] ?? "").length} characters) and differs after`,
    );
    await page.click("#skip");
    await page.selectOption("#pairs", "independent");
    await page.dispatchEvent("#settings", "change");

    // The experiment page: a short sweep (2 β values, 2 picks each) with its figure and CSV,
    // then one cancelled.
    const sweep = await context.newPage();
    sweep.on("pageerror", (e) => errors.push(e.message));
    await sweep.goto(`http://127.0.0.1:${port}/sweep.html?betas=0.1,1&picks=2&every=2&samples=4`);
    await sweep.waitForFunction(() => !document.getElementById("sweep-run").disabled, null, WAIT);
    const t0 = Date.now();
    await sweep.click("#sweep-run");
    await sweep.waitForFunction(
      () =>
        document.getElementById("sweep-status").dataset.done === "1" ||
        !document.getElementById("sweep-error").hidden,
      null,
      WAIT,
    );
    const runs = await sweep.$$eval("#sweep-table tbody tr", (r) => r.map((e) => e.textContent));
    check(
      runs.length === 2 && /β = 0\.1/.test(runs[0]) && /β = 1/.test(runs[1]),
      `the sweep ran 2 runs in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${runs.join(" | ")}`,
    );
    check(
      await sweep.$eval("#sweep-figure", (img) => img.complete && img.naturalWidth > 0),
      "the sweep's figure is drawn",
    );
    const [csvDownload] = await Promise.all([
      sweep.waitForEvent("download", WAIT),
      sweep.click("#sweep-csv"),
    ]);
    const csv = readFileSync(await csvDownload.path(), "utf8");
    writeFileSync(join(out, "sweep.csv"), csv);
    const lines = csv.trim().split("\n");
    check(
      lines[0].startsWith("attribute,objective,beta,picks,rate") &&
        lines.filter((l) => l.startsWith("happy,sigmoid,")).length === 4 &&
        lines.some((l) => l.startsWith("happy,best_of_2,")),
      `the sweep's CSV has both runs' measurements and the baselines (${lines.length} lines)`,
    );
    const [pngDownload] = await Promise.all([
      sweep.waitForEvent("download", WAIT),
      sweep.click("#sweep-png"),
    ]);
    const png = readFileSync(await pngDownload.path());
    writeFileSync(join(out, "sweep.png"), png);
    check(
      png.subarray(1, 4).toString() === "PNG",
      `the figure exports as PNG (${png.length} bytes)`,
    );
    await sweep.screenshot({ path: join(out, "07-sweep.png"), fullPage: true });
    await sweep.click("#sweep-run");
    await sweep.click("#sweep-cancel");
    check(
      /Cancelled/.test(await sweep.textContent("#sweep-status")) &&
        !(await sweep.$eval("#sweep-run", (b) => b.disabled)),
      "a sweep can be cancelled",
    );
    await sweep.close();
  }

  if (mode === "webgpu") {
    // A GPU that fails mid-update: the app continues on the CPU from the saved state, pick kept.
    const other = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const p2 = await other.newPage();
    p2.on("pageerror", (e) => errors.push(e.message));
    await p2.goto(`http://127.0.0.1:${port}/?simulate-gpu-failure&backend=webgpu`);
    await p2.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    await p2.click("#generate");
    await p2.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
    await p2.click("#pick-a");
    await p2.waitForFunction(
      () =>
        document.getElementById("picks-count").dataset.learnt === "1" &&
        !document.getElementById("generate").disabled,
      null,
      WAIT,
    );
    const notice = await p2.textContent("#notice");
    check(
      /GPU failed.*CPU.*picks are kept/.test(notice) &&
        (await p2.$eval("#device", (e) => e.dataset.backend)) === "cpu",
      `GPU failure falls back to the CPU: ${notice}`,
    );
    check(
      /loss\s*0\.6931/.test(await p2.textContent("#metrics")),
      "the pick was learnt on the CPU from the saved state",
    );
    await p2.screenshot({ path: join(out, "06-gpu-fallback.png") });
    // Remembered: the next load starts on the CPU and says why, until the user tries again.
    await p2.goto(`http://127.0.0.1:${port}/`);
    await p2.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    const badge = await p2.textContent("#device");
    check(
      (await p2.$eval("#device", (e) => e.dataset.backend)) === "cpu" &&
        /failed here/.test(badge) &&
        (await p2.isVisible("#retry-gpu")),
      `a reload after the failure starts on the CPU: ${badge}`,
    );
    // Trying the GPU again times it (this context never did): it runs, and the faster is chosen.
    await p2.click("#retry-gpu");
    await p2.waitForFunction(
      () =>
        !document.getElementById("generate").disabled &&
        !document.getElementById("device-choice").hidden,
      null,
      WAIT,
    );
    check(
      !/failed here/.test(await p2.textContent("#device")),
      `Try the GPU again: the next load times WebGPU again (${await p2.textContent("#device")})`,
    );
    // A failure remembered on another adapter does not keep this one off.
    await p2.evaluate(() =>
      localStorage.setItem(
        "webdpo.gpu-failed",
        JSON.stringify({
          adapter: "an older GPU",
          key: "another|adapter",
          reason: "lost",
          time: 0,
        }),
      ),
    );
    await p2.reload();
    await p2.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    check(
      !/failed here/.test(await p2.textContent("#device")) &&
        !(await p2.$eval("#device-choice", (e) => e.hidden)),
      "a failure remembered on another adapter does not apply to this one",
    );
    await other.close();

    // A GPU read that never answers (a timeout of 1 ms stands for a hung device): the read is
    // abandoned as a device failure and the work continues on the CPU.
    const hung = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const p3 = await hung.newPage();
    p3.on("pageerror", (e) => errors.push(e.message));
    await p3.goto(`http://127.0.0.1:${port}/?readback-timeout=1&backend=webgpu`);
    await p3.waitForFunction(() => !document.getElementById("generate").disabled, null, WAIT);
    await p3.click("#generate");
    await p3.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
    const hungNotice = await p3.textContent("#notice");
    check(
      /did not answer a read within 1 ms/.test(hungNotice) &&
        (await p3.$eval("#device", (e) => e.dataset.backend)) === "cpu",
      `a hung GPU read times out into the CPU fallback: ${hungNotice}`,
    );
    await hung.close();
  }
  check(errors.length === 0, `no page errors ${errors.join("; ")}`);
  console.log(`e2e ${mode}: passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  await close();
}
