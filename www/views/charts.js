// Charts (uPlot, vendored) of every learnt pick: loss and accuracy, the implicit rewards, the KL,
// and the behaviour meter's rates (pick 0: the reference).
import { BEHAVIOURS } from "./behaviour.js";
import { $ } from "./dom.js";

const charts = {};
const HEIGHT = 170;

const COLOURS = ["#047857", "#1d4ed8", "#7c3aed", "#b45309", "#6b7280"];

function makeChart(id, series, y = {}) {
  const target = $(id);
  const opts = {
    width: Math.max(240, target.clientWidth),
    height: HEIGHT,
    scales: { x: { time: false }, y },
    axes: [{ label: "pick", size: 36, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, { size: 52 }],
    legend: { live: false },
    series: [
      { label: "pick" },
      ...series.map(([label, stroke, dash]) => ({
        label,
        stroke,
        width: 2,
        dash,
        points: { show: true, size: 5 },
        spanGaps: true,
      })),
    ],
  };
  charts[id] = new uPlot(opts, [[], ...series.map(() => [])], target);
}

export function makeCharts() {
  makeChart("chart-loss", [
    ["loss", "#1d4ed8"],
    ["rewards/accuracies", "#6b7280", [4, 4]],
  ]);
  makeChart("chart-rewards", [
    ["rewards/chosen", "#047857"],
    ["rewards/rejected", "#b91c1c"],
    ["rewards/margins", "#7c3aed", [4, 4]],
  ]);
  makeChart("chart-kl", [
    ["KL of the pick's samples (nats)", "#b45309"],
    ["KL of fresh stories (nats)", "#0891b2", [4, 4]],
  ]);
  makeChart(
    "chart-behaviour",
    BEHAVIOURS.map(([key], i) => [key, COLOURS[i], key === "well_formed" ? [4, 4] : undefined]),
    { range: [0, 1] },
  );
  window.addEventListener("resize", () => {
    for (const [id, chart] of Object.entries(charts))
      chart.setSize({ width: Math.max(240, $(id).clientWidth), height: HEIGHT });
  });
}

/** Plots `learnt`, the picks that trained the policy, oldest first, with the behaviour
 *  measured after each (where the meter finished before the next pick) and of `reference`. */
export function renderCharts(learnt, reference) {
  const x = learnt.map((_, i) => i + 1);
  const m = (k) => learnt.map((p) => p.metrics[k]);
  charts["chart-loss"].setData([x, m("loss"), m("rewards/accuracies")]);
  charts["chart-rewards"].setData([
    x,
    m("rewards/chosen"),
    m("rewards/rejected"),
    m("rewards/margins"),
  ]);
  charts["chart-kl"].setData([
    x,
    learnt.map((p) => p.kl),
    learnt.map((p) => p.behaviour?.kl.mean ?? null),
  ]);
  for (const id of Object.keys(charts)) $(id).dataset.points = String(x.length);
  const rate = (b, key) => b?.rates[key].rate ?? null;
  charts["chart-behaviour"].setData([
    [0, ...x],
    ...BEHAVIOURS.map(([key]) => [
      rate(reference, key),
      ...learnt.map((p) => rate(p.behaviour, key)),
    ]),
  ]);
  const measured = learnt.filter((p) => p.behaviour).length + (reference ? 1 : 0);
  $("chart-behaviour").dataset.points = String(measured);
}
