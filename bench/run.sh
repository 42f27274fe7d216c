#!/usr/bin/env bash
# Every benchmark this machine can run, into target/bench/*.json, then the tables of BENCHMARKS.md:
# native CPU (webdpo and PyTorch, same thread count), and the browser (wasm CPU and WebGPU) through
# headless Chromium. Needs scripts/setup.sh (browser, wasm tools) and installs PyTorch in
# bench/.venv (bench/setup-torch.sh). GPU rows come from a GPU machine: see BENCHMARKS.md.
# Both on one thread and on every core (webdpo's `--threads`: burn-flex splits its large kernels
# over them, small ones stay on one thread).
#   bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
cargo build --release --locked --features wgpu --bin webdpo
B=target/release/webdpo
[ -f "$out/m25/model.safetensors" ] || $B init --out "$out/m25" --hidden-size 512 --layers 8 --heads 8 --kv-heads 8 \
    --intermediate-size 1408 --context 256 --tie-embeddings --seed 0
[ -f "$out/smollm2-135m/model.safetensors" ] || $B init --out "$out/smollm2-135m" --hidden-size 576 --layers 30 --heads 9 \
    --kv-heads 3 --intermediate-size 1536 --vocab-size 49152 --context 2048 --tie-embeddings --seed 0
bench/setup-torch.sh

for model in storyworld m25; do
    dir=www/models/storyworld; [ $model = m25 ] && dir=$out/m25
    runs=10; [ $model = m25 ] && runs=5
    $B --threads 1 bench --model "$dir" --runs $runs --out "$out/$model-cpu.json" > /dev/null
    $B --threads "$(nproc)" bench --model "$dir" --runs $runs --out "$out/$model-cpu-all.json" > /dev/null
    bench/.venv/bin/python bench/torch_reference.py --model "$dir" --ours "$out/$model-cpu.json" --threads 1 \
        --out "$out/$model-torch-cpu.json" > /dev/null
    bench/.venv/bin/python bench/torch_reference.py --model "$dir" --ours "$out/$model-cpu.json" --threads "$(nproc)" \
        --out "$out/$model-torch-cpu-all.json" > /dev/null
done
# SmolLM2-135M's shape with a LoRA adapter (PyTorch: PEFT on the same starting adapter).
$B --threads 1 bench --model "$out/smollm2-135m" --lora 8,16 --save-adapter "$out/smollm2-135m-adapter" --optim adamw \
    --completion-tokens 64 --runs 5 --warmup 1 --recompute-runs 1 --out "$out/smollm2-lora-cpu.json" > /dev/null
$B --threads "$(nproc)" bench --model "$out/smollm2-135m" --lora 8,16 --optim adamw \
    --completion-tokens 64 --runs 5 --warmup 1 --recompute-runs 1 --out "$out/smollm2-lora-cpu-all.json" > /dev/null
for threads in 1 "$(nproc)"; do
    name=smollm2-lora-torch-cpu; [ "$threads" = 1 ] || name=smollm2-lora-torch-cpu-all
    bench/.venv/bin/python bench/torch_reference.py --model "$out/smollm2-135m" --ours "$out/smollm2-lora-cpu.json" \
        --adapter "$out/smollm2-135m-adapter" --threads "$threads" --out "$out/$name.json" > /dev/null
done
bash scripts/build-web.sh
# The wasm CPU backend on one thread (the single-threaded build) and on every core (the threaded
# build: bench.html is served cross-origin isolated).
for threads in 1 "$(nproc)"; do
    all=""; [ "$threads" = 1 ] || all=-all
    node bench/browser.mjs --model storyworld --backend cpu --threads "$threads" \
        --out "$out/storyworld-browser-cpu$all.json" > /dev/null
    node bench/browser.mjs --model 25m --backend cpu --threads "$threads" --runs 3 --warmup 1 --recompute-runs 1 \
        --out "$out/m25-browser-cpu$all.json" > /dev/null
    node bench/browser.mjs --model smollm2-lora --backend cpu --threads "$threads" --completion-tokens 64 --runs 3 \
        --warmup 1 --recompute-runs 1 --out "$out/smollm2-lora-browser-cpu$all.json" > /dev/null
done
node bench/browser.mjs --model storyworld --backend webgpu --runs 3 --warmup 1 --recompute-runs 1 --out "$out/storyworld-browser-webgpu.json" > /dev/null
python3 bench/table.py "$out"
