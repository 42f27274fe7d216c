// The offline release: a hash over every file the service worker keeps (www/app-files.js),
// written to www/release.js, which www/sw.js imports. Run by scripts/build-web.sh.
//   node scripts/release.mjs
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const self = {};
new Function("self", readFileSync("www/app-files.js", "utf8"))(self);
const hash = createHash("sha256");
for (const file of self.APP_FILES) {
  const path = file === "./" ? "www/index.html" : file.startsWith("pkg/") ? file : `www/${file}`;
  hash.update(`${file}\0`);
  hash.update(readFileSync(path));
}
const release = hash.digest("hex").slice(0, 16);
const text =
  "// Written by scripts/release.mjs: the release of the files www/sw.js keeps offline.\n" +
  `self.RELEASE = "${release}";\n`;
// Rewritten only when the release changed: its date is part of the server's validator.
if (!existsSync("www/release.js") || readFileSync("www/release.js", "utf8") !== text)
  writeFileSync("www/release.js", text);
console.log(`release.mjs: release ${release} (${self.APP_FILES.length} files)`);
