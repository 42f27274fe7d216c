// Nothing lost under faults, on the CPU fallback in headless Chromium:
//   node tests/e2e/durability.mjs
// A reload during a pick's update and during an import's training (held by `?hold-updates`)
// loses nothing: the pending rows are learnt at the next start. Two tabs: one trains, the other
// watches its pairs arrive, takes over, and hands back when it closes. Bad saved settings are
// dropped with a notice, never a failed start. A long pass can be cancelled. A new release
// replaces the offline copy whole. A full storage quota keeps the pick and says so. Screenshots go to artifacts/e2e/durability/.
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

const out = join("artifacts", "e2e", "durability");
mkdirSync(out, { recursive: true });
const WAIT = { timeout: 300_000 };

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const { url, browser, close } = await startApp({ webgpu: false });
const errors = [];
const started = Date.now();
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const open = async (path = "/") => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && console.log(`console: ${m.text()}`));
    await page.goto(url + path);
    return page;
  };
  const text = (page, id) => page.$eval(`#${id}`, (e) => e.textContent);
  const counts = (page) =>
    page.$eval("#picks-count", (e) => ({
      pairs: Number(e.dataset.pairs),
      learnt: Number(e.dataset.learnt),
      updates: Number(/after (\d+) update/.exec(e.textContent)?.[1]),
    }));
  /** Waits until the page trains and is free (or shows an error). */
  const ready = (page) =>
    page.waitForFunction(
      () =>
        !document.getElementById("generate").disabled ||
        (!document.getElementById("notice").hidden &&
          document.getElementById("notice").classList.contains("error")),
      null,
      WAIT,
    );
  const noError = async (page, what) =>
    check(
      await page.$eval("#notice", (n) => n.hidden || !n.classList.contains("error")),
      `${what}: no error shown (${await text(page, "notice")})`,
    );
  const generate = async (page) => {
    await page.click("#generate");
    await page.waitForFunction(() => !document.getElementById("pick-a").disabled, null, WAIT);
  };
  const statusSays = (page, words) =>
    page.waitForFunction(
      (words) => document.getElementById("status-text").textContent.includes(words),
      words,
      WAIT,
    );

  // A reload during a pick's update: the pick was stored as pending, and is learnt at the start.
  const page = await open("/?hold-updates");
  await ready(page);
  await generate(page);
  await page.keyboard.press("a");
  await statusSays(page, "Updating the policy");
  check(
    (await counts(page)).pairs === 1 && (await counts(page)).learnt === 0,
    "a pick is stored before its update (held by ?hold-updates)",
  );
  await page.goto(url + "/");
  await ready(page);
  await noError(page, "reload during an update");
  const afterPick = await counts(page);
  check(
    afterPick.pairs === 1 && afterPick.learnt === 1 && afterPick.updates === 1,
    `the pick is learnt after the reload (${await text(page, "picks-count")})`,
  );
  check(
    /1 of them saved but not yet learnt/.test(await text(page, "notice")),
    `the page says it learnt it now: ${await text(page, "notice")}`,
  );
  check(
    /loss\s*0\.6931/.test(await text(page, "metrics")),
    "its update is the first one (loss ln 2, from the reference)",
  );
  await page.screenshot({ path: join(out, "01-recovered-pick.png"), fullPage: true });

  // A reload during an import's training: the imported pairs are learnt at the start.
  const rows = [1, 2].map((i) =>
    JSON.stringify({
      prompt: `Write a story about a shy fox who finds a red kite number ${i}.`,
      chosen: "The fox was happy. The end.",
      rejected: "The fox was sad.",
    }),
  );
  writeFileSync(join(out, "two-pairs.jsonl"), rows.join("\n") + "\n");
  await page.goto(url + "/?hold-updates");
  await ready(page);
  await page.setInputFiles("#import", join(out, "two-pairs.jsonl"));
  await statusSays(page, "training on them");
  check((await counts(page)).pairs === 3, "an import's pairs are stored before its training");
  await page.goto(url + "/");
  await ready(page);
  await noError(page, "reload during an import");
  const afterImport = await counts(page);
  check(
    afterImport.pairs === 3 && afterImport.updates === 3,
    `the imported pairs are learnt after the reload (${await text(page, "picks-count")})`,
  );

  // Two tabs: the second watches, sees the first's pick arrive, takes over, and hands back.
  const second = await open("/");
  await second.waitForFunction(
    () =>
      !document.getElementById("tabs").hidden &&
      !!document.getElementById("picks-count").dataset.pairs,
    null,
    WAIT,
  );
  await second.waitForFunction(
    () => document.getElementById("status-text").textContent.includes("Another tab"),
    null,
    WAIT,
  );
  check(
    await second.$eval(
      "body",
      () =>
        ["generate", "reset", "import", "load", "undo"].every(
          (id) => document.getElementById(id).disabled,
        ) && !document.getElementById("export").disabled,
    ),
    `a second tab watches: ${await text(second, "tabs-text")}`,
  );
  check(
    await second.$eval("#behaviour", (e) => e.hidden),
    "a watching tab measures nothing (its behaviour meter is off)",
  );
  await second.screenshot({ path: join(out, "02-watching.png"), fullPage: true });
  await generate(page);
  await page.keyboard.press("b");
  await page.waitForFunction(
    () => Number(document.getElementById("picks-count").dataset.learnt) === 2,
    null,
    WAIT,
  );
  await second.waitForFunction(
    () => Number(document.getElementById("picks-count").dataset.pairs) === 4,
    null,
    WAIT,
  );
  check(
    (await counts(second)).updates === 4,
    `the watching tab shows the training tab's pick as it lands (${await text(second, "picks-count")})`,
  );
  await second.click("#take-over");
  await ready(second);
  await page.waitForFunction(() => !document.getElementById("tabs").hidden, null, WAIT);
  check(await page.$eval("#generate", (e) => e.disabled), "taking over: the first tab watches now");
  check(
    (await counts(second)).updates === 4,
    "the tab that took over trains from the last checkpoint",
  );
  await generate(second);
  await second.keyboard.press("a");
  await second.waitForFunction(
    () => Number(document.getElementById("picks-count").dataset.learnt) === 3,
    null,
    WAIT,
  );
  await noError(second, "a pick in the tab that took over");
  await second.close();
  await ready(page);
  check(
    (await page.$eval("#tabs", (e) => e.hidden)) && (await counts(page)).updates === 5,
    `when the training tab closes the other trains again, from its checkpoint (${await text(page, "picks-count")})`,
  );

  // Saved settings that do not parse, or are out of range, are dropped with a notice.
  await page.evaluate(() => {
    localStorage.setItem("webdpo.sampling", "{not json");
    localStorage.setItem("webdpo.train", "[1, 2]");
  });
  await page.reload();
  await ready(page);
  const notice = await text(page, "notice");
  check(
    ["Not used, and forgotten", "sampling settings (", "training settings (not a set"].every((w) =>
      notice.includes(w),
    ),
    `broken saved settings: the app starts and says so (${notice})`,
  );
  await page.evaluate(() =>
    localStorage.setItem("webdpo.sampling", JSON.stringify({ temperature: 1000 })),
  );
  await page.reload();
  await ready(page);
  check(
    /temperature must be a number from 0 to 10/.test(await text(page, "notice")) &&
      (await page.$eval("#temperature", (e) => e.value)) === "1",
    "an out-of-range saved temperature is dropped, the default used",
  );
  await page.fill("#lr", "");
  await page.dispatchEvent("#settings", "change");
  check(
    /Learning rate is empty/i.test(await text(page, "settings-error")) &&
      (await page.$eval("#lr", (e) => e.value)) !== "",
    `an emptied learning rate is refused and the old value kept (${await text(page, "settings-error")})`,
  );

  // Out of range: refused by the core with its reason, the setting in use kept.
  for (const [id, value, reason] of [
    ["steps", "100000", "steps_per_pair must be at most 1000"],
    ["beta", "1e308", "beta must be at most 1000"],
  ]) {
    const before = await page.$eval(`#${id}`, (e) => e.value);
    await page.fill(`#${id}`, value);
    await page.dispatchEvent("#settings", "change");
    await page.waitForFunction(
      (id) => document.getElementById("settings-error").textContent !== "",
      id,
      WAIT,
    );
    const said = await text(page, "settings-error");
    check(
      said.includes(reason) && (await page.$eval(`#${id}`, (e) => e.value)) === before,
      `${id} = ${value} is refused, ${before} kept (${said})`,
    );
  }
  // A learning rate of one's own survives a change of optimizer; the usual one follows it.
  await page.fill("#lr", "0.0123");
  await page.dispatchEvent("#settings", "change");
  await page.selectOption("#optim", "adamw");
  await page.waitForFunction(() => document.getElementById("settings-error").textContent === "");
  check(
    (await page.$eval("#lr", (e) => e.value)) === "0.0123",
    "a custom learning rate is kept when the optimizer changes",
  );

  // A long import's training is cancelled: the updates made are kept, the rest stays stored
  // (not pending: a reload does not train it).
  const many = Array.from({ length: 60 }, (_, i) =>
    JSON.stringify({ prompt: `Tell me a story number ${i}.`, chosen: "Happy.", rejected: "Sad." }),
  );
  writeFileSync(join(out, "sixty-pairs.jsonl"), many.join("\n") + "\n");
  await page.setInputFiles("#import", join(out, "sixty-pairs.jsonl"));
  await page.waitForFunction(() => !document.getElementById("cancel").hidden, null, WAIT);
  await statusSays(page, "1 of 60 pairs");
  await page.click("#cancel");
  await statusSays(page, "cancelled after");
  const said = await text(page, "status-text");
  const trained = Number(/cancelled after (\d+) of 60/.exec(said)?.[1]);
  check(trained >= 1 && trained < 60, `an import's training is cancelled: ${said}`);
  const { updates: cancelledAt } = await counts(page);
  await page.reload();
  await ready(page);
  const afterCancel = await counts(page);
  check(
    afterCancel.pairs === 65 &&
      afterCancel.updates === cancelledAt &&
      !/learnt now/.test(await text(page, "notice")),
    `after a reload the cancelled pass's updates are kept and the rest is not trained ` +
      `(${await text(page, "picks-count")}; ${await text(page, "notice")})`,
  );

  // A new release with the tab open: installed whole beside the old one, the old dropped, the
  // tab told. (The release's name is what scripts/release.mjs wrote, changed for the test.)
  const releaseFile = join("www", "release.js");
  const release = readFileSync(releaseFile, "utf8");
  try {
    await page.waitForFunction(() => !!navigator.serviceWorker.controller, null, WAIT);
    const [old] = await page.evaluate(() => caches.keys());
    writeFileSync(releaseFile, release.replace(/"[0-9a-f]+"/, '"0000000000000000"'));
    await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r.update()));
    await page.waitForFunction(
      () =>
        /new version of webdpo is installed/.test(document.getElementById("notice").textContent),
      null,
      WAIT,
    );
    // The old release is dropped once the new one is active.
    let names = [];
    for (let tries = 0; tries < 60; tries++) {
      names = await page.evaluate(() => caches.keys());
      if (names.length === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    check(
      old?.startsWith("webdpo-") && names.join() === "webdpo-0000000000000000",
      `a new release replaces the offline copy whole (${old} → ${names}) and the tab is told`,
    );
  } finally {
    writeFileSync(releaseFile, release);
  }

  // A full quota (set through the DevTools protocol): the pick is kept and said so; once there
  // is space the next checkpoint settles it, so a reload does not learn it twice.
  const full = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const tight = await full.newPage();
  tight.on("pageerror", (e) => errors.push(e.message));
  await tight.goto(url + "/");
  await ready(tight);
  // The offline copy is stored on the first load; measured before it is, the quota would be full
  // before the pick (a race the test must not run).
  await tight.evaluate(() => navigator.serviceWorker.ready);
  const devtools = await full.newCDPSession(tight);
  const { usage } = await tight.evaluate(() => navigator.storage.estimate());
  await devtools.send("Storage.overrideQuotaForOrigin", {
    origin: url,
    quotaSize: usage + 1_000_000,
  });
  await generate(tight);
  await tight.keyboard.press("a");
  await tight.waitForFunction(
    () =>
      !document.getElementById("notice").hidden && !document.getElementById("generate").disabled,
    null,
    WAIT,
  );
  const quota = await text(tight, "notice");
  const { pairs: kept } = await counts(tight);
  check(
    /storage in the browser is full/.test(quota) && kept === 1,
    `a full quota: the pick is kept (${kept} pair), and the page says what to do (${quota})`,
  );
  await tight.screenshot({ path: join(out, "03-quota.png"), fullPage: true });
  await devtools.send("Storage.overrideQuotaForOrigin", { origin: url });
  await generate(tight);
  await tight.keyboard.press("b");
  await tight.waitForFunction(
    () => Number(document.getElementById("picks-count").dataset.learnt) === 2,
    null,
    WAIT,
  );
  await noError(tight, "a pick once there is space again");
  await tight.reload();
  await ready(tight);
  const restored = await counts(tight);
  check(
    restored.updates === 2 && !/learnt now/.test(await text(tight, "notice")),
    `the checkpoint after it settled the earlier pick: ${await text(tight, "notice")}`,
  );
  await full.close();

  // Undo survives a reload: the checkpoint before each pick's update is kept in IndexedDB.
  const fresh = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const openIn = async (ctx, path) => {
    const p = await ctx.newPage();
    p.on("pageerror", (e) => errors.push(e.message));
    p.on("dialog", (d) => d.accept());
    await p.goto(url + path);
    await ready(p);
    return p;
  };
  const u = await openIn(fresh, "/");
  for (const key of ["a", "b"]) {
    await generate(u);
    await u.keyboard.press(key);
    await statusSays(u, "Learned from your pick");
  }
  await u.reload();
  await ready(u);
  check(
    !(await u.$eval("#undo", (b) => b.disabled)),
    "after a reload the last update can still be undone",
  );
  await u.click("#undo");
  await statusSays(u, "Undone");
  const once = await counts(u);
  check(
    once.pairs === 1 && once.updates === 1,
    `undo after a reload: ${await text(u, "picks-count")}`,
  );
  await u.click("#undo");
  await u.waitForFunction(
    () => document.getElementById("picks-count").dataset.pairs === "0",
    null,
    WAIT,
  );
  await ready(u);
  const twice = await counts(u);
  check(
    twice.pairs === 0 && twice.updates === 0 && (await u.$eval("#undo", (b) => b.disabled)),
    `undo again goes back to the reference: ${await text(u, "picks-count")}`,
  );
  await u.reload();
  await ready(u);
  check((await counts(u)).updates === 0, "the undone state is the one stored");

  // Checkpoints deferred (as for a large model, forced by ?checkpoint-every=3): the picks between
  // stay pending with what they learnt, and a crash before the checkpoint learns them again.
  await u.goto(url + "/?checkpoint-every=3");
  await ready(u);
  for (const key of ["a", "b"]) {
    await generate(u);
    await u.keyboard.press(key);
    await statusSays(u, "Learned from your pick");
  }
  const storedSteps = () =>
    u.evaluate(
      () =>
        new Promise((resolve) => {
          const open = indexedDB.open("webdpo");
          open.onsuccess = () => {
            const get = open.result.transaction("state").objectStore("state").get("storyworld");
            get.onsuccess = () => (open.result.close(), resolve(get.result?.steps ?? 0));
          };
        }),
    );
  check(
    (await counts(u)).updates === 2 && (await storedSteps()) === 0,
    "two picks learnt, their checkpoint deferred",
  );
  await u.goto(url + "/");
  await ready(u);
  check(
    (await counts(u)).updates === 2 &&
      /2 of them saved but not yet learnt/.test(await text(u, "notice")),
    `after a crash the deferred picks are learnt again: ${await text(u, "notice")}`,
  );
  check((await storedSteps()) === 2, "and checkpointed");

  // Imports are read in the worker under the core's caps; a refusal names the line and byte.
  const importFile = async (name, bytes) => {
    writeFileSync(join(out, name), bytes);
    await u.setInputFiles("#import", join(out, name));
    await statusSays(u, `${name} was not imported`);
    return text(u, "notice");
  };
  const row = (i) =>
    JSON.stringify({ prompt: `Tell me story ${i}.`, chosen: "Happy.", rejected: "Sad." }) + "\n";
  const latin1 = Buffer.concat([
    Buffer.from(row(0)),
    Buffer.from('{"prompt": "caf'),
    Buffer.from([0xe9]),
    Buffer.from('", "chosen": "a", "rejected": "b"}\n'),
  ]);
  const before = (await counts(u)).pairs;
  let refusal = await importFile("latin1.jsonl", latin1);
  check(
    refusal.includes(`latin1.jsonl:2: byte ${row(0).length + 15}: not UTF-8`) &&
      (await counts(u)).pairs === before,
    `bytes that are not UTF-8 are refused at their line and byte: ${refusal}`,
  );
  refusal = await importFile("long-line.jsonl", row(0) + `{"prompt": "${"x".repeat(1 << 20)}"}\n`);
  check(
    /long-line\.jsonl:2: byte \d+: the line is longer than 1 MiB/.test(refusal),
    `a line past the cap is refused: ${refusal}`,
  );
  const lines = (n) => Array.from({ length: n }, (_, i) => row(i)).join("");
  refusal = await importFile("too-many.jsonl", lines(100_001));
  check(
    /too-many\.jsonl:100001: byte \d+: more than 100000 rows/.test(refusal) &&
      (await counts(u)).pairs === before,
    `a file past the row cap is refused whole: ${refusal}`,
  );
  check(
    /at most 100,000 rows and 256 MiB/.test(await text(u, "import-limits")),
    "the page states the caps",
  );
  // At the cap: every row is stored (in one transaction), and the training pass is cancelled.
  await u.setInputFiles(
    "#import",
    (writeFileSync(join(out, "cap.jsonl"), lines(100_000)), join(out, "cap.jsonl")),
  );
  await statusSays(u, "of 100000 pairs");
  await u.click("#cancel");
  await statusSays(u, "cancelled after");
  check((await counts(u)).pairs === before + 100_000, "100,000 pairs imported and stored");
  await noError(u, "an import at the cap");

  // Model folders are known by their content: two folders of one name keep their own state,
  // both are listed, and either can be deleted.
  const fixture = join("tests", "fixtures", "hf", "gpt2");
  const folders = ["one", "two"].map((parent, i) => {
    const dir = join(out, parent, "tiny-gpt2");
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(fixture))
      if (statSync(join(fixture, f)).isFile()) copyFileSync(join(fixture, f), join(dir, f));
    const config = JSON.parse(readFileSync(join(fixture, "config.json"), "utf8"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({ ...config, layer_norm_epsilon: 1e-5 * (1 + i) }),
    );
    return dir;
  });
  for (const [i, dir] of folders.entries()) {
    await u.setInputFiles("#folder", dir);
    await u.waitForFunction(
      (n) => document.querySelectorAll("#folders li").length === n,
      i + 1,
      WAIT,
    );
    await ready(u);
  }
  const listed = () => u.$$eval("#folders li", (items) => items.map((li) => li.dataset.name));
  const names = await listed();
  check(
    names.length === 2 &&
      names[0] !== names[1] &&
      names.every((n) => /^folder:[0-9a-f]{16}:/.test(n)),
    `two folders of one name are stored apart, by content: ${names.join(", ")}`,
  );
  await u.click(`#folders li[data-name="${names[1]}"] .delete-folder`);
  await u.waitForFunction(() => document.querySelectorAll("#folders li").length === 1, null, WAIT);
  await ready(u);
  check(
    (await listed()).join() === names[0] && /tiny-gpt2/.test(await text(u, "device")),
    "a stored folder (not the one in use) is deleted",
  );
  await u.click(`#folders li[data-name="${names[0]}"] .delete-folder`);
  await u.waitForFunction(() => document.querySelectorAll("#folders li").length === 0, null, WAIT);
  await ready(u);
  check(
    !/tiny-gpt2/.test(await text(u, "device")),
    "deleting the folder in use goes back to the built-in model first",
  );
  await fresh.close();

  check(errors.length === 0, `no page errors ${errors.join(" | ")}`);
  console.log(`e2e durability: passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  await close();
}
