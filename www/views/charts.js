// Charts (uPlot, vendored) of every learnt pick: loss and accuracy, the implicit rewards, and the
// KL estimate.
import { $ } from "./dom.js";

const charts = {};
const HEIGHT = 170;

function makeChart(id, series) {
  const target = $(id);
  const opts = {
    width: Math.max(240, target.clientWidth),
    height: HEIGHT,
    scales: { x: { time: false } },
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
  makeChart("chart-kl", [["KL estimate (nats)", "#b45309"]]);
  window.addEventListener("resize", () => {
    for (const [id, chart] of Object.entries(charts))
      chart.setSize({ width: Math.max(240, $(id).clientWidth), height: HEIGHT });
  });
}

/** Plots `learnt`: the picks that trained the policy, oldest first. */
export function renderCharts(learnt) {
  const x = learnt.map((_, i) => i + 1);
  const m = (k) => learnt.map((p) => p.metrics[k]);
  charts["chart-loss"].setData([x, m("loss"), m("rewards/accuracies")]);
  charts["chart-rewards"].setData([
    x,
    m("rewards/chosen"),
    m("rewards/rejected"),
    m("rewards/margins"),
  ]);
  charts["chart-kl"].setData([x, learnt.map((p) => p.kl)]);
  for (const id of Object.keys(charts)) $(id).dataset.points = String(x.length);
}
