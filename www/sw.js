// Offline after the first load: every file the app needs (app-files.js) is kept in Cache Storage
// as one release (the threaded CPU build once used), named by a hash of them all (release.js,
// written by scripts/release.mjs). A change of any file changes this worker's imports, so the
// browser installs the new release whole, beside the old one, and only then drops the old (all
// or nothing: `addAll`). Requests go to the network first (a rebuilt app is used at once;
// unchanged files revalidate with a 304); offline, they are answered from the release, so JS and
// wasm always match.
importScripts("app-files.js", "release.js");
const CACHE = `webdpo-${self.RELEASE}`;

self.addEventListener("install", (e) =>
  e.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(self.APP_FILES))
      .then(() => self.skipWaiting()),
  ),
);
self.addEventListener("activate", (e) =>
  e.waitUntil(
    caches
      .keys()
      .then((names) =>
        Promise.all(
          names.filter((n) => n.startsWith("webdpo-") && n !== CACHE).map((n) => caches.delete(n)),
        ),
      )
      .then(() => self.clients.claim()),
  ),
);

// Kept in the release when first fetched (app-files.js).
const KEPT_ON_USE = new Set(self.KEPT_ON_USE.map((f) => new URL(f, location).href));

async function networkFirst(request) {
  try {
    const response = await fetch(request);
    if (response.ok && KEPT_ON_USE.has(request.url.split("?")[0]))
      await (await caches.open(CACHE)).put(request, response.clone());
    return response;
  } catch (offline) {
    const cached = await caches.match(request, { cacheName: CACHE, ignoreSearch: true });
    if (cached) return cached;
    throw offline;
  }
}

self.addEventListener("fetch", (e) => {
  if (e.request.method === "GET" && new URL(e.request.url).origin === location.origin)
    e.respondWith(networkFirst(e.request));
});
