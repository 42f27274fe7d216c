// Offline after the first load: every file the app needs is kept in Cache Storage. Requests go to
// the network first (so a rebuilt app is used at once; unchanged files revalidate with a 304) and
// fall back to the cache when the network is unavailable.
const CACHE = "webdpo-app";
const APP = [
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

self.addEventListener("install", (e) =>
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(APP))
      .then(() => self.skipWaiting()),
  ),
);
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) {
      // Store only what changed: most loads are 304 revalidations of the same bytes.
      const cached = await cache.match(request);
      if (!cached || cached.headers.get("etag") !== response.headers.get("etag"))
        await cache.put(request, response.clone());
    }
    return response;
  } catch (offline) {
    const cached = await cache.match(request, { ignoreSearch: true });
    if (cached) return cached;
    throw offline;
  }
}

self.addEventListener("fetch", (e) => {
  if (e.request.method === "GET" && new URL(e.request.url).origin === location.origin)
    e.respondWith(networkFirst(e.request));
});
