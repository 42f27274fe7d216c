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
    "this site's storage in the browser is full, so the last change was not saved. What was " +
    "saved before is kept, and a pick stored before its update is learnt again at the next " +
    "start. To free space: export your pairs, then delete model folders kept here (Your own " +
    "model → Delete), or train with LoRA (much smaller saves)"
  );
}
