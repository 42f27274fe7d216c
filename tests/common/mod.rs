//! Tiny random models and pairs shared by the native tests.
#![allow(dead_code)]

use burn::tensor::Device;
use webdpo::ModelConfig;
use webdpo::hf::tokenizer::{TextTokenizer, byte_level_tokenizer_json};
use webdpo::model::CausalLm;
use webdpo::train::Trainer;
use webdpo::train::data::PreferencePair;
use webdpo::train::logps::TokenizedPair;

/// A 2-layer model over the byte-level vocabulary with grouped-query attention.
pub fn tiny_config() -> ModelConfig {
    let mut c = ModelConfig::byte_level(32, 2, 4, 64);
    c.num_key_value_heads = Some(2);
    c.max_position_embeddings = 128;
    c
}

pub fn tiny_model(seed: u64, device: &Device) -> CausalLm {
    CausalLm::init(&tiny_config(), seed, device).unwrap()
}

pub fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_bytes(byte_level_tokenizer_json().as_bytes(), &tiny_config()).unwrap()
}

pub fn pairs() -> Vec<PreferencePair> {
    let p = |prompt: &str, chosen: &str, rejected: &str| PreferencePair {
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
    };
    vec![
        p("Q: 2+2?\nA:", " 4", " five, I think"),
        p(
            "Write a happy ending:",
            " and they smiled.",
            " and it rained forever, sadly.",
        ),
    ]
}

pub fn tokenized_pairs() -> Vec<TokenizedPair> {
    let t = tokenizer();
    pairs()
        .iter()
        .map(|p| TokenizedPair::new(&t, p, Trainer::Dpo).unwrap())
        .collect()
}

/// The largest `|a[i] − b[i]|`, in f64 (exact for f32 inputs).
pub fn max_abs_diff<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.into() - y.into()).abs())
        .fold(0.0, f64::max)
}

pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tolerance {tol})");
}

/// `log σ(x)` in f64.
pub fn ln_sigmoid(x: f64) -> f64 {
    -(1.0 + (-x).exp()).ln()
}
