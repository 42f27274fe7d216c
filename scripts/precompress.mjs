// Writes a brotli copy (quality 11) beside each file the app downloads, for scripts/serve.py to
// send to browsers that accept `br`; skips copies that are already newer than their file.
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants } from "node:zlib";

const COMPRESSIBLE = /\.(wasm|js|mjs|css|html|json|safetensors|svg)$/;

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (COMPRESSIBLE.test(entry.name)) yield path;
  }
}

let total = 0;
for (const dir of process.argv.slice(2)) {
  for (const path of files(dir)) {
    const target = `${path}.br`;
    let fresh = false;
    try {
      fresh = statSync(target).mtimeMs >= statSync(path).mtimeMs;
    } catch {}
    if (!fresh) {
      const bytes = readFileSync(path);
      writeFileSync(
        target,
        brotliCompressSync(bytes, {
          params: {
            [constants.BROTLI_PARAM_QUALITY]: 11,
            [constants.BROTLI_PARAM_LGWIN]: 24,
            [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
          },
        }),
      );
    }
    total += statSync(target).size;
  }
}
console.log(`brotli copies: ${(total / 1e6).toFixed(2)} MB in all`);
