// What the page does about a failed call, decided on the error's `kind` (the core's ErrorKind,
// set by src/web/ on every error it throws), never on its message text.

/** A failure of the GPU while the model runs on it: a device error, or a crash of the wasm
 *  instance (a panic or a lost device inside wasm), after which it cannot be trusted again. */
export const isGpuFailure = (error, onGpu) =>
  !!onGpu && (error.fatal === true || error.kind === "device");

/** An error as it crosses from the worker to the page (postMessage drops an Error's own fields). */
export const toMessage = (e) => ({
  error: String(e?.message ?? e),
  kind: e?.kind ?? null,
  fatal: e instanceof WebAssembly.RuntimeError,
});

/** The page's Error for a worker's message, with `kind` and `fatal` kept. */
export const fromMessage = ({ error, kind, fatal }) =>
  Object.assign(new Error(error), { kind, fatal });

/** What a failure means to the user: a full storage quota says what is kept and what to do. */
export function explain(e) {
  if (e?.name !== "QuotaExceededError") return e?.message ?? String(e);
  return (
    "this browser's storage for the page is full, so it was not saved (what was saved before " +
    "is kept, and a pick stored as pending is learnt again at the next start). Free space: " +
    "export your pairs, remove stored model folders, or train with LoRA (much smaller saves)"
  );
}
