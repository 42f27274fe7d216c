// One piece of work at a time: while it runs the controls are off; if it fails, the user reads
// why in the notice and nothing else changes.
import { explain } from "./errors.js";
import { learnt, rating, state } from "./state.js";
import { notice, status } from "./views/dom.js";
import { renderControls } from "./views/controls.js";

export const render = () => renderControls(state, learnt().length, rating());

/** Runs `body` as the page's one piece of work; `what` names it in a failure. */
export async function run(what, body) {
  state.busy = true;
  render();
  try {
    return await body();
  } catch (e) {
    console.error(e);
    status(`${what} failed.`);
    notice(`${what} failed: ${explain(e)}`, "error");
  } finally {
    state.busy = false;
    render();
  }
}
