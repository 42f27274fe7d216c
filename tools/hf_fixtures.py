#!/usr/bin/env python3
"""Tiny Hugging Face checkpoints and the numbers transformers, PEFT and TRL's formulas give for
them: the fixtures that webdpo's loaders, LoRA and DPO are tested against (tests/fixtures/hf/).

Run once, by hand (CI never needs PyTorch); the output is small and committed:

    python3 -m venv tools/.venv && tools/.venv/bin/pip install torch transformers peft tokenizers
    tools/.venv/bin/python tools/hf_fixtures.py --out tests/fixtures/hf

For each model (random init, seeded): the files `save_pretrained` writes, and expected.json with
the logits of fixed token ids and TRL's DPO loss and metrics for fixed pairs (policy = that model,
reference = the same architecture with another seed). Covered: Llama with grouped-query attention
and an untied head (sharded, f32), Qwen2 with q/k/v biases (bf16 on disk), GPT-2 (f16 on disk),
a ChatML chat template, and PEFT LoRA adapters (Llama: attention projections; GPT-2: c_attn).
Weights stored in f16/bf16 are computed in f32, so expected values use the rounded weights.
"""

import argparse
import json
import os
import shutil

import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

VOCAB = 300
BETA = 0.1
# SmolLM2-Instruct's template (ChatML), the one tokenizer_config.json carries there.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def models():
    llama = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    qwen2 = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=64, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    gpt2 = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)
    # name, class, config, dtype on disk, shard size (None: one file), LoRA target modules
    return [
        ("llama", LlamaForCausalLM, llama, torch.float32, "40KB", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("qwen2", Qwen2ForCausalLM, qwen2, torch.bfloat16, None, None),
        ("gpt2", GPT2LMHeadModel, gpt2, torch.float16, None, ["c_attn"]),
    ]


def build(cls, config, seed, dtype):
    """A random model whose f32 weights are exactly what loading the `dtype` file gives."""
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            # Random norms too, so that a loader that skips them fails the test.
            if p.dim() == 1 and torch.all(p == 1):
                p.add_(0.1 * torch.randn_like(p))
            p.copy_(p.to(dtype).float())
    return model


def tokenizer():
    from tokenizers import Tokenizer, decoders, models as tm, pre_tokenizers, trainers
    tok = Tokenizer(tm.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["The cat sat on the mat. A shy fox finds a red kite.", "Write a story about a kind bear.", "system user assistant helpful"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, chat_template=CHATML)


def batch_logps(model, rows, prompt_lens, pad):
    """TRL's concatenated forward: right-padded rows, completion tokens only, summed."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros(len(rows), width - 1)
    for r, (row, p) in enumerate(zip(rows, prompt_lens)):
        ids[r, : len(row)] = torch.tensor(row)
        mask[r, p - 1 : len(row) - 1] = 1
    attention = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    per_token = logits.log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(2)
    return (per_token * mask).sum(-1)


def dpo(policy, reference, pairs, pad):
    """TRL's DPOTrainer (loss_type sigmoid, no label smoothing) on a batch of pairs."""
    rows = [p + c for p, c, _ in pairs] + [p + r for p, _, r in pairs]
    prompt_lens = [len(p) for p, _, _ in pairs] * 2
    with torch.no_grad():
        pol = batch_logps(policy, rows, prompt_lens, pad)
        ref = batch_logps(reference, rows, prompt_lens, pad)
    n = len(pairs)
    pc, pr, rc, rr = pol[:n], pol[n:], ref[:n], ref[n:]
    logits = (pc - pr) - (rc - rr)
    losses = -F.logsigmoid(BETA * logits)
    chosen, rejected = BETA * (pc - rc), BETA * (pr - rr)
    return {
        "beta": BETA,
        "loss": losses.mean().item(),
        "losses": losses.tolist(),
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "logps/chosen": pc.mean().item(),
        "logps/rejected": pr.mean().item(),
        "policy_logps": pol.tolist(),
        "reference_logps": ref.tolist(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/hf")
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (2, 9), generator=g)
    pairs = [(torch.randint(3, VOCAB, (n,), generator=g).tolist(), torch.randint(3, VOCAB, (c,), generator=g).tolist(), torch.randint(3, VOCAB, (r,), generator=g).tolist())
             for n, c, r in [(4, 6, 3), (2, 5, 7)]]
    tok = tokenizer()
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__, "models": []}
    for name, cls, config, dtype, shard, lora_targets in models():
        out = os.path.join(a.out, name)
        policy = build(cls, config, 1, dtype)
        reference = build(cls, config, 2, dtype)
        policy.to(dtype).save_pretrained(out, max_shard_size=shard or "1GB")
        policy.float()
        reference.to(dtype).save_pretrained(os.path.join(out, "reference"))
        reference.float()
        tok.save_pretrained(out)
        with torch.no_grad():
            logits = policy(input_ids=ids).logits
        expected = {"dtype": str(dtype).removeprefix("torch."), "input_ids": ids.tolist(), "logits": logits.flatten().tolist(), "logits_shape": list(logits.shape),
                    "pairs": [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs], "dpo": dpo(policy, reference, pairs, pad=0)}
        messages = [{"role": "user", "content": "Write a story about a kind bear."}]
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": "The bear sat on the mat."}], tokenize=False)
        expected["chat"] = {"messages": messages, "prompt": prompt, "prompt_ids": tok(prompt, add_special_tokens=False).input_ids,
                            "completion": full[len(prompt):], "completion_ids": tok(full[len(prompt):], add_special_tokens=False).input_ids}
        if lora_targets:
            expected["lora"] = lora(policy, lora_targets, ids, os.path.join(out, "adapter"))
        json.dump(expected, open(os.path.join(out, "expected.json"), "w"))
        manifest["models"].append({"name": name, "architecture": cls.__name__, "dtype": expected["dtype"], "parameters": sum(p.numel() for p in policy.parameters())})
    json.dump(manifest, open(os.path.join(a.out, "manifest.json"), "w"), indent=1)
    print(json.dumps(manifest, indent=1))


def lora(model, targets, ids, out):
    """A PEFT LoRA adapter with non-zero B (so it changes the logits) and the logits with it."""
    import peft
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, init_lora_weights=False, fan_in_fan_out=targets == ["c_attn"])
    torch.manual_seed(3)
    wrapped = peft.get_peft_model(model, config)
    wrapped.save_pretrained(out)
    with torch.no_grad():
        logits = wrapped(input_ids=ids).logits
        merged = wrapped.merge_and_unload()(input_ids=ids).logits
    return {"peft": peft.__version__, "r": 4, "alpha": 8, "targets": targets, "logits": logits.flatten().tolist(), "merged_max_diff": (logits - merged).abs().max().item()}


if __name__ == "__main__":
    main()
