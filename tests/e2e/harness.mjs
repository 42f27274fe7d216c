// The app served by scripts/serve.py on a free loopback port, and Debian's headless Chromium
// (playwright-core) with or without WebGPU: shared by tests/e2e/app.mjs, threads.mjs and
// bench/browser.mjs.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { chromium } from "playwright-core";

/** A free loopback port. */
export const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** The app served by scripts/serve.py: its port, its URL and how to stop it. */
export async function serveApp() {
  const port = await freePort();
  const server = spawn("python3", ["scripts/serve.py", "--port", String(port), "--quiet"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve) => server.stdout.once("data", resolve));
  return { port, url: `http://127.0.0.1:${port}`, stop: () => server.kill() };
}

/** `webgpu`: true adds --enable-unsafe-webgpu, false turns WebGPU off (the CPU fallback). */
export async function startApp({ webgpu }) {
  const { port, url, stop } = await serveApp();
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...(webgpu ? ["--enable-unsafe-webgpu"] : ["--disable-features=WebGPU"]),
    ],
  });
  return {
    port,
    browser,
    url,
    close: async () => {
      await browser.close();
      stop();
    },
  };
}
