#!/usr/bin/env python3
"""Markdown tables from the JSON reports in a folder (bench/run.sh's and the GPU run's):
ours next to PyTorch, with the ratio (ours / PyTorch; below 1 is faster than PyTorch).

    python3 bench/table.py target/bench
"""

import json
import os
import sys

ROWS = [
    ("update: reference forward", lambda r: r["update"]["reference_forward_ms"]["median"], "ms"),
    ("update: policy forward + backward", lambda r: r["update"]["policy_forward_backward_ms"]["median"], "ms"),
    ("update: optimizer step", lambda r: r["update"]["optimizer_step_ms"]["median"], "ms"),
    ("**update: total**", lambda r: r["update"]["total_ms"]["median"], "ms"),
    ("sampling, KV cache", lambda r: r["generation"]["kv_cache_ms_per_token"]["median"], "ms/token"),
    ("sampling, no cache", lambda r: r["generation"]["recompute_ms_per_token"]["median"], "ms/token"),
    ("KV-cache speed-up", lambda r: r["generation"]["kv_cache_speedup"], "×"),
]


def load(folder, name):
    path = os.path.join(folder, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None


def mib(n):
    return f"{n / 2**20:.0f} MiB" if n else "–"


def memory(r):
    parts = []
    if r.get("peak_rss_bytes"):
        parts.append(f"peak RSS {mib(max(v or 0 for v in r['peak_rss_bytes'].values()))}")
    if r["update"].get("device_reserved_bytes"):
        parts.append(f"GPU pool {mib(r['update']['device_reserved_bytes'])}")
    if r["update"].get("device_peak_bytes"):
        parts.append(f"GPU peak {mib(r['update']['device_peak_bytes'])}")
    if r.get("wasm_memory_bytes"):
        parts.append(f"wasm heap {mib(r['wasm_memory_bytes'])}")
    return ", ".join(parts) or "–"


def table(title, columns):
    """columns: (header, report) pairs; the ratio is taken of the first over the second. No
    table without the first (what the table is about)."""
    if not columns[0][1]:
        return ""
    columns = [(h, r) for h, r in columns if r]
    lines = [f"### {title}", "", "| | " + " | ".join(h for h, _ in columns) + (" | ratio |" if len(columns) >= 2 else " |"),
             "|---|" + "---:|" * (len(columns) + (1 if len(columns) >= 2 else 0))]
    for name, get, unit in ROWS:
        values = [get(r) for _, r in columns]
        cells = [f"{v:.2f} {unit}" if unit != "×" else f"{v:.1f}×" for v in values]
        ratio = f"{values[0] / values[1]:.2f}" if len(values) >= 2 and unit != "×" else ""
        lines.append(f"| {name} | " + " | ".join(cells) + (f" | {ratio} |" if len(columns) >= 2 else " |"))
    lines.append("| memory | " + " | ".join(memory(r) for _, r in columns) + (" | |" if len(columns) >= 2 else " |"))
    lines.append("| device | " + " | ".join(r["device"] for _, r in columns) + (" | |" if len(columns) >= 2 else " |"))
    lines.append("| threads | " + " | ".join(str(r.get("threads") or "–") for _, r in columns) + (" | |" if len(columns) >= 2 else " |"))
    return "\n".join(lines) + "\n"


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    out = []
    for model, label in [("storyworld", "built-in story-world model (1.37 M parameters)"), ("m25", "25 M-parameter config"),
                         ("smollm2-lora", "SmolLM2-135M shape (134.5 M parameters, random weights), LoRA r=8 α=16 on attention, AdamW, 64-token completions")]:
        out.append(table(f"Native CPU, 1 thread, {label}", [("webdpo (flex)", load(folder, f"{model}-cpu")), ("PyTorch CPU", load(folder, f"{model}-torch-cpu"))]))
        out.append(table(f"Native CPU, all cores, {label}", [("webdpo (flex, --threads)", load(folder, f"{model}-cpu-all")), ("PyTorch CPU", load(folder, f"{model}-torch-cpu-all")),
                                                             ("webdpo, 1 thread", load(folder, f"{model}-cpu"))]))
        out.append(table(f"Browser, {label}", [("wasm CPU", load(folder, f"{model}-browser-cpu")), ("native CPU", load(folder, f"{model}-cpu")), ("WebGPU (SwiftShader)", load(folder, f"{model}-browser-webgpu"))]))
        out.append(table(f"Browser, all cores, {label}", [("wasm CPU, threads", load(folder, f"{model}-browser-cpu-all")), ("wasm CPU, 1 thread", load(folder, f"{model}-browser-cpu")),
                                                          ("native CPU, all cores", load(folder, f"{model}-cpu-all"))]))
        out.append(table(f"GPU, {label}", [("webdpo (wgpu)", load(folder, f"{model}-wgpu")), ("PyTorch CUDA", load(folder, f"{model}-torch-cuda"))]))
    print("\n".join(t for t in out if t))


if __name__ == "__main__":
    main()
