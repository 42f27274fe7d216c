// IndexedDB: every pick (appended as pending before its update runs), the latest checkpoint
// (policy weights or LoRA adapter + optimizer state), the checkpoints that undo the last updates,
// and the model folders a user imported (by content hash, listed and deletable).
// A pick's result and the checkpoint that includes it are written in one transaction, so a
// stored pick is either pending (its update is not in the checkpoint: it is applied again at
// start-up) or in the checkpoint; never learnt in the history but missing from the policy.
const DB = "webdpo";
const VERSION = 3;

// Undo across reloads: before a pick's checkpoint replaces the one before it, that one is kept
// (keyed by the model and the update count it undoes), up to UNDO_DEPTH of them and UNDO_BYTES
// per model; a policy too large for that is undone only from the worker's memory.
const UNDO_DEPTH = 10;
const UNDO_BYTES = 128e6;

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

/** The keys of `model`'s undo checkpoints: [model, updates after the update it undoes]. */
const undoRange = (model) => IDBKeyRange.bound([model, -Infinity], [model, Infinity]);

/** What the list of stored folders shows of one, without its files. */
const folderMeta = ({ name, label, lora, files, savedAt }) => ({
  name,
  label,
  lora: lora ?? null,
  files: files.length,
  bytes: files.reduce((n, f) => n + f.bytes.byteLength, 0),
  savedAt,
});

// What the page shows when another tab's app version and this one's meet over the database.
let told = { blocked: () => {}, replaced: () => {} };

/** `blocked()`: an older tab holds the database open, so this one waits; `replaced()`: a newer
 *  app in another tab took it, so this tab can no longer save. */
export const onVersionConflict = (listeners) => (told = listeners);

async function openDb() {
  const open = indexedDB.open(DB, VERSION);
  open.onblocked = () => told.blocked();
  open.onupgradeneeded = ({ oldVersion }) => {
    const db = open.result;
    for (const [name, options] of [
      ["picks", { keyPath: "id", autoIncrement: true }],
      ["state", undefined],
      ["models", undefined],
      ["folders", undefined],
      ["undo", undefined],
    ]) {
      if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, options);
    }
    // Folders stored before the list existed are listed too.
    if (oldVersion >= 1 && oldVersion < 3) {
      const tx = open.transaction;
      tx.objectStore("models").openCursor().onsuccess = ({ target: { result: cursor } }) => {
        if (!cursor) return;
        tx.objectStore("folders").put(
          folderMeta({ ...cursor.value, name: cursor.key }),
          cursor.key,
        );
        cursor.continue();
      };
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

/** Imported model folders: `{ name, label, files: [{name, bytes}], lora }` by name (the content
 *  hash of the files, with the LoRA setting). */
export async function modelCache() {
  const db = await openDb();
  const run = async (stores, mode, body) => {
    const tx = db.transaction(stores, mode);
    const finished = done(tx);
    const result = await body(tx);
    await finished;
    return result;
  };
  return {
    save: (entry) =>
      run(["models", "folders"], "readwrite", (tx) => {
        const stored = { ...entry, savedAt: Date.now() };
        return Promise.all([
          request(tx.objectStore("models").put(stored, entry.name)),
          request(tx.objectStore("folders").put(folderMeta(stored), entry.name)),
        ]);
      }),
    load: (name) =>
      run(["models"], "readonly", (tx) => request(tx.objectStore("models").get(name))),
    /** The stored folders (without their files), newest first. */
    list: async () =>
      (
        await run(["folders"], "readonly", (tx) => request(tx.objectStore("folders").getAll()))
      ).sort((a, b) => b.savedAt - a.savedAt),
    /** Deletes a folder's files and its training state; its pairs and ratings stay (they show
     *  again when the same files are brought back). */
    remove: (name) =>
      run(["models", "folders", "state", "undo"], "readwrite", (tx) =>
        Promise.all([
          request(tx.objectStore("models").delete(name)),
          request(tx.objectStore("folders").delete(name)),
          request(tx.objectStore("state").delete(name)),
          request(tx.objectStore("undo").delete(undoRange(name))),
        ]),
      ),
  };
}

const checkpointBytes = (c) => (c.weights?.byteLength ?? 0) + (c.optimizer?.byteLength ?? 0);

/** In `tx`: keeps `model`'s checkpoint before `checkpoint` replaces it, so that the update to
 *  `checkpoint` (from pick `pick`, after `from` updates) can be undone after a reload; drops the
 *  oldest past the caps. */
async function keepForUndo(tx, model, checkpoint, { keep: pick, from }) {
  const undo = tx.objectStore("undo");
  const before = await request(tx.objectStore("state").get(model));
  // Only the state right before this update undoes it (not an older one: the checkpoints of the
  // updates between may have been deferred).
  const usable = before
    ? before.reference === checkpoint.reference && before.steps === from
    : from === 0;
  const depth = Math.min(
    UNDO_DEPTH,
    Math.floor(UNDO_BYTES / Math.max(1, checkpointBytes(checkpoint))),
  );
  if (!usable || depth === 0) return request(undo.delete(undoRange(model)));
  // No checkpoint before: the update started from the reference with a fresh optimizer.
  const entry = before ? { ...before, pick } : { fresh: true, steps: 0, pick };
  await request(undo.put(entry, [model, checkpoint.steps]));
  const keys = await request(undo.getAllKeys(undoRange(model)));
  await Promise.all(
    keys.slice(0, Math.max(0, keys.length - depth)).map((k) => request(undo.delete(k))),
  );
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
    /** In one transaction: the rows in `put` written, the ids in `remove` deleted, `checkpoint`
     *  (when given) as this model's training state, and the undo checkpoints changed as `undo`
     *  says: `{ keep: pick, from }` keeps the one replaced (the update from that pick, after
     *  `from` updates, can be undone),
     *  `{ drop: steps }` drops the one that undid the update to `steps` (it was undone),
     *  `{ clear: true }` drops them all (the updates since cannot be undone one by one). */
    commit: ({ put = [], remove = [], checkpoint = null, undo = null }) =>
      run(["picks", "state", "undo"], "readwrite", async (tx) => {
        const rows = tx.objectStore("picks");
        if (undo?.keep !== undefined && checkpoint) await keepForUndo(tx, model, checkpoint, undo);
        if (undo?.drop !== undefined)
          await request(tx.objectStore("undo").delete([model, undo.drop]));
        if (undo?.clear) await request(tx.objectStore("undo").delete(undoRange(model)));
        await Promise.all([
          ...put.map((row) => request(rows.put(row))),
          ...remove.map((id) => request(rows.delete(id))),
          checkpoint &&
            request(
              tx.objectStore("state").put({ ...checkpoint, model, savedAt: Date.now() }, model),
            ),
        ]);
      }),
    /** The stored checkpoint that undoes the update to `steps` (`{weights, optimizer, steps,
     *  pick}`, or `{fresh, pick}` for the reference), or undefined. */
    undoFrom: (steps) =>
      run(["undo"], "readonly", (tx) => request(tx.objectStore("undo").get([model, steps]))),
    /** Whether a stored checkpoint undoes the update to `steps`. */
    canUndo: async (steps) =>
      (await run(["undo"], "readonly", (tx) =>
        request(tx.objectStore("undo").count([model, steps])),
      )) > 0,
    /** Every pick of this model, oldest first. */
    picks: async () =>
      (await picks("readonly", (s) => request(s.getAll()))).filter((p) => p.model === model),
    loadState: () =>
      run(["state"], "readonly", (tx) => request(tx.objectStore("state").get(model))),
  };
}
