"""transformers itself on the GGUF fixtures (tests/fixtures/gguf): the tokens its GGUF tokenizer
gives for some texts and the logits of the model it dequantizes, for tests/gguf.rs.

Run after tools/gguf_fixtures.py, with torch, transformers 5.24 and gguf installed (the
environment of tools/trl_roundtrip.py):
    python tools/gguf_expected.py         # writes tests/fixtures/gguf/expected.json
"""

import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "gguf")
FILES = ["llama.gguf", "qwen2.gguf", "llama-spm-q8_0.gguf"]
TEXTS = [
    "the cat sat on the mat",
    " leading space and  two  spaces",
    "Hello, World!\nNew line\tand tab",
    "héllo wörld — 世界 🙂",
    "</s> and <s> inside text",
    "",
]


def main():
    out = {}
    for name in FILES:
        tokenizer = AutoTokenizer.from_pretrained(FIXTURES, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(FIXTURES, gguf_file=name, dtype=torch.float32).eval()
        encoded = [tokenizer(t).input_ids for t in TEXTS]
        rows = [ids for ids in encoded if len(ids) >= 4][:2]
        width = min(len(r) for r in rows)
        rows = [r[:width] for r in rows]
        with torch.no_grad():
            logits = model(torch.tensor(rows)).logits
        out[name] = {
            "texts": TEXTS,
            "input_ids": encoded,
            "decoded": [tokenizer.decode(ids, skip_special_tokens=True) for ids in encoded],
            "rows": rows,
            "logits": logits.flatten().tolist(),
        }
        print(name, [len(e) for e in encoded], tuple(logits.shape))
    with open(os.path.join(FIXTURES, "expected.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
