// DOM helpers for the views. Model and imported text only ever reach the DOM as text nodes or
// textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs))
    k === "class" ? (node.className = v) : node.setAttribute(k, v);
  node.append(...children.map((c) => (typeof c === "string" ? document.createTextNode(c) : c)));
  return node;
}

export const fmt = (x, digits = 4) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** "1 pair", "2 pairs". */
export const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

/** The status line under the controls, with a progress bar when `progress` is given (`null`:
 *  work of unknown length, an indeterminate bar). */
export function status(text, { progress } = {}) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === undefined;
  if (progress === null) bar.removeAttribute("value");
  else if (progress !== undefined) bar.value = progress;
}

/** The notice above the page (`null` hides it); `kind` "error" shows it as one. */
export function notice(text, kind = "info") {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text ?? "";
  n.className = `notice ${kind}`;
}

/** Saves `bytes` as a file named `name`. */
export function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
