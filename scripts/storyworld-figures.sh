#!/usr/bin/env bash
# The simulated-user figures of the story-world model card: for each attribute and seed, a user
# who prefers that attribute picks 30 times with the app's default settings; the rate and the KL
# are measured every 5 picks on 64 fresh samples. Writes CSV + SVG and one JSON summary line each.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-www/models/storyworld}
out=$model/figures
mkdir -p "$out"
# The dev profile optimises all dependencies (Cargo.toml); it is what the tests use too.
cargo build --locked
for attribute in happy on_topic; do
  for seed in 1 2 3; do
    target/debug/webdpo simulate --model "$model" --attribute $attribute --seed $seed --picks 30 \
      --eval-every 5 --eval-samples 64 --csv "$out/$attribute-seed$seed.csv" --svg "$out/$attribute-seed$seed.svg" | tail -n 1
  done
done | tee "$out/summary.jsonl"
