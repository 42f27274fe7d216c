//! A TRL 1.16 training job with webdpo's objective and hyperparameters: the script, accelerate's
//! config and a README, so that pairs collected here can train on real hardware with TRL's own
//! trainers rather than a home-made distributed one.

use serde_json::{Value, json};

use crate::model::LoraConfig;
use crate::train::{TrainConfig, Trainer};

/// What the job trains on: the objective and optimiser (`train`), LoRA or the full model, and
/// how the data is batched.
pub struct TrlJob<'a> {
    pub train: &'a TrainConfig,
    pub lora: Option<&'a LoraConfig>,
    /// Rows per optimiser step, over all processes together (as webdpo's `--batch-size`).
    pub batch_size: usize,
    pub epochs: usize,
}

/// The job folder's layout, named in the script and the README.
pub const MODEL_DIR: &str = "model";
pub const DATA_FILE: &str = "data.jsonl";
pub const OUTPUT_DIR: &str = "output";
pub const SCRIPT: &str = "train.py";
pub const ACCELERATE_CONFIG: &str = "accelerate.yaml";

/// The versions the script is written for (TRL's experimental trainers move between releases).
pub const REQUIREMENTS: &str =
    "trl==1.16.0\ntransformers==5.24.*\npeft==0.21.*\naccelerate\ndatasets\n";

/// One process on one machine; `accelerate launch` flags (`--multi_gpu --num_processes 8`)
/// scale it out without editing.
pub const ACCELERATE_YAML: &str = "\
# accelerate's config for train.py: one process. On N GPUs of one machine:
#   accelerate launch --config_file accelerate.yaml --multi_gpu --num_processes N train.py
# (train.py divides the batch by the number of processes, so the optimiser sees the same batch).
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
mixed_precision: 'no'
num_machines: 1
num_processes: 1
machine_rank: 0
use_cpu: false
";

