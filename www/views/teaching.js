// The teaching view: the DPO loss written out with one pick's numbers (h and σ(β·h) as the update
// computed them, from its step report), and log π − log π_ref of every token of both responses.
import { $, el, fmt } from "./dom.js";

/** Shows `teaching` ({ pick, scores }) or, when null, the empty view. A pick stored by an older
 *  version of the app lacks h, and is not taught again. */
export function renderTeaching(teaching) {
  const h = teaching?.pick.values.h;
  $("teach-empty").hidden = h !== undefined;
  $("teach-body").hidden = h === undefined;
  if (h === undefined) return;
  $("formula").replaceChildren(...formula(teaching.pick, teaching.scores));
  tokens($("tokens-chosen"), teaching.scores.chosen);
  tokens($("tokens-rejected"), teaching.scores.rejected);
}

const line = (...parts) => el("div", { class: "line" }, ...parts);
const num = (x, cls = "") => el("span", { class: `num ${cls}` }, fmt(x));
const sym = (s) => el("span", { class: "sym" }, s);
const muted = (text) => line(el("span", { class: "muted" }, text));

/** The loss with β, h and σ filled in: written out for the classic losses, by name and value for
 *  the others (their formulas are in the README's objective table). */
function lossLine({ losses, beta, eps, h, hBar, sigma, loss }) {
  switch (losses.length === 1 ? losses[0] : null) {
    case "sigmoid":
      return [
        sym("loss = −log σ(β·h) = −log σ("),
        num(beta),
        " × ",
        num(h),
        ") = −log ",
        num(sigma),
        " = ",
        num(loss, "result"),
      ];
    case "ipo":
      return [
        sym("loss = (h̄ − 1/(2β))² = ("),
        num(hBar),
        " − ",
        num(1 / (2 * beta)),
        ")² = ",
        num(loss, "result"),
      ];
    case "hinge":
      return [
        sym("loss = max(0, 1 − β·h) = max(0, 1 − "),
        num(beta),
        " × ",
        num(h),
        ") = ",
        num(loss, "result"),
      ];
    case "robust":
      return [
        sym(`loss = (−(1−ε)·log σ(β·h) + ε·log σ(−β·h)) / (1 − 2ε), ε = ${eps}: `),
        num(loss, "result"),
      ];
    default:
      return [sym(`loss (${losses.join(" + ")}) = `), num(loss, "result")];
  }
}

function formula(pick, scores) {
  const { pc, pr, rc, rr, h, sigma, loss } = pick.values;
  const { beta, label_smoothing: eps } = pick.config.dpo;
  // One loss name (picks stored before loss lists) or a list.
  const losses = [pick.config.dpo.loss_type].flat();
  const ratioW = pc - rc;
  const ratioL = pr - rr;
  // IPO compares log-ratios averaged over each response's tokens.
  const hBar = ratioW / scores.chosen.tokens.length - ratioL / scores.rejected.tokens.length;
  const ratio = (label, policy, reference, r) => [
    sym(label),
    "log π = ",
    num(policy),
    ",  log π_ref = ",
    num(reference),
    ",  log-ratio = ",
    num(r, r >= 0 ? "up" : "down"),
  ];
  const rpo = pick.config.rpo_alpha > 0 && pick.metrics.nll_loss != null;
  return [
    line(...ratio("chosen y_w:   ", pc, rc, ratioW)),
    line(...ratio("rejected y_l: ", pr, rr, ratioL)),
    line(
      sym("h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)) = "),
      num(ratioW),
      " − (",
      num(ratioL),
      ") = ",
      num(h),
    ),
    line(...lossLine({ losses, beta, eps, h, hBar, sigma, loss }), `   (β = ${beta})`),
    ...(h === 0 && losses.length === 1 && losses[0] === "sigmoid"
      ? [muted("π = π_ref here (no update yet), so h = 0, σ = 0.5 and the loss is ln 2 = 0.6931.")]
      : []),
    ...(rpo
      ? [
          line(
            sym("RPO: total loss = DPO loss + α·NLL(y_w) per token = "),
            num(loss),
            " + ",
            num(pick.config.rpo_alpha),
            " × ",
            num(pick.metrics.nll_loss),
            " = ",
            num(pick.metrics.loss, "result"),
          ),
        ]
      : []),
    line(
      sym("implicit rewards β·log-ratio: "),
      "chosen ",
      num(beta * ratioW, "up"),
      ",  rejected ",
      num(beta * ratioL, "down"),
      ",  margin ",
      num(beta * h),
    ),
    muted(
      "These are the numbers the update used (before it). " +
        "The tokens below are coloured with the policy after the update.",
    ),
  ];
}

/** Each token coloured by log π − log π_ref (its value in the tooltip). */
function tokens(target, s) {
  const deltas = s.policy.map((p, i) => p - s.reference[i]);
  const scale = Math.max(0.05, ...deltas.map(Math.abs));
  let sum = 0;
  target.replaceChildren(
    ...s.tokens.map((t, i) => {
      const d = deltas[i];
      sum += d;
      const span = el(
        "span",
        {
          class: "tok",
          title:
            `${JSON.stringify(t)}: log π = ${fmt(s.policy[i])}, ` +
            `log π_ref = ${fmt(s.reference[i])}, Δ = ${fmt(d)}`,
        },
        t,
      );
      span.style.setProperty("--a", (Math.abs(d) / scale).toFixed(3));
      span.classList.add(d >= 0 ? "up" : "down");
      return span;
    }),
  );
  target.setAttribute(
    "aria-label",
    `${s.tokens.length} tokens; summed log π − log π_ref after the update: ${fmt(sum)}`,
  );
  target.dataset.sum = String(sum);
}
