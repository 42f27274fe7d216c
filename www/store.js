// IndexedDB: every pick (written before its update runs) and the latest training state
// (policy weights + optimizer state, written after each update). A reload restores both.
const DB = "webdpo";
const VERSION = 1;

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

export async function openStore(model) {
  const open = indexedDB.open(DB, VERSION);
  open.onupgradeneeded = () => {
    open.result.createObjectStore("picks", { keyPath: "id", autoIncrement: true });
    open.result.createObjectStore("state");
  };
  const db = await request(open);
  const run = async (stores, mode, body) => {
    const tx = db.transaction(stores, mode);
    const finished = done(tx);
    const result = await body(tx);
    await finished;
    return result;
  };
  const picks = (mode, body) => run(["picks"], mode, (tx) => body(tx.objectStore("picks")));
  return {
    /** Adds a pick; returns it with its id. */
    addPick: (pick) => picks("readwrite", async (s) => ({ ...pick, id: await request(s.add(pick)) })),
    /** Adds several picks in one transaction (an import: all or nothing). */
    addPicks: (list) => picks("readwrite", (s) => Promise.all(list.map(async (p) => ({ ...p, id: await request(s.add(p)) })))),
    putPick: (pick) => picks("readwrite", (s) => request(s.put(pick))),
    deletePick: (id) => picks("readwrite", (s) => request(s.delete(id))),
    /** Every pick of this model, oldest first. */
    picks: async () => (await picks("readonly", (s) => request(s.getAll()))).filter((p) => p.model === model),
    saveState: (state) => run(["state"], "readwrite", (tx) => request(tx.objectStore("state").put({ ...state, model, savedAt: Date.now() }, model))),
    loadState: () => run(["state"], "readonly", (tx) => request(tx.objectStore("state").get(model))),
  };
}