impl TrlJob<'_> {
    /// TRL's trainer and config classes and the module they come from.
    fn classes(&self) -> (&'static str, &'static str, &'static str) {
        match self.train.trainer {
            Trainer::Dpo => ("trl", "DPOTrainer", "DPOConfig"),
            Trainer::Kto => ("trl", "KTOTrainer", "KTOConfig"),
            Trainer::Cpo => ("trl.experimental.cpo", "CPOTrainer", "CPOConfig"),
            Trainer::Orpo => ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
        }
    }

    /// The objective's settings under TRL's names (ours are TRL's, so each maps one to one).
    fn objective(&self) -> Vec<(&'static str, Value)> {
        let t = self.train;
        match t.trainer {
            Trainer::Dpo => vec![
                ("beta", json!(t.dpo.beta)),
                ("loss_type", json!(t.dpo.loss_type)),
                ("loss_weights", json!(t.dpo.loss_weights)),
                ("label_smoothing", json!(t.dpo.label_smoothing)),
                ("f_divergence_type", json!(t.dpo.f_divergence_type)),
                (
                    "f_alpha_divergence_coef",
                    json!(t.dpo.f_alpha_divergence_coef),
                ),
                ("discopop_tau", json!(t.dpo.discopop_tau)),
                ("use_weighting", json!(t.dpo.use_weighting)),
                ("ld_alpha", json!(t.dpo.ld_alpha)),
            ],
            Trainer::Cpo => vec![
                ("beta", json!(t.cpo.beta)),
                ("loss_type", json!(t.cpo.loss_type)),
                ("label_smoothing", json!(t.cpo.label_smoothing)),
                ("simpo_gamma", json!(t.cpo.simpo_gamma)),
                ("cpo_alpha", json!(t.cpo.cpo_alpha)),
                ("alpha", json!(t.cpo.alpha)),
            ],
            Trainer::Orpo => vec![("beta", json!(t.orpo.beta))],
            Trainer::Kto => vec![
                ("beta", json!(t.kto.beta)),
                ("loss_type", json!(t.kto.loss_type)),
                ("desirable_weight", json!(t.kto.desirable_weight)),
                ("undesirable_weight", json!(t.kto.undesirable_weight)),
            ],
        }
    }

    /// The optimiser and the data's passes: AdamW at a constant learning rate, no warm-up, one
    /// optimiser step per batch, as `webdpo train`.
    fn optimisation(&self) -> Vec<(&'static str, Value)> {
        let t = self.train;
        vec![
            ("learning_rate", json!(t.learning_rate)),
            ("optim", json!("adamw_torch")),
            ("adam_beta1", json!(t.adam_beta1)),
            ("adam_beta2", json!(t.adam_beta2)),
            ("adam_epsilon", json!(t.adam_epsilon)),
            ("weight_decay", json!(t.weight_decay)),
            ("max_grad_norm", json!(t.max_grad_norm)),
            ("lr_scheduler_type", json!("constant")),
            ("num_train_epochs", json!(self.epochs)),
            ("max_length", json!(t.max_length)),
        ]
    }

    fn peft_config(&self) -> String {
        let Some(lora) = self.lora else {
            return "None".into();
        };
        let targets = match lora.targets.as_slice() {
            [all] if all == "all-linear" => json!("all-linear"),
            targets => json!(targets),
        };
        format!(
            "LoraConfig(r={}, lora_alpha={}, target_modules={}, lora_dropout=0.0, bias=\"none\", \
             task_type=\"CAUSAL_LM\")",
            lora.r,
            python(&json!(lora.alpha)),
            python(&targets)
        )
    }

    /// `train.py`: loads the job folder's model and data and trains with TRL.
    pub fn script(&self) -> String {
        let (module, trainer, config) = self.classes();
        let kwargs = |settings: Vec<(&str, Value)>| {
            settings
                .iter()
                .map(|(k, v)| format!("        {k}={},\n", python(v)))
                .collect::<String>()
        };
        let peft_import = if self.lora.is_some() {
            "from peft import LoraConfig\n"
        } else {
            ""
        };
        format!(
            r#""""TRL {trl} job written by `webdpo export-trl`: {trainer} with webdpo's settings.

    pip install -r requirements.txt
    accelerate launch --config_file {ACCELERATE_CONFIG} {SCRIPT}

The trained {what} is written to {OUTPUT_DIR}/ (see README.md to load it back into webdpo).
"""

import argparse
import os
from pathlib import Path

from datasets import load_dataset
{peft_import}from transformers import AutoModelForCausalLM, AutoTokenizer
from {module} import {config}, {trainer}

HERE = Path(__file__).resolve().parent
# Rows per optimiser step over all processes, as webdpo's --batch-size.
BATCH_SIZE = {batch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(HERE / "{OUTPUT_DIR}"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (webdpo computes in f32)")
    args = parser.parse_args()

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if BATCH_SIZE % processes:
        raise SystemExit(f"the batch of {{BATCH_SIZE}} does not divide among {{processes}} processes")

    model = AutoModelForCausalLM.from_pretrained(HERE / "{MODEL_DIR}", dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(HERE / "{MODEL_DIR}")
    dataset = load_dataset("json", data_files=str(HERE / "{DATA_FILE}"), split="train")

    training_args = {config}(
        output_dir=args.output_dir,
        # The objective.
{objective}        # The optimiser and the passes over the data.
{optimisation}        per_device_train_batch_size=BATCH_SIZE // processes,
        gradient_accumulation_steps=1,
        bf16=args.bf16,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    trainer = {trainer}(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config={peft},
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
"#,
            trl = "1.16",
            what = if self.lora.is_some() {
                "LoRA adapter (PEFT)"
            } else {
                "model (a transformers folder)"
            },
            batch = self.batch_size,
            objective = kwargs(self.objective()),
            optimisation = kwargs(self.optimisation()),
            peft = self.peft_config(),
        )
    }

    /// The job folder's README: how to run it and how to bring the result back.
    pub fn readme(&self, command: &str) -> String {
        let (_, trainer, _) = self.classes();
        let back = match self.lora {
            Some(lora) => format!(
                "The LoRA adapter (r={r}, alpha={alpha}) is written to `{OUTPUT_DIR}/` in PEFT's format.\n\
                 \n\
                 - CLI: `webdpo eval --model {MODEL_DIR} --adapter {OUTPUT_DIR} --data {DATA_FILE}` (or \
                 `generate`, or `train` on further pairs).\n\
                 - App: load this base model with LoRA r={r}, alpha={alpha} on the same layers, then \
                 **Load policy** with `{OUTPUT_DIR}/adapter_model.safetensors`.\n",
                r = lora.r,
                alpha = lora.alpha,
            ),
            None => format!(
                "The trained model is written to `{OUTPUT_DIR}/` as a transformers folder.\n\
                 \n\
                 - CLI: `webdpo eval --model {OUTPUT_DIR} --ref {MODEL_DIR} --data {DATA_FILE}`.\n\
                 - App: open `{OUTPUT_DIR}/` as your own model, or **Load policy** with \
                 `{OUTPUT_DIR}/model.safetensors` on this base model.\n"
            ),
        };
        format!(
            "# A TRL training job from webdpo\n\
             \n\
             Written by `{command}`: TRL's `{trainer}` with the same objective and hyperparameters \
             as `webdpo train` with these arguments.\n\
             \n\
             - `{MODEL_DIR}/`: the model webdpo loaded, as a transformers folder (f32).\n\
             - `{DATA_FILE}`: the rows, checked by webdpo.\n\
             - `{SCRIPT}`: the training script; `{ACCELERATE_CONFIG}`: accelerate's config.\n\
             \n\
             ## Run\n\
             \n\
             ```sh\n\
             pip install -r requirements.txt\n\
             accelerate launch --config_file {ACCELERATE_CONFIG} {SCRIPT}\n\
             # N GPUs of one machine, N dividing the batch of {batch} (the optimiser sees the same batch):\n\
             accelerate launch --config_file {ACCELERATE_CONFIG} --multi_gpu --num_processes N {SCRIPT} --bf16\n\
             ```\n\
             \n\
             ## Back into webdpo\n\
             \n\
             {back}",
            batch = self.batch_size,
        )
    }
}

/// A JSON value as a Python literal.
fn python(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}
