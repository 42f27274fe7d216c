//! Hugging Face checkpoints against transformers' own numbers: the fixtures in
//! tests/fixtures/hf/ were written by tools/hf_fixtures.py (transformers `save_pretrained`,
//! logits of fixed token ids, TRL's DPO formulas for fixed pairs).
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use webdpo::block_on;
use webdpo::checkpoint::from_safetensors;
use webdpo::logps::TokenizedPair;
use webdpo::model_dir::ModelDir;
use webdpo::trainer::{DpoTrainer, TrainConfig};

fn fixture(name: &str) -> (PathBuf, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name);
    let expected = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn llama_with_gqa_untied_head_and_shards_matches_transformers_logits() {
    let (dir, expected) = fixture("llama");
    assert!(dir.join("model.safetensors.index.json").exists(), "the fixture is sharded");
    let device = Device::flex();
    let loaded = ModelDir::load(&dir, &device).unwrap();
    assert_eq!((loaded.config.kv_heads(), loaded.config.tie_word_embeddings), (2, false));
    let rows: Vec<Vec<u32>> = expected["input_ids"].as_array().unwrap().iter().map(ids).collect();
    let (b, t) = (rows.len(), rows[0].len());
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(rows.concat().iter().map(|&i| i as i64).collect::<Vec<_>>(), [b, t]), &device);
    let logits: Vec<f64> = loaded.model.forward(tokens, None).into_data().convert::<f32>().try_to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
    let diff = max_diff(&logits, &floats(&expected["logits"]));
    assert!(diff < 1e-4, "logits differ from transformers' by {diff}");
}

#[test]
fn llama_dpo_metrics_match_trl_formulas() {
    let (dir, expected) = fixture("llama");
    let device = Device::flex();
    let policy = ModelDir::load(&dir, &device).unwrap();
    let reference = from_safetensors(&policy.config, &std::fs::read(dir.join("reference/model.safetensors")).unwrap(), "reference", &device).unwrap();
    let pairs: Vec<TokenizedPair> = expected["pairs"].as_array().unwrap().iter().map(|p| TokenizedPair { prompt: ids(&p["prompt"]), chosen: ids(&p["chosen"]), rejected: ids(&p["rejected"]) }).collect();
    let want = &expected["dpo"];
    let config = TrainConfig { dpo: webdpo::dpo::DpoConfig { beta: want["beta"].as_f64().unwrap(), ..Default::default() }, ..TrainConfig::default() };
    let trainer = DpoTrainer::new(policy.model, Some(reference), config, &device).unwrap();
    let batch = block_on(trainer.prepare(&pairs, 0)).unwrap();
    let got = serde_json::to_value(block_on(trainer.evaluate(&batch)).unwrap().metrics()).unwrap();
    for name in ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"] {
        let (g, w) = (got[name].as_f64().unwrap(), want[name].as_f64().unwrap());
        assert!((g - w).abs() < 1e-4 * w.abs().max(1.0), "{name}: ours {g}, TRL's formulas {w}");
    }
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
    let err = ModelDir::load(&copy, &Device::flex()).err().expect("a truncated shard must be refused").to_string();
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(err.contains("model-00002-of-00004.safetensors") && err.contains("truncated"), "{err}");
}

#[test]
fn unsupported_architectures_are_refused_by_name() {
    for (name, arch) in [("qwen2", "Qwen2ForCausalLM"), ("gpt2", "GPT2LMHeadModel")] {
        let (dir, _) = fixture(name);
        let err = ModelDir::load(&dir, &Device::flex()).err().expect("not supported yet").to_string();
        assert!(err.contains(arch), "{err}");
    }
}
