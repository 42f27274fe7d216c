//! Hugging Face checkpoints against transformers' own numbers: the fixtures in
//! tests/fixtures/hf/ were written by tools/hf_fixtures.py (transformers `save_pretrained`,
//! logits of fixed token ids, TRL's DPO formulas for fixed pairs). One file, long: the
//! architectures share its fixture readers.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::max_abs_diff;
use serde_json::Value;
use webdpo::LoraConfig;
use webdpo::block_on;
use webdpo::hf::model_dir::ModelDir;
use webdpo::hf::peft::{attach_peft_weights, from_peft, to_peft};
use webdpo::hf::safetensors::{Dtype, from_safetensors, parse_safetensors, to_safetensors};
use webdpo::hf::tokenizer::{TextTokenizer, byte_level_tokenizer_json};
use webdpo::model::Arch;
use webdpo::model::CausalLm;
use webdpo::runtime::memory::{
    MemoryEstimate, MemoryLimits, lora_parameter_count, parameter_count,
};
use webdpo::train::Trainer;
use webdpo::train::data::{Message, parse_jsonl};
use webdpo::train::logps::TokenizedPair;
use webdpo::train::optimizer::Optim;
use webdpo::train::{DpoTrainer, TrainConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf")
}

fn fixture(name: &str) -> (PathBuf, Value) {
    let dir = fixtures().join(name);
    let expected =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn logits(model: &CausalLm, rows: &[Vec<u32>], device: &Device) -> Vec<f64> {
    let (b, t) = (rows.len(), rows[0].len());
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(
            rows.concat().iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [b, t],
        ),
        device,
    );
    model
        .forward(tokens, None)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn input_ids(expected: &Value) -> Vec<Vec<u32>> {
    expected["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect()
}

fn pairs(expected: &Value) -> Vec<TokenizedPair> {
    expected["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| TokenizedPair {
            prompt: ids(&p["prompt"]),
            chosen: ids(&p["chosen"]),
            rejected: ids(&p["rejected"]),
        })
        .collect()
}

#[test]
fn llama_qwen2_and_gpt2_match_transformers_logits() {
    let device = Device::flex();
    for (name, arch) in [
        ("llama", Arch::Llama),
        ("qwen2", Arch::Qwen2),
        ("gpt2", Arch::Gpt2),
    ] {
        let (dir, expected) = fixture(name);
        let loaded = ModelDir::load(&dir, &device).unwrap();
        assert_eq!(loaded.config.arch(), arch);
        let diff = max_abs_diff(
            &logits(&loaded.model, &input_ids(&expected), &device),
            &floats(&expected["logits"]),
        );
        assert!(
            diff < 1e-4,
            "{name}: logits differ from transformers' by {diff}"
        );
    }
    // The shapes the fixtures exist to cover.
    let llama = ModelDir::load(&fixture("llama").0, &device).unwrap().config;
    assert!(
        fixture("llama")
            .0
            .join("model.safetensors.index.json")
            .exists(),
        "the Llama fixture is sharded"
    );
    assert_eq!((llama.kv_heads(), llama.tie_word_embeddings), (2, false));
}

#[test]
fn dpo_metrics_match_trl_formulas() {
    let device = Device::flex();
    for name in ["llama", "qwen2", "gpt2"] {
        let (dir, expected) = fixture(name);
        let policy = ModelDir::load(&dir, &device).unwrap();
        let reference = from_safetensors(
            &policy.config,
            &std::fs::read(dir.join("reference/model.safetensors")).unwrap(),
            "reference",
            &device,
        )
        .unwrap();
        let want = &expected["dpo"];
        let config = TrainConfig {
            dpo: webdpo::train::dpo::DpoConfig {
                beta: want["beta"].as_f64().unwrap(),
                ..Default::default()
            },
            ..TrainConfig::default()
        };
        let trainer = DpoTrainer::new(policy.model, Some(reference), config, &device).unwrap();
        let batch = block_on(trainer.prepare(&pairs(&expected), 0)).unwrap();
        let got =
            serde_json::to_value(block_on(trainer.evaluate(&batch)).unwrap().metrics()).unwrap();
        for metric in [
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/accuracies",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected",
        ] {
            let (g, w) = (
                got[metric].as_f64().unwrap(),
                want[metric].as_f64().unwrap(),
            );
            assert!(
                (g - w).abs() < 1e-4 * w.abs().max(1.0),
                "{name} {metric}: ours {g}, TRL's formulas {w}"
            );
        }
    }
}

#[test]
fn peft_adapters_load_and_match_peft_logits_merged_or_not() {
    let device = Device::flex();
    for name in ["llama", "gpt2"] {
        let (dir, expected) = fixture(name);
        let base = ModelDir::load(&dir, &device).unwrap();
        let adapter = dir.join("adapter");
        let config_json = std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap();
        let weights = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
        let (model, lora) = from_peft(
            base.model,
            &config_json,
            &weights,
            "adapter_model.safetensors",
        )
        .unwrap();
        assert_eq!((lora.r, lora.alpha), (4, 8.0));
        let rows = input_ids(&expected);
        let with_adapter = logits(&model, &rows, &device);
        let diff = max_abs_diff(&with_adapter, &floats(&expected["lora"]["logits"]));
        assert!(
            diff < 1e-4,
            "{name}: LoRA logits differ from PEFT's by {diff}"
        );
        // Merged into full weights and written as a plain checkpoint: the same function.
        let merged_bytes = block_on(to_safetensors(&model, Dtype::F32)).unwrap();
        let merged = from_safetensors(&base.config, &merged_bytes, "merged", &device).unwrap();
        let diff = max_abs_diff(&logits(&merged, &rows, &device), &with_adapter);
        assert!(
            diff < 1e-4,
            "{name}: merged weights differ from the adapter by {diff}"
        );
        // Without its adapters it is the base again, bit for bit.
        assert_eq!(
            logits(&model.without_adapters(), &rows, &device),
            logits(
                &ModelDir::load(&dir, &device).unwrap().model,
                &rows,
                &device
            )
        );
    }
}

fn tensor_map(bytes: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    parse_safetensors(bytes, "file")
        .unwrap()
        .0
        .into_iter()
        .map(|(n, e)| (n, e.shape.clone(), e.to_f32()))
        .collect()
}

#[test]
fn lora_dpo_starts_at_ln2_trains_only_the_adapters_and_exports_as_peft() {
    let device = Device::flex();
    for name in ["llama", "gpt2"] {
        let (dir, expected) = fixture(name);
        let base = ModelDir::load(&dir, &device).unwrap();
        let base_weights = block_on(to_safetensors(&base.model, Dtype::F32)).unwrap();
        let lora = LoraConfig::attention(base.config.arch(), 4, 8.0);
        let policy = lora.apply(base.model, 0).unwrap();
        let config = TrainConfig {
            optim: Optim::AdamW,
            learning_rate: 1e-2,
            ..TrainConfig::default()
        };
        let mut trainer = DpoTrainer::new(policy, None, config, &device).unwrap();
        let batch = block_on(trainer.prepare(&pairs(&expected), 0)).unwrap();
        let mut losses = Vec::new();
        for step in 0..5 {
            let report = block_on(trainer.step(&batch)).unwrap();
            assert!(report.skipped.is_none());
            if step == 0 {
                assert!(
                    (report.metrics.loss - std::f64::consts::LN_2).abs() < 1e-6,
                    "{name}: step-1 loss {}",
                    report.metrics.loss
                );
                assert_eq!(report.metrics.rewards_margins, 0.0);
            }
            losses.push(report.metrics.loss);
        }
        assert!(
            losses[4] < losses[0] - 0.01,
            "{name}: LoRA DPO did not lower the loss: {losses:?}"
        );
        let trained = trainer.policy();
        // The base weights are untouched, bit for bit; the reference is the base.
        assert!(
            block_on(to_safetensors(&trained.without_adapters(), Dtype::F32)).unwrap()
                == base_weights,
            "{name}: base weights changed"
        );
        assert!(
            block_on(to_safetensors(trainer.reference().unwrap(), Dtype::F32)).unwrap()
                == base_weights
        );
        // The saved state is the adapter (PEFT's file) and optimizer state for the adapters only;
        // the adapter file puts the trained policy back on the base.
        let (weights_state, optimizer) = block_on(trainer.save_state()).unwrap();
        assert!(
            tensor_map(&optimizer)
                .iter()
                .all(|(n, _, _)| n.contains(".lora_")),
            "{name}: optimizer state outside the adapters"
        );
        let restored = attach_peft_weights(
            trainer.reference().unwrap().clone(),
            4,
            8.0,
            &weights_state,
            "state",
        )
        .unwrap();
        assert_eq!(
            logits(&restored, &input_ids(&expected), &device),
            logits(&trained, &input_ids(&expected), &device)
        );
        // Exported as PEFT writes it: the fixture's tensor names and shapes and config keys.
        let (config_json, weights) = block_on(to_peft(&trained, &lora)).unwrap();
        let peft = dir.join("adapter");
        let theirs: Value =
            serde_json::from_slice(&std::fs::read(peft.join("adapter_config.json")).unwrap())
                .unwrap();
        let ours: Value = serde_json::from_str(&config_json).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(&ours),
            keys(&theirs),
            "{name}: adapter_config.json keys"
        );
        assert_eq!(ours["fan_in_fan_out"], theirs["fan_in_fan_out"]);
        let shapes = |bytes: &[u8]| {
            tensor_map(bytes)
                .into_iter()
                .map(|(n, s, _)| (n, s))
                .collect::<Vec<_>>()
        };
        let their_shapes = shapes(&std::fs::read(peft.join("adapter_model.safetensors")).unwrap());
        let our_shapes: Vec<_> = shapes(&weights)
            .into_iter()
            .filter(|(n, _)| their_shapes.iter().any(|(t, _)| t == n))
            .collect();
        assert_eq!(
            our_shapes, their_shapes,
            "{name}: PEFT's tensors (the fixture targets a subset of ours)"
        );
        // … and reloads onto the base as the same model.
        let (reloaded, again) = from_peft(
            ModelDir::load(&dir, &device).unwrap().model,
            &config_json,
            &weights,
            "ours",
        )
        .unwrap();
        assert_eq!(
            (again.r, again.alpha, &again.targets),
            (lora.r, lora.alpha, &lora.targets)
        );
        let rows = input_ids(&expected);
        assert_eq!(
            logits(&reloaded, &rows, &device),
            logits(&trained, &rows, &device)
        );
        // Reset: the adapters as they started (B = 0), i.e. the reference's function.
        trainer.reset().unwrap();
        assert_eq!(
            logits(&trainer.policy(), &rows, &device),
            logits(trainer.reference().unwrap(), &rows, &device)
        );
        assert!(trainer.policy().has_adapters());
    }
}

