//! The model config, with Hugging Face `LlamaConfig` field names so that a `config.json` written
//! by transformers loads here and ours loads there.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads of keys/values shared by `num_attention_heads / num_key_value_heads` query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub intermediate_size: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// transformers ≥ 5 writes `rope_theta` inside this (`{"rope_type": "default", "rope_theta": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Long-context RoPE variants (linear, dynamic, YaRN, llama3) are not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_bias: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mlp_bias: bool,
}

fn default_architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".into()]
}
fn default_model_type() -> String {
    "llama".into()
}
fn default_max_positions() -> usize {
    2048
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_norm_eps() -> f64 {
    1e-6
}
fn default_init_range() -> f64 {
    0.02
}
fn default_hidden_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// A config with HF defaults for everything but the sizes.
    pub fn new(vocab_size: usize, hidden_size: usize, num_hidden_layers: usize, num_attention_heads: usize, intermediate_size: usize) -> Self {
        Self {
            architectures: default_architectures(),
            model_type: default_model_type(),
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: None,
            intermediate_size,
            max_position_embeddings: 256,
            rope_theta: default_rope_theta(),
            rms_norm_eps: default_norm_eps(),
            tie_word_embeddings: false,
            initializer_range: default_init_range(),
            hidden_act: default_hidden_act(),
            bos_token_id: None,
            eos_token_id: None,
            pad_token_id: None,
            rope_parameters: None,
            rope_scaling: None,
            head_dim: None,
            attention_bias: false,
            mlp_bias: false,
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        // Name the architecture before complaining about fields another architecture names differently.
        if let Some(archs) = value.get("architectures").and_then(|a| a.as_array())
            && !archs.iter().any(|a| a == "LlamaForCausalLM")
        {
            return Err(Error::Config(format!("architecture {archs:?} is not supported (expected LlamaForCausalLM)")));
        }
        let mut config: Self = serde_json::from_value(value).map_err(|e| Error::Config(format!("config.json is not a valid Llama config: {e}")))?;
        if let Some(theta) = config.rope_parameters.as_ref().and_then(|p| p.get("rope_theta")).and_then(|t| t.as_f64()) {
            config.rope_theta = theta;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Refuses configs that would build a broken model, with the reason.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if !self.architectures.is_empty() && !self.architectures.iter().any(|a| a == "LlamaForCausalLM") {
            return fail(format!("architecture {:?} is not supported (expected LlamaForCausalLM)", self.architectures));
        }
        if self.hidden_act != "silu" {
            return fail(format!("hidden_act {:?} is not supported (expected \"silu\")", self.hidden_act));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return fail(format!("{name} must be positive"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return fail(format!("hidden_size {} is not divisible by num_attention_heads {}", self.hidden_size, self.num_attention_heads));
        }
        if let Some(hd) = self.head_dim
            && hd != self.head_dim()
        {
            return fail(format!("head_dim {hd} differs from hidden_size / num_attention_heads = {}; not supported", self.head_dim()));
        }
        if let Some(rope_type) = self.rope_parameters.as_ref().and_then(|p| p.get("rope_type")).and_then(|t| t.as_str())
            && rope_type != "default"
        {
            return fail(format!("RoPE type {rope_type:?} is not supported; only plain rotary embeddings"));
        }
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return fail(format!("RoPE scaling {scaling} is not supported; only plain rotary embeddings"));
        }
        if self.attention_bias || self.mlp_bias {
            return fail("attention_bias / mlp_bias are not supported for LlamaForCausalLM".into());
        }
        if self.head_dim() % 2 != 0 {
            return fail(format!("head dimension {} must be even for rotary embeddings", self.head_dim()));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return fail(format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads()));
        }
        if !(self.rope_theta > 0.0 && self.rms_norm_eps > 0.0) {
            return fail("rope_theta and rms_norm_eps must be positive".into());
        }
        for (name, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id), ("pad_token_id", self.pad_token_id)] {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return fail(format!("{name} {id} is outside the vocabulary of {}", self.vocab_size));
            }
        }
        Ok(())
    }
}
