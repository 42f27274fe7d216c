// Guided mode: before an update, the page asks which response will become more likely; after
// it, the answer with the numbers (predict, then reveal). DPO raises the margin between the two,
// while each response's own likelihood may go either way: the reveal shows which.
import { $, fmt } from "./dom.js";

/** Waits for the guess: "chosen", "rejected", "both" or "neither". */
export function askGuess() {
  $("reveal").hidden = true;
  $("guess").hidden = false;
  $("guess").querySelector("button").focus();
  return new Promise((resolve) => {
    const answer = (e) => {
      const guess = e.target.closest("[data-guess]")?.dataset.guess;
      if (!guess) return;
      $("guess").removeEventListener("click", answer);
      $("guess").hidden = true;
      resolve(guess);
    };
    $("guess").addEventListener("click", answer);
  });
}

const total = (scores) => scores.policy.reduce((a, b) => a + b, 0);

/** Shows what happened to log π of both responses (token `scores` before and after). */
export function reveal(guess, before, after) {
  const change = (which) => total(after[which]) - total(before[which]);
  const [c, r] = [change("chosen"), change("rejected")];
  const truth = c > 0 && r > 0 ? "both" : c > 0 ? "chosen" : r > 0 ? "rejected" : "neither";
  const name = {
    chosen: "the chosen one",
    rejected: "the rejected one",
    both: "both",
    neither: "neither",
  };
  const line = (which, d) =>
    `log π(${which}) ${fmt(total(before[which]))} → ${fmt(total(after[which]))} ` +
    `(${d >= 0 ? "+" : ""}${fmt(d)})`;
  $("reveal").textContent =
    `${guess === truth ? "Right" : "Not this time"}: you said ${name[guess]}, and ${name[truth]} ` +
    `became more likely. ${line("chosen", c)}; ${line("rejected", r)}. The margin between them ` +
    `grew by ${fmt(c - r)}: that is what DPO pushes on; each likelihood alone can go either way.`;
  $("reveal").dataset.truth = truth;
  $("reveal").hidden = false;
}
