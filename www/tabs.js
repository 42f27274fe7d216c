// One trainer across this origin's tabs: the tab holding the Web Lock `LOCK` trains and writes
// IndexedDB; any other tab watches. A watching tab shows the trainer's history as it grows (each
// commit is announced on a BroadcastChannel), and becomes the trainer when the trainer's tab
// closes or when its user takes over (the lock stolen: the other tab then watches).
const LOCK = "webdpo-trainer";
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("webdpo") : null;

// What the page does on becoming the trainer or a watcher: `{ becomeTrainer, becomeWatcher }`.
let roles = null;
// Whether this tab has a request queued for when the lock is free.
let queued = false;

/** Holds the lock from when `options` grant it until the tab closes or another tab steals it
 *  (then `lost`); `granted` runs once it is held. Resolves to false if it was not available. */
const hold = (options, granted) =>
  navigator.locks
    .request(LOCK, options, async (lock) => {
      if (!lock) return false;
      await granted();
      await new Promise(() => {});
    })
    .catch((e) => {
      if (e.name !== "AbortError") return console.error(e);
      roles.becomeWatcher();
      queue();
    });

/** Waits for the lock (the trainer's tab closing), once. */
function queue() {
  if (queued) return;
  queued = true;
  hold({}, () => ((queued = false), roles.becomeTrainer()));
}

/** Makes this tab the trainer if no other tab is (resolves to true), else a watcher (false) that
 *  becomes the trainer once the trainer's tab closes. */
export function claim(pageRoles) {
  roles = pageRoles;
  // Without Web Locks (an old browser) each tab is on its own, as before.
  if (!navigator.locks) return Promise.resolve(true);
  return new Promise((resolve) =>
    hold({ ifAvailable: true }, () => resolve(true)).then((held) => {
      if (held !== false) return;
      resolve(false);
      queue();
    }),
  );
}

/** Takes the lock from the tab that holds it, which then watches. */
export const takeOver = () => hold({ steal: true }, () => roles.becomeTrainer());

/** Tells the other tabs that `model`'s stored rows or checkpoint changed. */
export const announce = (model, steps) => channel?.postMessage({ changed: model, steps });

/** `listener({changed, steps})` hears of other tabs' commits. */
export const listenTabs = (listener) =>
  channel?.addEventListener("message", (e) => listener(e.data));
