// How the objective weighs a pick: its loss and the weight of its gradient (how hard the update
// pushes: −∂loss/∂h) as functions of the margin h (h̄, per token, for the averaged losses; the
// log-ratio r for a rating), next to DPO's sigmoid, with this pick's value marked. Only the losses
// that are functions of that one number are drawn; the others are named with where to read them.
import { $, fmt } from "./dom.js";

const softplus = (x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
const sigma = (x) => 1 / (1 + Math.exp(-x));

/** The loss of one pick as a function of its number, and that number's name, or null. */
function curveOf(pick, scores) {
  const { trainer = "dpo" } = pick.config;
  if (pick.values.r !== undefined) {
    const { beta, loss_type, desirable_weight: wd, undesirable_weight: wu } = pick.config.kto;
    const z0 = loss_type === "kto" ? pick.values.kl : 0;
    const loss = pick.label
      ? (r) => wd * (1 - sigma(beta * (r - z0)))
      : (r) => wu * (1 - sigma(beta * (z0 - r)));
    return { loss, x: pick.values.r, name: "r", beta, sign: pick.label ? 1 : -1 };
  }
  if (trainer !== "dpo") return null;
  const { beta, label_smoothing: eps, discopop_tau: tau, loss_type } = pick.config.dpo;
  const losses = [loss_type].flat();
  if (losses.length !== 1) return null;
  const { pc, pr, rc, rr } = pick.values;
  const hBar = (pc - rc) / scores.chosen.tokens.length - (pr - rr) / scores.rejected.tokens.length;
  const byH = {
    sigmoid: (h) => softplus(-beta * h),
    hinge: (h) => Math.max(0, 1 - beta * h),
    robust: (h) => ((1 - eps) * softplus(-beta * h) - eps * softplus(beta * h)) / (1 - 2 * eps),
    discopop: (h) => {
      const m = sigma((beta * h) / tau);
      return softplus(-beta * h) * (1 - m) + Math.exp(-beta * h) * m;
    },
  };
  const byHBar = {
    ipo: (x) => (x - 1 / (2 * beta)) ** 2,
    sigmoid_norm: (x) => softplus(-beta * x),
  };
  const [name] = losses;
  if (byH[name]) return { loss: byH[name], x: pick.values.h, name: "h", beta, sign: 1 };
  if (byHBar[name]) return { loss: byHBar[name], x: hBar, name: "h̄", beta, sign: 1 };
  return null;
}

let chart = null;

/** Draws `pick`'s curve (its token `scores` give h̄), or hides the figure for a loss that is not
 *  a function of one number. */
export function renderWeighing(pick, scores) {
  const curve = curveOf(pick, scores);
  const figure = $("weighing");
  figure.hidden = !curve;
  if (!curve) return;
  const { loss, x: at, name, beta, sign } = curve;
  const span = Math.max(4 / beta, 1.5 * Math.abs(at), 1);
  const xs = Array.from({ length: 121 }, (_, i) => -span + (2 * span * i) / 120);
  xs.push(at);
  xs.sort((a, b) => a - b);
  const step = span / 1e4;
  // The gradient's weight: how much a step changes the loss per unit of h (or r), in the
  // direction the pick wants (up for 👍 and pairs, down for 👎).
  const weight = (x) => (sign * -(loss(x + step) - loss(x - step))) / (2 * step);
  const data = [
    xs,
    xs.map(loss),
    xs.map(weight),
    name === "r" ? xs.map(() => null) : xs.map((h) => softplus(-beta * h)),
    xs.map((x) => (x === at ? loss(at) : null)),
  ];
  $("weighing-caption").textContent =
    `The loss and its gradient's weight as functions of ${name}; this one's ${name} = ${fmt(at)} ` +
    `(loss ${fmt(loss(at))}, weight ${fmt(weight(at))}).`;
  const target = $("chart-weighing");
  chart?.destroy();
  chart = new uPlot(
    {
      width: Math.max(280, target.clientWidth),
      height: 190,
      scales: { x: { time: false }, w: {} },
      // The weight on its own axis (right): β scales it far below the loss.
      axes: [
        { label: name, size: 36 },
        { size: 52 },
        { scale: "w", side: 1, size: 52, grid: { show: false }, stroke: "#b45309" },
      ],
      legend: { live: false },
      series: [
        { label: name },
        { label: "loss", stroke: "#1d4ed8", width: 2 },
        { label: "gradient weight (right)", stroke: "#b45309", width: 2, dash: [4, 4], scale: "w" },
        { label: "DPO sigmoid loss", stroke: "#9ca3af", width: 1 },
        {
          label: "this one",
          stroke: "#111827",
          points: { show: true, size: 8 },
          paths: () => null,
        },
      ],
    },
    data,
    target,
  );
  target.dataset.x = String(at);
}
