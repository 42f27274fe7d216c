// The metrics table: TRL's DPO metrics of the last update, as the step report names them.
import { $, el, fmt } from "./dom.js";

/** Shows `shown` ({ metrics, updates }) or, when null, an empty table. */
export function renderMetrics(shown) {
  if (!shown) return $("metrics").tBodies[0].replaceChildren();
  const rows = Object.entries(shown.metrics).filter(([, v]) => v !== null && v !== undefined);
  rows.push(["updates this pick", shown.updates]);
  $("metrics").tBodies[0].replaceChildren(
    ...rows.map(([k, v]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, k),
        el("td", {}, Number.isInteger(v) ? String(v) : fmt(v)),
      ),
    ),
  );
}