#[test]
fn bad_adapters_are_refused_by_name() {
    let device = Device::flex();
    let (dir, _) = fixture("llama");
    let config_json = std::fs::read_to_string(dir.join("adapter/adapter_config.json")).unwrap();
    let weights = std::fs::read(dir.join("adapter/adapter_model.safetensors")).unwrap();
    // GPT-2's adapter names layers a Llama does not have.
    let gpt2 = std::fs::read(fixture("gpt2").0.join("adapter/adapter_model.safetensors")).unwrap();
    let err = from_peft(
        ModelDir::load(&dir, &device).unwrap().model,
        &config_json,
        &gpt2,
        "adapter_model.safetensors",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("transformer.h.0.attn.c_attn"), "{err}");
    let dora = config_json.replace("\"use_dora\": false", "\"use_dora\": true");
    let err = from_peft(
        ModelDir::load(&dir, &device).unwrap().model,
        &dora,
        &weights,
        "adapter_model.safetensors",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("use_dora"), "{err}");
    let err = from_peft(
        ModelDir::load(&dir, &device).unwrap().model,
        &config_json,
        &weights[..weights.len() - 8],
        "adapter_model.safetensors",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn a_truncated_shard_is_refused_by_name() {
    let (dir, _) = fixture("llama");
    let copy = std::env::temp_dir().join(format!("webdpo-truncated-{}", std::process::id()));
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    let shard = copy.join("model-00002-of-00004.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    let err = ModelDir::load(&copy, &Device::flex())
        .err()
        .expect("a truncated shard must be refused")
        .to_string();
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(
        err.contains("model-00002-of-00004.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn an_unknown_architecture_is_refused_by_name() {
    let (dir, _) = fixture("llama");
    let config = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("LlamaForCausalLM", "MistralForCausalLM");
    let err = webdpo::ModelConfig::from_json(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("MistralForCausalLM") && err.contains("Qwen2ForCausalLM"),
        "{err}"
    );
}

#[test]
fn chat_templates_format_prompts_and_completions_as_transformers_and_trl_do() {
    let device = Device::flex();
    for name in ["llama", "qwen2", "gpt2"] {
        let (dir, expected) = fixture(name);
        let chat = &expected["chat"];
        let tokenizer = ModelDir::load(&dir, &device).unwrap().tokenizer().unwrap();
        let template = tokenizer
            .chat_template()
            .expect("the fixture has a chat template");
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        assert_eq!(
            template.render(&messages, true).unwrap(),
            chat["prompt"].as_str().unwrap(),
            "{name}"
        );
        // One JSONL line in TRL's conversational form, and the same prompt as plain text.
        let said = |content: &str| serde_json::json!([{"role": "assistant", "content": content}]);
        let line = serde_json::json!({
            "prompt": messages,
            "chosen": said("The bear sat on the mat."),
            "rejected": said("No."),
        });
        let pair = parse_jsonl(&line.to_string(), "pairs.jsonl")
            .unwrap()
            .remove(0);
        let tokenized = TokenizedPair::new(&tokenizer, &pair, Trainer::Dpo).unwrap();
        assert_eq!(tokenized.prompt, ids(&chat["prompt_ids"]), "{name}");
        assert_eq!(tokenized.chosen, ids(&chat["completion_ids"]), "{name}");
        assert_eq!(
            tokenizer.encode_prompt(&messages[0].content).unwrap(),
            ids(&chat["prompt_ids"])
        );
        assert_eq!(
            tokenizer.decode(&tokenized.chosen).unwrap(),
            "The bear sat on the mat.\n",
            "{name}: the turn ends with the end-of-turn token"
        );
    }
}

/// Text rows are tokenized as TRL 1.16 does: without the chat template even when the model has
/// one, the prompt and each prompt + completion whole, the completions starting where they first
/// differ from the prompt (so a token merging across the boundary belongs to the completion).
#[test]
fn text_rows_are_tokenized_whole_and_without_the_template() {
    let device = Device::flex();
    let (dir, _) = fixture("gpt2");
    let tokenizer = ModelDir::load(&dir, &device).unwrap().tokenizer().unwrap();
    assert!(tokenizer.chat_template().is_some());
    let plain = tokenizer.clone().with_chat_template(None);
    let eos = tokenizer.eos_id();
    // "Hello " + "a fox": the fixture's BPE merges " a" (Ġ a) across the boundary.
    let pair = parse_jsonl(
        r#"{"prompt": "Hello ", "chosen": "a fox", "rejected": "a cat, friend"}"#,
        "pairs.jsonl",
    )
    .unwrap()
    .remove(0);
    let t = TokenizedPair::new(&tokenizer, &pair, Trainer::Dpo).unwrap();
    let whole = |text: &str| [plain.encode_prompt(text).unwrap(), vec![eos]].concat();
    assert_eq!(
        [t.prompt.clone(), t.chosen.clone()].concat(),
        whole("Hello a fox")
    );
    assert_eq!(
        [t.prompt.clone(), t.rejected.clone()].concat(),
        whole("Hello a cat, friend")
    );
    let prompt = plain.encode_prompt("Hello ").unwrap();
    assert!(
        prompt.starts_with(&t.prompt),
        "the prompt is the shared start of its tokens"
    );
    assert!(
        t.prompt.len() < prompt.len(),
        "the boundary's merged token went to the completions: {:?} vs {prompt:?}",
        t.prompt
    );
    // A completion that already ends with the EOS token's text gets no second EOS, as in TRL.
    let eos_text = plain.eos_token().unwrap();
    let ended = parse_jsonl(
        &serde_json::json!({"prompt": "Hi", "chosen": format!("a fox{eos_text}"), "rejected": "a cat"})
            .to_string(),
        "pairs.jsonl",
    )
    .unwrap()
    .remove(0);
    let t = TokenizedPair::new(&tokenizer, &ended, Trainer::Dpo).unwrap();
    assert_eq!([t.prompt, t.chosen].concat(), whole("Hia fox"));
}

#[test]
fn conversational_pairs_without_a_chat_template_are_refused() {
    let config = webdpo::ModelConfig::byte_level(32, 1, 4, 64);
    let tokenizer =
        TextTokenizer::from_bytes(byte_level_tokenizer_json().as_bytes(), &config).unwrap();
    let row = concat!(
        r#"{"prompt": [{"role": "user", "content": "Hi"}], "#,
        r#""chosen": "Hello.", "rejected": "Go away."}"#
    );
    let pair = parse_jsonl(row, "pairs.jsonl").unwrap().remove(0);
    let err = TokenizedPair::new(&tokenizer, &pair, Trainer::Dpo)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chat template"), "{err}");
    let err = parse_jsonl(
        r#"{"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}"#,
        "pairs.jsonl",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("pairs.jsonl") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn memory_estimate_counts_what_the_model_allocates() {
    use burn::module::Module;
    let device = Device::flex();
    for name in ["llama", "qwen2", "gpt2"] {
        let dir = ModelDir::load(&fixture(name).0, &device).unwrap();
        assert_eq!(
            parameter_count(&dir.config),
            dir.model.num_params() as u64,
            "{name}"
        );
        for lora in [
            LoraConfig::attention(dir.config.arch(), 4, 8.0),
            LoraConfig::parse("2,4,all-linear", dir.config.arch()).unwrap(),
        ] {
            let trainable: usize = lora
                .apply(dir.model.clone(), 0)
                .unwrap()
                .trainable_tensors()
                .iter()
                .map(|(_, s, _)| s.iter().product::<usize>())
                .sum();
            assert_eq!(
                lora_parameter_count(&dir.config, &lora),
                trainable as u64,
                "{name} {lora:?}"
            );
        }
    }
}

/// SmolLM2-135M's config.json (HuggingFaceTB/SmolLM2-135M), as the browser test builds it.
fn smollm2_135m() -> webdpo::ModelConfig {
    let mut c = webdpo::ModelConfig::new(49152, 576, 30, 9, 1536);
    (
        c.num_key_value_heads,
        c.tie_word_embeddings,
        c.rope_theta,
        c.norm_eps,
        c.max_position_embeddings,
    ) = (Some(3), true, 100000.0, 1e-5, 8192);
    c
}

#[test]
fn memory_check_refuses_full_training_of_a_135m_model_on_a_small_budget_and_suggests_lora() {
    let c = smollm2_135m();
    assert_eq!(
        parameter_count(&c),
        134_515_008,
        "SmolLM2-135M's published parameter count"
    );
    let lora = LoraConfig::attention(c.arch(), 8, 16.0);
    let full = MemoryEstimate::new(&c, None, Optim::AdamW, 1, 256);
    let adapters = MemoryEstimate::new(&c, Some(&lora), Optim::AdamW, 1, 256);
    assert_eq!(
        (full.reference, adapters.reference),
        (full.weights, 0),
        "LoRA's reference is the base itself"
    );
    assert!(adapters.optimizer * 100 < full.optimizer);
    let limits = MemoryLimits {
        max_buffer: Some(1 << 30),
        budget: 2_000_000_000,
    };
    let err = full
        .check(&limits, Some(&adapters))
        .err()
        .expect("full fine-tuning does not fit in 2 GB")
        .to_string();
    assert!(
        err.contains("turn LoRA on") && err.contains("optimizer"),
        "{err}"
    );
    adapters.check(&limits, None).unwrap();
    // The token embedding (113 MB) cannot live in a 64 MiB binding, LoRA or not.
    let err = adapters
        .check(
            &MemoryLimits {
                max_buffer: Some(64 << 20),
                budget: u64::MAX,
            },
            None,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("buffer"), "{err}");
}

/// What a picked folder sends to the model: the files transformers' folder holds for loading,
/// nothing else (other formats' weights, READMEs, our fixtures' expected.json), in their order; a
/// folder without config.json is refused by name.
#[test]
fn a_folder_sends_only_the_files_loading_reads() {
    let (dir, _) = fixture("llama");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .chain(
            [
                "README.md",
                "pytorch_model.bin",
                "model.onnx",
                "model-1-of-x.safetensors",
            ]
            .map(String::from),
        )
        .collect();
    names.sort();
    let read = webdpo::ModelFiles::select(&names, "llama").unwrap();
    let expected = [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model-00001-of-00004.safetensors",
        "model-00002-of-00004.safetensors",
        "model-00003-of-00004.safetensors",
        "model-00004-of-00004.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ];
    assert_eq!(read, expected);
    let without: Vec<String> = names.into_iter().filter(|n| n != "config.json").collect();
    let refused = webdpo::ModelFiles::select(&without, "my-model").unwrap_err();
    assert_eq!(refused.kind(), webdpo::ErrorKind::Format);
    assert!(
        refused.to_string().contains("my-model has no config.json"),
        "{refused}"
    );
}

/// TRL 1.16's experimental CPOTrainer and ORPOTrainer (tools/trl_cpo_fixtures.py ran them on
/// the fixtures): they tokenize with the older DPO rules (BOS before the prompt, EOS after
/// each completion, the chat template applied as text first), and our CPO, SimPO and ORPO
/// metrics of the same batch equal theirs.
#[test]
fn cpo_and_orpo_match_trl_trainers() {
    use webdpo::train::{CpoConfig, OrpoConfig, PreferencePair};
    let device = Device::flex();
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cpo_orpo.json")).unwrap())
            .unwrap();
    for case in all["cases"].as_array().unwrap() {
        let what = format!(
            "{} {} {} {}",
            case["model"], case["data"], case["trainer"], case["settings"]
        );
        let dir = fixtures().join(case["model"].as_str().unwrap());
        let loaded = ModelDir::load(&dir, &device).unwrap();
        let tokenizer = loaded.tokenizer().unwrap();
        let s = &case["settings"];
        let (trainer, config) = match case["trainer"].as_str().unwrap() {
            "cpo" => (
                Trainer::Cpo,
                TrainConfig {
                    trainer: Trainer::Cpo,
                    cpo: CpoConfig {
                        beta: s["beta"].as_f64().unwrap(),
                        loss_type: s["loss_type"].as_str().unwrap().parse().unwrap(),
                        simpo_gamma: s["simpo_gamma"].as_f64().unwrap_or(0.5),
                        cpo_alpha: s["cpo_alpha"].as_f64().unwrap_or(1.0),
                        ..CpoConfig::default()
                    },
                    max_length: 64,
                    ..TrainConfig::default()
                },
            ),
            _ => (
                Trainer::Orpo,
                TrainConfig {
                    trainer: Trainer::Orpo,
                    orpo: OrpoConfig {
                        beta: s["beta"].as_f64().unwrap(),
                    },
                    max_length: 64,
                    ..TrainConfig::default()
                },
            ),
        };
        let pairs: Vec<TokenizedPair> = case["rows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["tokenized"].as_array().unwrap())
            .map(|(row, want)| {
                let pair: PreferencePair = serde_json::from_value(row.clone()).unwrap();
                let got = TokenizedPair::new(&tokenizer, &pair, trainer).unwrap();
                for (side, ids_got) in [
                    ("prompt", &got.prompt),
                    ("chosen", &got.chosen),
                    ("rejected", &got.rejected),
                ] {
                    assert_eq!(ids_got, &ids(&want[side]), "{what}: {side} of {row}");
                }
                got
            })
            .collect();
        let dpo = DpoTrainer::new(loaded.model, None, config, &device).unwrap();
        let batch = block_on(dpo.prepare(&pairs, tokenizer.pad_id())).unwrap();
        let got = serde_json::to_value(block_on(dpo.evaluate(&batch)).unwrap().metrics()).unwrap();
        for (metric, want) in case["metrics"].as_object().unwrap() {
            if metric.starts_with("logits/") {
                continue; // TRL's mean logit over the vocabulary: not one of our metrics
            }
            let (g, w) = (got[metric].as_f64().unwrap(), want.as_f64().unwrap());
            assert!(
                (g - w).abs() < 1e-4 * w.abs().max(1.0),
                "{what} {metric}: ours {g}, TRL's {w}"
            );
        }
    }
}
