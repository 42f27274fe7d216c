#!/usr/bin/env python3
"""The same model and the same DPO update as `webdpo bench`, in plain PyTorch, timed the same way.

Reads the model directory (config.json + model.safetensors, f32 or f16, computed in f32) and
`webdpo bench`'s JSON report (the pair's token ids, the training settings and our values of the
first two updates). With LoRA (`webdpo bench --lora 8,16 --save-adapter DIR`), PEFT puts the
same adapter on the model (`--adapter DIR`); the reference is the model with it disabled. It first checks that its loss, log-probs and gradient norm equal ours
(to 1e-4, relative for the summed log-probs), then times: the reference forward, the policy's
forward + backward, the optimizer step (clipping included), and sampling 128 tokens with and
without a KV cache. Writes a JSON report in the same shape as ours.

    bench/setup-torch.sh            # PyTorch in bench/.venv (benchmarks only, never the tests)
    bench/.venv/bin/python bench/torch_reference.py --model www/models/storyworld \
        --ours target/bench/storyworld-cpu.json --threads 1 --out target/bench/storyworld-torch-cpu.json
"""

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        # As webdpo (and HF's LlamaRMSNorm up to where eps sits): x / sqrt(mean(x²) + eps) · w.
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(theta, hd, start, length, device):
    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    angles = torch.arange(start, start + length, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h, self.kv = c["hidden_size"], c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
        self.hd = d // self.h
        self.q_proj = torch.nn.Linear(d, self.h * self.hd, bias=False)
        self.k_proj = torch.nn.Linear(d, self.kv * self.hd, bias=False)
        self.v_proj = torch.nn.Linear(d, self.kv * self.hd, bias=False)
        self.o_proj = torch.nn.Linear(self.h * self.hd, d, bias=False)

    def forward(self, x, cos, sin, cache):
        b, t, d = x.shape
        q = rotate(self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2), cos, sin)
        k = rotate(self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = past + t
        scores = q @ k.transpose(2, 3) / math.sqrt(self.hd)
        mask = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(past)
        weights = scores.masked_fill(~mask, -1e9).softmax(-1)
        return self.o_proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Mlp(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = torch.nn.Linear(d, f, bias=False)
        self.up_proj = torch.nn.Linear(d, f, bias=False)
        self.down_proj = torch.nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        self.mlp = Mlp(c)

    def forward(self, x, cos, sin, cache):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = torch.nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c.get("rms_norm_eps", 1e-6))


class Llama(torch.nn.Module):
    """webdpo's model (src/model/) with HF's parameter names."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.tied = c.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, ids, caches=None):
        start = 0 if not caches or "k" not in caches[0] else caches[0]["k"].shape[2]
        hd = self.c["hidden_size"] // self.c["num_attention_heads"]
        cos, sin = rope_tables(self.c.get("rope_theta", 10000.0), hd, start, ids.shape[1], ids.device)
        x = self.model.embed_tokens(ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, caches[i] if caches is not None else None)
        h = self.model.norm(x)
        return h @ self.model.embed_tokens.weight.T if self.tied else self.lm_head(h)


def load_model(path, device):
    config = json.load(open(os.path.join(path, "config.json")))
    model = Llama(config)
    state = {k: v.float() for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"model.safetensors does not match config.json: missing {missing}, unexpected {unexpected}")
    return model.to(device)


def sequence_logps(model, tokens, mask):
    """Sum of completion-token log-probs per row (TRL's get_batch_logps)."""
    logits = model(tokens)[:, :-1]
    logp = logits.log_softmax(-1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return (logp * mask).sum(-1)


def make_batch(pair, device):
    rows = [pair["prompt"] + pair["chosen"], pair["prompt"] + pair["rejected"]]
    width = max(map(len, rows))
    tokens = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width - 1)
    for r, (row, completion) in enumerate(zip(rows, [pair["chosen"], pair["rejected"]])):
        tokens[r, : len(row)] = torch.tensor(row)
        p = len(pair["prompt"])
        mask[r, p - 1 : p + len(completion) - 1] = 1.0
    return tokens.to(device), mask.to(device)


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def optimizer_for(model, train):
    if train["optim"] == "sgd":
        return torch.optim.SGD(trainable(model), lr=train["learning_rate"], momentum=train["momentum"], weight_decay=train["weight_decay"])
    return torch.optim.AdamW(trainable(model), lr=train["learning_rate"], betas=(train["adam_beta1"], train["adam_beta2"]), eps=train["adam_epsilon"], weight_decay=train["weight_decay"])


def with_adapter(model, path):
    """PEFT's LoRA layers on `model`, holding the adapter saved at `path` (webdpo's PEFT names)."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    saved = json.load(open(os.path.join(path, "adapter_config.json")))
    config = LoraConfig(r=saved["r"], lora_alpha=saved["lora_alpha"], target_modules=saved["target_modules"], lora_dropout=0.0, bias="none")
    peft = get_peft_model(model, config)
    state = load_file(os.path.join(path, "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft, state)
    if result.unexpected_keys:
        sys.exit(f"the adapter's tensors do not fit the model: {result.unexpected_keys[:4]}")
    return peft


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dpo_update(policy, reference, optim, tokens, mask, train, device):
    """One update as webdpo's DpoTrainer::step; returns metrics and the three stage times (ms).
    `reference` is a frozen model, or None for the policy with its LoRA adapter disabled."""
    beta = train["dpo"]["beta"]
    t0 = time.perf_counter()
    # Reference forward (no graph), once per pick.
    with torch.no_grad():
        if reference is None:
            with policy.disable_adapter():
                ref = sequence_logps(policy, tokens, mask)
        else:
            ref = sequence_logps(reference, tokens, mask)
    sync(device)
    t1 = time.perf_counter()
    # Policy forward and backward, chosen and rejected as one concatenated batch.
    logps = sequence_logps(policy, tokens, mask)
    logits = beta * ((logps[0] - ref[0]) - (logps[1] - ref[1]))
    loss = -F.logsigmoid(logits)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainable(policy)))
    values = torch.stack([loss.detach(), logps[0].detach(), logps[1].detach(), grad_norm]).tolist()
    t2 = time.perf_counter()
    # Optimizer step, after clipping the global norm as clip_grad_norm_ does.
    if train["max_grad_norm"] > 0:
        torch.nn.utils.clip_grad_norm_(trainable(policy), train["max_grad_norm"])
    optim.step()
    sync(device)
    t3 = time.perf_counter()
    ms = lambda a, b: (b - a) * 1e3
    return values, (ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t0, t3))


def stat(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def generate_ms_per_token(model, prompt, new_tokens, cached, device, seed):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.tensor([prompt], device=device)
    caches = [dict() for _ in model.model.layers] if cached else None
    context, step_input, made = ids, ids, 0
    start = time.perf_counter()
    with torch.no_grad():
        while made < new_tokens:
            logits = model(step_input, caches) if cached else model(context)
            # One read per token and sampling on the host, as webdpo does.
            probs = logits[0, -1].softmax(-1).cpu()
            token = torch.multinomial(probs, 1, generator=g).to(device)[None]
            made += 1
            if cached:
                step_input = token
            else:
                context = torch.cat([context, token], 1)
    sync(device)
    return (time.perf_counter() - start) * 1e3 / new_tokens


def peak_rss_reset():
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass


def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ours", required=True, help="webdpo bench's JSON report")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (match webdpo's)")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="for the check against webdpo's values")
    ap.add_argument("--adapter", help="the PEFT adapter webdpo bench started from (--save-adapter), with LoRA")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    ours = json.load(open(a.ours))
    bench, train, pair = ours["bench"], ours["train"], ours["pair"]
    if train["trainer"] != "dpo" or train["dpo"]["loss_type"] != ["sigmoid"] or train["dpo"]["label_smoothing"] != 0:
        sys.exit("only plain DPO (sigmoid loss, no label smoothing) is implemented here")
    if bool(ours.get("lora")) != bool(a.adapter):
        sys.exit("webdpo's run trained LoRA adapters: pass the one it started from with --adapter" if ours.get("lora") else "--adapter, but webdpo's run trained the whole model")

    policy = load_model(a.model, device)
    if a.adapter:
        policy = with_adapter(policy, a.adapter).to(device)
        reference = None
    else:
        reference = copy.deepcopy(policy).requires_grad_(False)
    optim = optimizer_for(policy, train)
    tokens, mask = make_batch(pair, device)

    # Correctness first: the first two updates must match ours.
    check = ours["update"]["check"]
    peak_rss_reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for run in range(bench["warmup"] + bench["runs"]):
        values, stages = dpo_update(policy, reference, optim, tokens, mask, train, device)
        if run < 2:
            for name, mine, theirs, rel in zip(["loss", "logps_chosen", "logps_rejected", "grad_norm"], values, [check[k][run] for k in ["loss", "logps_chosen", "logps_rejected", "grad_norm"]], [False, True, True, True]):
                tol = a.tolerance * (max(1.0, abs(theirs)) if rel else 1.0)
                if abs(mine - theirs) > tol:
                    sys.exit(f"step {run + 1}: {name} is {mine} here and {theirs} in webdpo (tolerance {tol}); not timing a different computation")
                print(f"step {run + 1}: {name} {mine:.6f} (webdpo {theirs:.6f})", file=sys.stderr)
        if run >= bench["warmup"]:
            times.append(stages)
    update_peak = peak_rss()
    update = {
        "reference_forward_ms": stat([t[0] for t in times]),
        "policy_forward_backward_ms": stat([t[1] for t in times]),
        "optimizer_step_ms": stat([t[2] for t in times]),
        "total_ms": stat([t[3] for t in times]),
        "device_peak_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }

    peak_rss_reset()
    model = reference if reference is not None else policy.get_base_model()
    per_token = lambda cached, runs: [generate_ms_per_token(model, pair["prompt"], bench["new_tokens"], cached, device, bench["seed"] + i) for i in range(runs)]
    per_token(True, bench["warmup"])
    cached = stat(per_token(True, bench["runs"]))
    per_token(False, 1)
    recompute = stat(per_token(False, bench["recompute_runs"]))
    report = {
        "implementation": f"PyTorch {torch.__version__}",
        "model": a.model,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "lora": ours.get("lora"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({a.threads} thread{'s' if a.threads > 1 else ''})",
        "threads": a.threads,
        "update": update,
        "generation": {"new_tokens": bench["new_tokens"], "kv_cache_ms_per_token": cached, "recompute_ms_per_token": recompute, "kv_cache_speedup": recompute["median"] / cached["median"]},
        "peak_rss_bytes": {"update": update_peak, "generation": peak_rss()},
    }
    text = json.dumps(report, indent=1)
    if a.out:
        open(a.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
