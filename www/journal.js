// The journal: picks, ratings and imported rows are appended to IndexedDB as pending before
// their update runs; an update's result is committed together with the checkpoint that includes
// it (store.js). At start-up the pending rows, the updates a closed or crashed page never
// committed, are applied again in the order they were made, from the last checkpoint: on the
// CPU the update is deterministic, so the state after a crash is the state before it.
import { callWithFallback } from "./models.js";
import { isRating, state } from "./state.js";
import { announce } from "./tabs.js";
import { renderStorage } from "./views/data.js";
import { status } from "./views/dom.js";

/** Refuses to write from a tab that another tab took training from. */
function writer() {
  if (!state.trainer)
    throw new Error(
      "another tab took over training; what was stored before is kept and learnt there",
    );
}

/** Appends `rows` (of this model; `pending` unless they have nothing to learn now) in one
 *  transaction; returns them with their ids. */
export function append(rows, { pending = true } = {}) {
  writer();
  const time = Date.now();
  return state.store.addPicks(
    rows.map((row) => ({ ...row, model: state.model.name, time, ...(pending && { pending }) })),
  );
}

// Rows whose update is in the worker's state but whose commit failed (storage full): the next
// checkpoint includes their updates, so it settles them too (else they would apply twice).
const unsettled = new Map();

/** Commits the worker's training state `saved` (absent when nothing changed) with the rows it
 *  settles (`put`, no longer pending), the rows it removes and the change to the stored undo
 *  checkpoints (`undo`, store.js), in one transaction. `deferred`: the rows in `put` are learnt
 *  in the worker (after `steps` updates) but the checkpoint waits; they are written with what
 *  they learnt and stay pending until a checkpoint includes them. */
export async function commit(
  saved,
  { put = [], remove = [], undo = null, deferred = false, steps } = {},
) {
  writer();
  for (const id of remove) unsettled.delete(id);
  if (deferred) for (const row of put) unsettled.set(row.id, row);
  if (saved) put = [...new Set([...unsettled.values(), ...put])];
  const checkpoint = saved && {
    weights: saved.weights,
    optimizer: saved.optimizer,
    steps: saved.steps,
    reference: state.model.fingerprint,
  };
  const rows = put.map(({ pending: _, ...row }) => (deferred ? { ...row, pending: true } : row));
  try {
    await state.store.commit({ put: rows, remove, checkpoint, undo: saved ? undo : null });
  } catch (e) {
    // The worker's state has the update all the same: the page shows it as it is.
    if (saved) for (const row of put) unsettled.set(row.id, row);
    if (saved) state.info.steps = saved.steps;
    throw e;
  }
  if (saved) unsettled.clear();
  if (!deferred) for (const row of put) delete row.pending;
  state.info.steps = saved?.steps ?? steps ?? state.info.steps;
  state.storedUndo = await state.store.canUndo(state.info.steps);
  announce(state.model.name, state.info.steps);
  renderStorage();
}

/** What the update of a pick computed, from its first step report (before the update), and the
 *  KL(π‖π_ref) of its two samples (`kl`: the core's full-vocabulary estimate). */
export function pickValues(report, kl) {
  const v = report.values;
  const values = {
    pc: v.policy_chosen[0],
    pr: v.policy_rejected[0],
    rc: v.reference_chosen[0],
    rr: v.reference_rejected[0],
    h: v.h[0],
    sigma: v.sigma[0],
    loss: v.losses[0],
    logOdds: v.log_odds?.[0],
  };
  return { metrics: report.metrics, values, kl: kl.mean, klStderr: kl.stderr };
}

/** What the update of a rating computed, from its first report (the rating is row 0). */
export function ratingValues(report) {
  const v = report.values;
  const [policy, reference] = [v.policy[0], v.reference[0]];
  return {
    metrics: report.metrics,
    values: {
      policy,
      reference,
      r: policy - reference,
      kl: v.kl,
      loss: v.losses[0],
      batch: v.labels.length,
    },
  };
}

/** The update of the stored pick `pick`: the worker's reply, with the pick's values set. */
export async function learnPick(pick) {
  const { prompt, chosen, rejected } = pick;
  const reply = await callWithFallback("prefer", { prompt, chosen, rejected, pick: pick.id });
  Object.assign(pick, pickValues(reply.reports[0], reply.kl), { config: state.info.trainConfig });
  const skipped = reply.reports.find((r) => r.skipped)?.skipped;
  if (!reply.applied) pick.skipped = skipped;
  return { ...reply, skipped };
}

/** The update of the stored rating `rated` (KTO, with the recent ratings as its batch); with no
 *  reports it waits for a second rating. Returns the worker's reply and the rows it settled. */
export async function learnRating(rated) {
  const { prompt, completion, label } = rated;
  const reply = await callWithFallback("rate", { prompt, completion, label, pick: rated.id });
  if (reply.reports.length === 0) {
    rated.waiting = true;
    return { ...reply, settled: [rated] };
  }
  // Ratings that waited for this batch are learnt with it.
  const waited = state.ratings.filter((r) => r.waiting);
  for (const r of waited) delete r.waiting;
  Object.assign(rated, ratingValues(reply.reports[0]), { config: state.info.trainConfig });
  const skipped = reply.reports.find((r) => r.skipped)?.skipped;
  if (!reply.applied) rated.skipped = skipped;
  return { ...reply, skipped, settled: [...waited, rated] };
}

/** One pass over stored `rows` (pairs, or ratings for KTO), with progress. */
export function trainOnRows(rows, ratings, onProgress) {
  if (!ratings)
    return callWithFallback(
      "trainOn",
      { pairs: rows.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected })) },
      onProgress,
    );
  const batch = state.info.trainConfig.rating_batch;
  return callWithFallback(
    "trainOnRatings",
    {
      ratings: rows.map(({ prompt, completion, label }) => ({ prompt, completion, label })),
      batch,
    },
    onProgress,
  );
}

/** Applies the pending rows of this model again, oldest first: a pick or rating as its own
 *  update, an imported batch as one pass. Returns how many rows it applied. */
export async function replay() {
  const pending = [...state.picks, ...state.ratings]
    .filter((row) => row.pending)
    .sort((a, b) => a.id - b.id);
  for (let i = 0; i < pending.length;) {
    const row = pending[i];
    status(`Applying what was saved but not yet learnt: ${i + 1} of ${pending.length}…`, {
      progress: i / pending.length,
    });
    if (row.source === "import") {
      // The rest of the same import: same kind, consecutive ids.
      let j = i + 1;
      while (
        j < pending.length &&
        pending[j].source === "import" &&
        isRating(pending[j]) === isRating(row) &&
        pending[j].id === pending[j - 1].id + 1
      )
        j++;
      const rows = pending.slice(i, j);
      const { saved } = await trainOnRows(rows, isRating(row));
      await commit(saved, { put: rows, undo: { clear: true } });
      i = j;
    } else if (isRating(row)) {
      const { saved, settled, deferred, steps } = await learnRating(row);
      const undo = { keep: row.id, from: state.info.steps };
      await commit(saved, { put: settled, undo, deferred, steps });
      i++;
    } else {
      const { saved, deferred, steps } = await learnPick(row);
      const undo = { keep: row.id, from: state.info.steps };
      await commit(saved, { put: [row], undo, deferred, steps });
      i++;
    }
  }
  return pending.length;
}
