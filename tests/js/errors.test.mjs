// The CPU fallback is chosen by the error's kind (www/errors.js), whatever its text says.
//   node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { fromMessage, isGpuFailure, toMessage } from "../../www/errors.js";

const thrown = (message, kind) => Object.assign(new Error(message), { kind });
/** As the page sees an error the worker caught: through postMessage's structured clone. */
const crossed = (e) => fromMessage(structuredClone(toMessage(e)));

test("a device error falls back, however it is worded", () => {
  for (const text of [
    "device: the GPU device was lost",
    "Adapter went away",
    "GPU hung; giving up",
  ]) {
    assert.equal(isGpuFailure(crossed(thrown(text, "device")), true), true, text);
  }
});

test("a setting error does not fall back, even when its text mentions the device", () => {
  const e = crossed(thrown("device: invalid setting: beta must be a positive number", "setting"));
  assert.equal(e.kind, "setting");
  assert.equal(isGpuFailure(e, true), false);
});

test("errors of other kinds, or without one, do not fall back", () => {
  for (const kind of ["memory", "format", "data", "io", undefined]) {
    assert.equal(isGpuFailure(crossed(thrown("device: lost", kind)), true), false, String(kind));
  }
});

test("a crashed wasm instance falls back", () => {
  const e = crossed(new WebAssembly.RuntimeError("unreachable executed"));
  assert.equal(e.fatal, true);
  assert.equal(isGpuFailure(e, true), true);
});

test("on the CPU nothing falls back", () => {
  assert.equal(isGpuFailure(crossed(thrown("lost", "device")), false), false);
});

test("the message and kind survive the crossing", () => {
  const e = crossed(thrown("bad.jsonl:2: not a pair", "data"));
  assert.deepEqual([e.message, e.kind, e.fatal], ["bad.jsonl:2: not a pair", "data", false]);
});
