"""TRL 1.16's own CPOTrainer and ORPOTrainer on the fixture models: how they tokenize a row and
the metrics of one batch, for tests/hf.rs (`cpo_and_orpo_match_trl_trainers`).

Run once, with the environment of tools/trl_roundtrip.py:
    python tools/trl_cpo_fixtures.py      # writes tests/fixtures/hf/cpo_orpo.json
"""

import json
import os
import tempfile

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "hf")

PLAIN = [
    {"prompt": "Q: Is the sky blue?\nA:", "chosen": " Yes.", "rejected": " No, it is green."},
    {"prompt": "Be kind:", "chosen": " Thank you!", "rejected": " Go away."},
]
# A system turn of their own keeps the fixtures' template from adding its long default one.
SYSTEM = {"role": "system", "content": "Be brief."}
CHAT = [
    {"prompt": [SYSTEM, {"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Green, oh."}]},
    {"prompt": [SYSTEM, {"role": "user", "content": "Be kind."}], "chosen": [{"role": "assistant", "content": "Thanks!"}], "rejected": [{"role": "assistant", "content": "Go."}]},
]
OBJECTIVES = [
    ("cpo", {"loss_type": "sigmoid", "beta": 0.1}),
    ("cpo", {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0}),
    ("orpo", {"beta": 0.1}),
]


def run(name, rows, trainer_name, settings):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, name), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(FIXTURES, name))
    config_class, trainer_class = (CPOConfig, CPOTrainer) if trainer_name == "cpo" else (ORPOConfig, ORPOTrainer)
    args = config_class(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=len(rows), max_length=64, bf16=False, report_to="none", **settings)
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    tokenized = []
    for row in trainer.train_dataset:
        out = {}
        for side in ["chosen", "rejected"]:
            ids, labels = row[f"{side}_input_ids"], row[f"{side}_labels"]
            prompt_len = sum(1 for l in labels if l == -100)
            out["prompt"] = ids[:prompt_len]
            out[side] = ids[prompt_len:]
        tokenized.append(out)
    batch = next(iter(trainer.get_train_dataloader()))
    model.eval()
    with torch.no_grad():
        loss, metrics = trainer.get_batch_loss_metrics(model, batch, "train")
    return tokenized, {"loss": loss.item(), **{k: float(v) for k, v in metrics.items()}}


def main():
    cases = []
    for name in ["llama", "qwen2", "gpt2"]:
        for data_name, rows in [("plain", PLAIN), ("chat", CHAT)]:
            for trainer_name, settings in OBJECTIVES:
                tokenized, metrics = run(name, rows, trainer_name, settings)
                cases.append({"model": name, "data": data_name, "rows": rows, "trainer": trainer_name, "settings": settings, "tokenized": tokenized, "metrics": metrics})
                print(name, data_name, trainer_name, settings.get("loss_type", ""), metrics)
    for case in cases:
        for row in case["tokenized"]:
            assert max(len(row["prompt"]) + len(row[s]) for s in ["chosen", "rejected"]) <= 64, "fits the fixtures' context"
        assert all(v == v for v in case["metrics"].values()), "no NaN"
    with open(os.path.join(FIXTURES, "cpo_orpo.json"), "w") as f:
        json.dump({"trl": "1.16.0", "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
