// The teaching view: the objective written out with one pick's (or rating's) numbers as the update
// computed them, from its step report, and log π − log π_ref of every token of the responses.
import { $, el, fmt } from "./dom.js";
import { renderWeighing } from "./weighing.js";

/** Shows `teaching` ({ pick, scores }) or, when null, the empty view. A pick stored by an older
 *  version of the app lacks h, and is not taught again. */
export function renderTeaching(teaching) {
  const values = teaching?.pick.values;
  const shown = values?.h !== undefined || values?.r !== undefined;
  $("teach-empty").hidden = shown;
  $("teach-body").hidden = !shown;
  if (!shown) return;
  const { pick, scores } = teaching;
  const rated = values.r !== undefined;
  const trainer = pick.config.trainer ?? "dpo";
  const lines = rated
    ? ratingFormula(pick)
    : trainer === "dpo"
      ? formula(pick, scores)
      : referenceFreeFormula(pick, scores);
  $("formula").replaceChildren(...lines);
  renderWeighing(pick, scores);
  $("tokens-chosen-title").textContent = rated
    ? `The rated response (${pick.label ? "👍 desirable" : "👎 undesirable"}), token by token`
    : "Chosen, token by token";
  $("rejected-tokens").hidden = rated;
  tokens($("tokens-chosen"), scores.chosen);
  if (!rated) tokens($("tokens-rejected"), scores.rejected);
}

/** KTO (or apo_zero_unpaired) with one rating's numbers: its log-ratio r, the batch's reference
 *  point z₀, and its weighted loss. */
function ratingFormula(rating) {
  const { policy, reference, r, kl, loss, batch } = rating.values;
  const { beta, loss_type, desirable_weight, undesirable_weight } = rating.config.kto;
  const weight = rating.label ? desirable_weight : undesirable_weight;
  const w = weight === 1 ? [] : [num(weight), " × "];
  const kto = loss_type === "kto";
  const inner = kto ? (rating.label ? r - kl : kl - r) : rating.label ? r : -r;
  const lossText = kto
    ? rating.label
      ? "loss = w·(1 − σ(β·(r − z₀))) = "
      : "loss = w·(1 − σ(β·(z₀ − r))) = "
    : rating.label
      ? "loss = w·(1 − σ(β·r)) = "
      : "loss = w·σ(β·r) = w·(1 − σ(−β·r)) = ";
  return [
    line(
      sym("r = log π(y) − log π_ref(y) = "),
      num(policy),
      " − (",
      num(reference),
      ") = ",
      num(r, r >= 0 ? "up" : "down"),
    ),
    ...(kto
      ? [
          line(
            sym("z₀ = max(0, mean log π/π_ref of the batch's KL rows) = "),
            num(kl),
            `   (${batch} ratings: each prompt with the previous rating's response)`,
          ),
        ]
      : [muted("apo_zero_unpaired has no reference point: each rating is judged against 0.")]),
    line(
      sym(lossText),
      ...w,
      "(1 − σ(",
      num(beta),
      " × ",
      num(inner),
      ")) = ",
      num(loss, "result"),
      `   (β = ${beta})`,
    ),
    muted(
      rating.label
        ? "👍: the update raises log π(y) relative to the reference (above z₀ for KTO)."
        : "👎: the update lowers log π(y) relative to the reference (below z₀ for KTO).",
    ),
  ];
}

/** CPO, SimPO or ORPO with one pick's numbers: the policy's log-probs alone, no reference. */
function referenceFreeFormula(pick, scores) {
  const { pc, pr, loss } = pick.values;
  const { trainer } = pick.config;
  const { beta } = pick.config[trainer];
  const [nw, nl] = [scores.chosen.tokens.length, scores.rejected.tokens.length];
  const logp = [
    line(sym("chosen y_w:   log π = "), num(pc), `  (${nw} tokens, mean `, num(pc / nw), ")"),
    line(sym("rejected y_l: log π = "), num(pr), `  (${nl} tokens, mean `, num(pr / nl), ")"),
  ];
  const nll = pick.metrics.nll_loss;
  const body =
    trainer === "orpo"
      ? [
          line(
            sym("log odds = log(p_w/(1−p_w)) − log(p_l/(1−p_l)), p = exp(mean log π): "),
            num(pick.values.logOdds ?? NaN),
          ),
          line(
            sym("loss = NLL(y_w) − β·log σ(log odds) = "),
            num(loss, "result"),
            `   (β = ${beta})`,
          ),
        ]
      : [
          line(
            sym(
              pick.config.cpo.loss_type === "simpo"
                ? "loss = −log σ(β·(mean log π(y_w) − mean log π(y_l)) − γ) + α·NLL(y_w) = "
                : "loss = −log σ(β·(log π(y_w) − log π(y_l))) + α·NLL(y_w) = ",
            ),
            num(loss, "result"),
            `   (β = ${beta}, α = ${pick.config.cpo.cpo_alpha})`,
          ),
        ];
  return [
    ...logp,
    ...body,
    ...(nll != null ? [line(sym("NLL(y_w) per token = "), num(nll))] : []),
    muted("Reference-free: no reference model is run; only the policy's log-probs are compared."),
  ];
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
  // RPO: TRL 1.16's `sft` loss after DPO's in the list, weighted α (picks stored before: the
  // rpo_alpha setting, with the pair's loss the DPO part and the logged loss the total).
  const listRpo = losses.length === 2 && losses[0] === "sigmoid" && losses[1] === "sft";
  const oldRpo = pick.config.rpo_alpha > 0 && pick.metrics.nll_loss != null;
  const rpoAlpha = listRpo
    ? (pick.config.dpo.loss_weights?.[1] ?? 1)
    : oldRpo
      ? pick.config.rpo_alpha
      : 0;
  const [dpoPart, total] = listRpo ? [-Math.log(sigma), loss] : [loss, pick.metrics.loss];
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
    line(
      ...lossLine({
        losses: rpoAlpha ? ["sigmoid"] : losses,
        beta,
        eps,
        h,
        hBar,
        sigma,
        loss: dpoPart,
      }),
      `   (β = ${beta})`,
    ),
    ...(h === 0 && losses.length === 1 && losses[0] === "sigmoid"
      ? [muted("π = π_ref here (no update yet), so h = 0, σ = 0.5 and the loss is ln 2 = 0.6931.")]
      : []),
    ...(rpoAlpha
      ? [
          line(
            sym("RPO (sft in the loss list): total loss = DPO loss + α·NLL(y_w) per token = "),
            num(dpoPart),
            " + ",
            num(rpoAlpha),
            " × ",
            num((total - dpoPart) / rpoAlpha),
            " = ",
            num(total, "result"),
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
