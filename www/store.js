// IndexedDB: every pick (appended as pending before its update runs), the latest checkpoint
// (policy weights or LoRA adapter + optimizer state) and the model folders a user imported.
// A pick's result and the checkpoint that includes it are written in one transaction, so a
// stored pick is either pending (its update is not in the checkpoint: it is applied again at
// start-up) or in the checkpoint; never learnt in the history but missing from the policy.
const DB = "webdpo";
const VERSION = 2;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

// What the page shows when another tab's app version and this one's meet over the database.
let told = { blocked: () => {}, replaced: () => {} };

/** `blocked()`: an older tab holds the database open, so this one waits; `replaced()`: a newer
 *  app in another tab took it, so this tab can no longer save. */
export const onVersionConflict = (listeners) => (told = listeners);

async function openDb() {
  const open = indexedDB.open(DB, VERSION);
  open.onblocked = () => told.blocked();
  open.onupgradeneeded = () => {
    const db = open.result;
    for (const [name, options] of [
      ["picks", { keyPath: "id", autoIncrement: true }],
      ["state", undefined],
      ["models", undefined],
    ]) {
      if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, options);
    }
  };
  const db = await request(open);
  // A newer app in another tab needs the database at its version: let it, and say so here.
  db.onversionchange = () => {
    db.close();
    told.replaced();
  };
  return db;
}

/** Imported model folders: `{ name, files: [{name, bytes}], options }` by name. */
export async function modelCache() {
  const db = await openDb();
  const run = async (mode, body) => {
    const tx = db.transaction(["models"], mode);
    const finished = done(tx);
    const result = await body(tx.objectStore("models"));
    await finished;
    return result;
  };
  return {
    save: (entry) =>
      run("readwrite", (s) => request(s.put({ ...entry, savedAt: Date.now() }, entry.name))),
    load: (name) => run("readonly", (s) => request(s.get(name))),
  };
}

export async function openStore(model) {
  const db = await openDb();
  const run = async (stores, mode, body) => {
    const tx = db.transaction(stores, mode);
    const finished = done(tx);
    const result = await body(tx);
    await finished;
    return result;
  };
  const picks = (mode, body) => run(["picks"], mode, (tx) => body(tx.objectStore("picks")));
  return {
    /** Adds several picks in one transaction (an import: all or nothing). */
    addPicks: (list) =>
      picks("readwrite", (s) =>
        Promise.all(list.map(async (p) => ({ ...p, id: await request(s.add(p)) }))),
      ),
    putPick: (pick) => picks("readwrite", (s) => request(s.put(pick))),
    /** In one transaction: the rows in `put` written, the ids in `remove` deleted, and (when
     *  given) `checkpoint` as this model's training state. */
    commit: ({ put = [], remove = [], checkpoint = null }) =>
      run(["picks", "state"], "readwrite", async (tx) => {
        const rows = tx.objectStore("picks");
        await Promise.all([
          ...put.map((row) => request(rows.put(row))),
          ...remove.map((id) => request(rows.delete(id))),
          checkpoint &&
            request(
              tx.objectStore("state").put({ ...checkpoint, model, savedAt: Date.now() }, model),
            ),
        ]);
      }),
    /** Every pick of this model, oldest first. */
    picks: async () =>
      (await picks("readonly", (s) => request(s.getAll()))).filter((p) => p.model === model),
    loadState: () =>
      run(["state"], "readonly", (tx) => request(tx.objectStore("state").get(model))),
  };
}
