"""The round trip between webdpo and Hugging Face's trainers, checked with numbers.

1. webdpo → PEFT: `webdpo train --lora` writes merged weights and a PEFT adapter; transformers
   loads the merged folder, PEFT puts the adapter on the base, and both give the same logits.
2. webdpo → TRL: `webdpo export-trl` writes a TRL job with `webdpo train`'s arguments; run with
   accelerate, it trains the full model to the same DPO metrics as `webdpo train` does.
3. TRL → webdpo: the job with `--lora` trains a PEFT adapter; `webdpo eval --adapter` on it reports
   the DPO metrics computed here with TRL's formulas (chat template applied as TRL applies it).

Run once with the environment of tools/hf_fixtures.py plus `pip install trl`:
    python tools/trl_roundtrip.py [--webdpo target/release/webdpo] [--model tests/fixtures/hf/llama]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

PAIRS = [
    {"prompt": [{"role": "user", "content": "Is the sky blue?"}], "chosen": [{"role": "assistant", "content": "Yes, on a clear day."}], "rejected": [{"role": "assistant", "content": "No."}]},
    {"prompt": [{"role": "user", "content": "Say something kind."}], "chosen": [{"role": "assistant", "content": "You did great today!"}], "rejected": [{"role": "assistant", "content": "Whatever."}]},
    {"prompt": [{"role": "user", "content": "How does the story end?"}], "chosen": [{"role": "assistant", "content": "They all lived happily."}], "rejected": [{"role": "assistant", "content": "It broke."}]},
    {"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": [{"role": "assistant", "content": "Green."}], "rejected": [{"role": "assistant", "content": "Seven."}]},
]


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def completion_logp(model, prompt_ids, completion_ids):
    """Summed log-prob of the completion tokens given the prompt (TRL: prompt tokens masked)."""
    ids = prompt_ids + completion_ids
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    targets = torch.tensor(ids[1:])
    return logp[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :].sum().item()


def tokenize(tok, pair):
    """As TRL tokenises a conversational pair: the prompt with the generation prompt, each
    completion as what the template adds after it."""
    prompt = tok.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
    out = [tok(prompt, add_special_tokens=False).input_ids]
    for key in ["chosen", "rejected"]:
        full = tok.apply_chat_template(pair["prompt"] + pair[key], tokenize=False)
        assert full.startswith(prompt)
        out.append(tok(full[len(prompt) :], add_special_tokens=False).input_ids)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--webdpo", default="target/release/webdpo")
    ap.add_argument("--model", default="tests/fixtures/hf/llama")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="webdpo-roundtrip-")
    data = os.path.join(work, "pairs.jsonl")
    with open(data, "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in PAIRS)
    # The fixture's 64-position context would truncate chat-formatted pairs (TRL and webdpo
    # truncate differently); the same weights with a longer context keep them whole.
    model_dir = os.path.join(work, "model")
    shutil.copytree(a.model, model_dir, ignore=shutil.ignore_patterns("adapter", "reference", "expected.json"))
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump({**config, "max_position_embeddings": 512}, f, indent=2)
    a.model = model_dir
    tok = AutoTokenizer.from_pretrained(a.model)
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    ids = tokenize(tok, PAIRS[0])[0]

    # 1. webdpo → PEFT and transformers.
    ours = os.path.join(work, "webdpo-lora")
    run([a.webdpo, "train", "--model", a.model, "--data", data, "--out", ours, "--lora", "4,8", "--lr", "1e-2", "--steps", "4", "--batch-size", "4"])
    merged = AutoModelForCausalLM.from_pretrained(ours, dtype=torch.float32).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32), os.path.join(ours, "adapter")).eval()
    diff = (logits(merged, ids) - logits(peft, ids)).abs().max().item()
    moved = (logits(peft, ids) - logits(base, ids)).abs().max().item()
    print(f"webdpo adapter in PEFT vs webdpo merged weights in transformers: max |Δlogit| = {diff:.2e} (the adapter moved logits by up to {moved:.3f})")
    assert diff < 1e-4 and moved > 1e-3

    # 2. The same training in webdpo and in the TRL job `webdpo export-trl` writes (full model,
    # AdamW, 3 steps): the two trained models give the same DPO metrics.
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    settings = ["--data", data, "--lr", "1e-3", "--batch-size", "4", "--epochs", "3"]
    job = os.path.join(work, "job-full")
    run([a.webdpo, "export-trl", "--model", a.model, "--out", job, *settings])
    run([accelerate, "launch", "--config_file", os.path.join(job, "accelerate.yaml"), "--cpu", os.path.join(job, "train.py")])
    ours = os.path.join(work, "webdpo-full")
    run([a.webdpo, "train", "--model", a.model, "--out", ours, *settings])
    by_trl = json.loads(run([a.webdpo, "eval", "--model", os.path.join(job, "output"), "--ref", a.model, "--data", data]))
    by_us = json.loads(run([a.webdpo, "eval", "--model", ours, "--ref", a.model, "--data", data]))
    for k in ["loss", "rewards/margins", "logps/chosen", "logps/rejected"]:
        print(f"{k:18} trained by webdpo {by_us[k]: .6f}   by TRL (export-trl) {by_trl[k]: .6f}")
        assert abs(by_us[k] - by_trl[k]) < 1e-4 * max(1.0, abs(by_us[k])), k
    assert by_us["rewards/margins"] > 1e-2, "training moved the model"

    # 3. TRL with LoRA (export-trl --lora) → webdpo: the adapter loads back and webdpo's metrics
    # are TRL's formulas on it.
    job = os.path.join(work, "job-lora")
    run([a.webdpo, "export-trl", "--model", a.model, "--out", job, "--lora", "4,8", "--data", data, "--lr", "1e-2", "--batch-size", "4", "--epochs", "8"])
    run([accelerate, "launch", "--config_file", os.path.join(job, "accelerate.yaml"), "--cpu", os.path.join(job, "train.py")])
    trained = os.path.join(job, "output")
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32), trained).eval()
    beta = 0.1
    rows = []
    for pair in PAIRS:
        prompt, chosen, rejected = tokenize(tok, pair)
        pc, pr = completion_logp(policy, prompt, chosen), completion_logp(policy, prompt, rejected)
        with policy.disable_adapter():
            rc, rr = completion_logp(policy, prompt, chosen), completion_logp(policy, prompt, rejected)
        rows.append((pc, pr, rc, rr))
    t = torch.tensor(rows, dtype=torch.float64)
    chosen_r, rejected_r = beta * (t[:, 0] - t[:, 2]), beta * (t[:, 1] - t[:, 3])
    expected = {
        "loss": -F.logsigmoid(chosen_r - rejected_r).mean().item(),
        "rewards/chosen": chosen_r.mean().item(),
        "rewards/rejected": rejected_r.mean().item(),
        "rewards/margins": (chosen_r - rejected_r).mean().item(),
        "logps/chosen": t[:, 0].mean().item(),
        "logps/rejected": t[:, 1].mean().item(),
    }
    got = json.loads(run([a.webdpo, "eval", "--model", a.model, "--adapter", trained, "--data", data, "--beta", str(beta)]))
    for k, v in expected.items():
        print(f"{k:18} webdpo {got[k]: .6f}   TRL's formulas on TRL's adapter {v: .6f}")
        assert abs(got[k] - v) < 1e-4 * max(1.0, abs(v)), k
    assert abs(expected["rewards/margins"]) > 1e-4, "TRL's training moved the adapter"
    print(f"round trip verified in {work}")


if __name__ == "__main__":
    main()
