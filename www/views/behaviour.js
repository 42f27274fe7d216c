// The behaviour meter's view: what the oracle reads in fresh stories of the reference and of
// the policy now, each rate with its 95 % interval, and the KL between them.
import { $, el, plural } from "./dom.js";

/** The attributes the view and the chart show, with their labels. */
export const BEHAVIOURS = [
  ["happy", "happy endings"],
  ["on_topic", "on topic (the character and object asked for)"],
  ["kind", "kind words"],
  ["long", "long (six sentences or more)"],
  ["well_formed", "well-formed"],
];

const percent = (x) => `${Math.round(x * 100)} %`;
const rate = (p) => `${percent(p.rate)} (${Math.round(p.low * 100)}–${percent(p.high)})`;
const kl = ({ mean, stderr }) => `${mean.toFixed(2)} ± ${stderr.toFixed(2)} nats`;

/** Shows `meter` (state.behaviour): `reference` and `policy` ({behaviour, steps} or null when
 *  the policy is the reference), what is being measured, and any error. */
export function renderBehaviour(meter) {
  const shown = !$("behaviour").hidden;
  $("behaviour").hidden = !meter.on && !meter.why;
  $("behaviour-table").hidden = !meter.on;
  $("behaviour-figure").hidden = !meter.on;
  if (!meter.on) {
    $("behaviour-status").textContent = meter.why
      ? `Off on this GPU, which is emulated on the CPU (${meter.why}): one measurement would ` +
        "take minutes. A number under Settings → Stories per behaviour measurement turns it on."
      : "";
    return;
  }
  // The chart was laid out while hidden: fit it to its place now.
  if (!shown) window.dispatchEvent(new Event("resize"));
  const { reference, policy, measuring, error } = meter;
  const now = policy?.behaviour ?? reference;
  const body = $("behaviour-table").tBodies[0];
  body.replaceChildren(
    ...BEHAVIOURS.map(([key, label]) => {
      const ref = reference?.rates[key];
      const cur = now?.rates[key];
      const from = ref && cur && policy ? `${percent(ref.rate)} → ` : "";
      return el(
        "tr",
        { "data-behaviour": key },
        el("th", { scope: "row" }, label),
        el("td", {}, ref ? rate(ref) : "…"),
        el("td", {}, cur ? from + rate(cur) : "…"),
      );
    }),
    el(
      "tr",
      { "data-behaviour": "kl" },
      el("th", { scope: "row" }, "KL(π‖π_ref)"),
      el("td", {}, "0"),
      el(
        "td",
        {},
        policy ? kl(policy.behaviour.kl) : reference ? "0 (the policy is the reference)" : "…",
      ),
    ),
  );
  const n = now?.rates.samples;
  $("behaviour-status").textContent = error
    ? `The meter stopped: ${error}`
    : measuring
      ? `Measuring the ${measuring.reference ? "reference" : "policy"}: ` +
        `${measuring.measured} of ${plural(measuring.total, "story", "stories")}…`
      : n
        ? `Measured on ${plural(n, "story", "stories")}` +
          (policy ? ` after ${plural(policy.steps, "update")}.` : ".")
        : "";
}
