// The page's side of the worker protocol: {id, op, args} out; {id, progress} while working;
// {id, ok, value | error} when done; {behaviour} unasked, from the behaviour meter. A crashed
// worker rejects every pending call as fatal.
import { fromMessage } from "./errors.js";

let worker = null;
let nextId = 1;
const pending = new Map();
let onBehaviour = () => {};

/** `listener` receives the behaviour meter's reports. */
export const listenBehaviour = (listener) => (onBehaviour = listener);

/** A fresh worker (the old one, if any, is terminated with its model). */
export function startWorker() {
  worker?.terminate();
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = ({ data }) => {
    if ("behaviour" in data) return onBehaviour(data.behaviour);
    const call = pending.get(data.id);
    if (!call) return;
    if ("progress" in data) return call.onProgress?.(data.progress);
    pending.delete(data.id);
    data.ok ? call.resolve(data.value) : call.reject(fromMessage(data));
  };
  worker.onerror = (e) => {
    for (const call of pending.values())
      call.reject(
        Object.assign(new Error(e.message || "the model worker crashed"), { fatal: true }),
      );
    pending.clear();
  };
}

export const hasWorker = () => worker !== null;

/** Runs `op` in a worker of its own, terminated after: work beside the model in use that must
 *  neither disturb it nor leave a failed GPU behind. */
export async function callAlone(op, args) {
  const alone = new Worker("worker.js", { type: "module" });
  try {
    return await new Promise((resolve, reject) => {
      alone.onmessage = ({ data }) => {
        if ("ok" in data) data.ok ? resolve(data.value) : reject(fromMessage(data));
      };
      alone.onerror = (e) =>
        reject(Object.assign(new Error(e.message || "a model worker crashed"), { fatal: true }));
      alone.postMessage({ id: 0, op, args });
    });
  } finally {
    alone.terminate();
  }
}

/** Runs `op` in the worker; `onProgress` receives what it reports on the way. */
export function call(op, args, onProgress, transfer = []) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, op, args }, transfer);
  });
}
