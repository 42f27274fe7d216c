// Every file the app needs offline: what the service worker (sw.js) keeps as one release, and
// what scripts/release.mjs hashes into that release's name. The threaded CPU build is part of the
// release but kept once a page has used it: a page on WebGPU, or one that is not cross-origin
// isolated, never loads it (www/builds.js).
self.APP_FILES = [
  "./",
  "index.html",
  "app.js",
  "actions.js",
  "client.js",
  "errors.js",
  "journal.js",
  "link.js",
  "sweep.html",
  "sweep.js",
  "sweep-worker.js",
  "models.js",
  "shown.js",
  "state.js",
  "store.js",
  "tabs.js",
  "work.js",
  "worker.js",
  "builds.js",
  "views/behaviour.js",
  "views/charts.js",
  "views/controls.js",
  "views/data.js",
  "views/dom.js",
  "views/guided.js",
  "views/metrics.js",
  "views/pair.js",
  "views/settings.js",
  "views/teaching.js",
  "views/weighing.js",
  "views/your-model.js",
  "style.css",
  "vendor/uPlot.iife.min.js",
  "vendor/uPlot.min.css",
  "pkg/webdpo.js",
  "pkg/webdpo_bg.wasm",
  "models/storyworld/config.json",
  "models/storyworld/tokenizer.json",
  "models/storyworld/model.safetensors",
];
self.KEPT_ON_USE = [
  "pkg/threads/webdpo.js",
  "pkg/threads/webdpo_bg.wasm",
  // wasm-bindgen-rayon's worker script (its folder is named by a hash wasm-bindgen computes;
  // scripts/release.mjs names any file of the builds missing from these lists).
  "pkg/threads/snippets/wasm-bindgen-rayon-38edf6e439f6d70d/src/workerHelpers.no-bundler.js",
];
