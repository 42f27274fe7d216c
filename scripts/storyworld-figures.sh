#!/usr/bin/env bash
# The simulated-user figures of the story-world model card, with the app's default settings:
# for each attribute, seed and pair style (independent or branched), a user who prefers that
# attribute picks 30 times; the rate and the KL are measured every 5 picks on 64 fresh stories.
# Then the β sweeps (0.05, 0.1, 0.5, 1) of happy endings: with the app's defaults, and with a
# batch of the pick and 7 recent ones per update. Writes CSV + SVG and one JSON summary line
# each (summary.jsonl, sweep-*.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-www/models/storyworld}
out=$model/figures
mkdir -p "$out"
# The dev profile optimises all dependencies (Cargo.toml); it is what the tests use too.
cargo build --locked
simulate() { target/debug/webdpo simulate --model "$model" --picks 30 --eval-every 5 --eval-samples 64 "$@"; }
for attribute in happy on_topic; do
  for seed in 1 2 3; do
    for pairs in independent branched; do
      name=$attribute-seed$seed-$pairs
      simulate --attribute $attribute --seed $seed --pairs $pairs --csv "$out/$name.csv" --svg "$out/$name.svg" |
        tail -n 1 | sed "s/^{/{\"pairs\":\"$pairs\",/"
    done
  done
done | tee "$out/summary.jsonl"
for replay in 1 8; do
  simulate --attribute happy --seed 1 --replay $replay --sweep 0.05,0.1,0.5,1 \
    --csv "$out/sweep-happy-replay$replay.csv" --svg "$out/sweep-happy-replay$replay.svg" |
    grep '^{' | tee "$out/sweep-happy-replay$replay.jsonl"
done
