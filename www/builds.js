// The two builds of the wasm module (scripts/build-web.sh). pkg/webdpo.js, single-threaded, has
// WebGPU and the CPU backend and runs on every page. pkg/threads/webdpo.js has the CPU backend
// alone, its kernels split over a pool of workers sharing its memory; shared memory needs a
// cross-origin isolated page (COOP + COEP, as scripts/serve.py sends), so it is the CPU backend
// only there, and only with cores to share.
import * as single from "./pkg/webdpo.js";

let threaded = null;

/** The build a session on `backend` ("auto", "webgpu" or "cpu") opens in: the CPU's (below) for
 *  "cpu", and for "auto" where the browser offers no WebGPU adapter (the core then runs on the
 *  CPU); otherwise the single-threaded build, which has WebGPU. */
export async function buildFor(backend, threads) {
  const noGpu = backend === "auto" && !(await navigator.gpu?.requestAdapter().catch(() => null));
  if (backend === "cpu" || noGpu) return cpuBuild(threads);
  await single.default();
  return single;
}

/** The module whose `Session`s run on the CPU: the threaded build where it can run, its pool of
 *  `threads` workers (all the cores by default) started on the first call; otherwise, or with
 *  `threads` 1, the single-threaded build. A threaded build that fails to start is reported on
 *  the console and the single-threaded one used: the CPU backend is slower, never missing. */
async function cpuBuild(threads = navigator.hardwareConcurrency) {
  await single.default();
  if (!self.crossOriginIsolated || !(threads > 1)) return single;
  threaded ??= import("./pkg/threads/webdpo.js")
    .then(async (build) => {
      await build.default();
      await build.initThreadPool(threads);
      return build;
    })
    .catch((e) => {
      console.warn(`webdpo: the threaded CPU build did not start (${e}); using one thread`);
      return single;
    });
  return threaded;
}
