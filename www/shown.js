// What the teaching and metrics views show: the update just made, or after a model switch or an
// undo the last pick that trained the policy.
import { callWithFallback } from "./models.js";
import { learnt } from "./state.js";
import { renderMetrics } from "./views/metrics.js";
import { renderTeaching } from "./views/teaching.js";

/** Shows `pick`'s update: its numbers, its tokens' `scores`, and `metrics` of its last update. */
export function showPick(pick, scores, metrics, updates) {
  renderTeaching({ pick, scores });
  renderMetrics({ metrics, updates });
}

/** Shows the last learnt pick (its token scores under the policy now), or nothing. */
export async function showLast() {
  const last = learnt().pop();
  if (!last) {
    renderTeaching(null);
    renderMetrics(null);
    return;
  }
  const updates = last.config?.steps_per_pair ?? 1;
  renderMetrics({ metrics: last.metrics, updates });
  renderTeaching({ pick: last, scores: await callWithFallback("scores", last) });
}
