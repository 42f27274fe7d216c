//! The model config, with Hugging Face `LlamaConfig` field names so that a `config.json` written
//! by transformers loads here and ours loads there. Qwen2 configs share those names; a GPT-2
//! config (`n_embd`, `n_layer`, …) is read into the same fields, and every HF config is written
//! back exactly as it was read.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use crate::model::{ARCHS, Arch};

fn unsupported(names: &impl std::fmt::Debug) -> Error {
    Error::Config(format!(
        "architecture {names:?} is not supported (expected one of {:?})",
        ARCHS.map(|s| s.class)
    ))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub struct ModelConfig {
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads of keys/values, each shared by
    /// `num_attention_heads / num_key_value_heads` query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub intermediate_size: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// The norms' ε: RMSNorm's (`rms_norm_eps`, Llama and Qwen2) or LayerNorm's (GPT-2's
    /// `layer_norm_epsilon`).
    #[serde(rename = "rms_norm_eps", default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Llama 3-style configs list several end tokens; the first is the one completions end with.
    #[serde(default, deserialize_with = "first_id")]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// transformers ≥ 5 writes `rope_theta` inside this
    /// (`{"rope_type": "default", "rope_theta": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "unknown"))]
    pub rope_parameters: Option<serde_json::Value>,
    /// Long-context RoPE variants (linear, dynamic, YaRN, llama3) are not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "unknown"))]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_bias: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mlp_bias: bool,
    /// Qwen2's sliding-window attention (off in its released small models) is not implemented.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_sliding_window: bool,
    /// The config.json this was read from, written back unchanged by [`ModelConfig::to_json`] so
    /// that fields this crate does not use survive a save.
    #[serde(skip)]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "unknown"))]
    pub source: Option<serde_json::Value>,
}

fn first_id<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(ids) => ids.first().and_then(|v| v.as_u64()).map(|v| v as u32),
        v => v.as_u64().map(|v| v as u32),
    })
}

/// GPT-2's config.json, in its own names.
#[derive(Deserialize)]
struct Gpt2Json {
    vocab_size: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    #[serde(default)]
    n_inner: Option<usize>,
    n_positions: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_gpt2_act")]
    activation_function: String,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default, deserialize_with = "first_id")]
    eos_token_id: Option<u32>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    #[serde(default = "default_true")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}

fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_gpt2_act() -> String {
    "gelu_new".into()
}
fn default_true() -> bool {
    true
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

impl ModelConfig {
    /// A config for [`crate::hf::tokenizer::byte_level_tokenizer_json`]'s vocabulary (its specials
    /// `<pad>`, `<s>`, `</s>` first, then the 256 bytes), with HF defaults for the rest.
    pub fn byte_level(
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        let specials = crate::hf::tokenizer::BYTE_LEVEL_SPECIALS.len();
        let mut c = Self::new(
            specials + 256,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
        );
        (c.pad_token_id, c.bos_token_id, c.eos_token_id) = (Some(0), Some(1), Some(2));
        c
    }

    /// A config with HF defaults for everything but the sizes.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
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
            norm_eps: default_norm_eps(),
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
            use_sliding_window: false,
            source: None,
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        // Name the architecture before complaining about fields another architecture names
        // differently.
        let arch = match value.get("architectures").and_then(|a| a.as_array()) {
            Some(archs) => Arch::from_classes(archs.iter().filter_map(|a| a.as_str()))
                .ok_or_else(|| unsupported(archs))?,
            None => Arch::Llama,
        };
        let mut config = match arch {
            Arch::Gpt2 => Self::from_gpt2(serde_json::from_value(value.clone()).map_err(|e| {
                Error::Config(format!("config.json is not a valid GPT-2 config: {e}"))
            })?)?,
            _ => serde_json::from_value(value.clone()).map_err(|e| {
                Error::Config(format!(
                    "config.json is not a valid {} config: {e}",
                    arch.spec().class
                ))
            })?,
        };
        if let Some(theta) = config
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|t| t.as_f64())
        {
            config.rope_theta = theta;
        }
        config.source = Some(value);
        config.validate()?;
        Ok(config)
    }

    fn from_gpt2(g: Gpt2Json) -> Result<Self> {
        if !g.scale_attn_weights || g.scale_attn_by_inverse_layer_idx {
            return Err(Error::Config(
                "GPT-2 attention must be scaled by 1/sqrt(head_dim) only \
                (scale_attn_weights true, scale_attn_by_inverse_layer_idx false)"
                    .into(),
            ));
        }
        let mut c = Self::new(
            g.vocab_size,
            g.n_embd,
            g.n_layer,
            g.n_head,
            g.n_inner.unwrap_or(4 * g.n_embd),
        );
        c.architectures = vec!["GPT2LMHeadModel".into()];
        c.model_type = "gpt2".into();
        c.max_position_embeddings = g.n_positions;
        c.norm_eps = g.layer_norm_epsilon;
        c.hidden_act = g.activation_function;
        c.initializer_range = g.initializer_range;
        c.tie_word_embeddings = g.tie_word_embeddings;
        (c.bos_token_id, c.eos_token_id, c.pad_token_id) =
            (g.bos_token_id, g.eos_token_id, g.pad_token_id);
        Ok(c)
    }

    /// The architecture named by `architectures` (Llama when it names none).
    pub fn arch(&self) -> Arch {
        Arch::from_classes(self.architectures.iter().map(String::as_str)).unwrap_or(Arch::Llama)
    }

    pub fn to_json(&self) -> String {
        let value = self
            .source
            .clone()
            .unwrap_or_else(|| serde_json::to_value(self).expect("a config always serialises"));
        serde_json::to_string_pretty(&value).expect("a config always serialises")
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
        if !self.architectures.is_empty()
            && Arch::from_classes(self.architectures.iter().map(String::as_str)).is_none()
        {
            return Err(unsupported(&self.architectures));
        }
        let act = self.arch().spec().activations;
        if !act.contains(&self.hidden_act.as_str()) {
            return fail(format!(
                "activation {:?} is not supported for {:?} (expected {act:?})",
                self.hidden_act,
                self.arch()
            ));
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
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if let Some(hd) = self.head_dim
            && hd != self.head_dim()
        {
            return fail(format!(
                "head_dim {hd} differs from hidden_size / num_attention_heads = {}; not supported",
                self.head_dim()
            ));
        }
        if let Some(rope_type) = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_type"))
            .and_then(|t| t.as_str())
            && rope_type != "default"
        {
            return fail(format!(
                "RoPE type {rope_type:?} is not supported; only plain rotary embeddings"
            ));
        }
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return fail(format!(
                "RoPE scaling {scaling} is not supported; only plain rotary embeddings"
            ));
        }
        if self.attention_bias || self.mlp_bias {
            return fail("attention_bias / mlp_bias are not supported for LlamaForCausalLM".into());
        }
        if self.use_sliding_window {
            return fail(
                "Qwen2 sliding-window attention (use_sliding_window: true) is not supported".into(),
            );
        }
        let rotary = self.arch().spec().embed_positions.is_none();
        if rotary && self.head_dim() % 2 != 0 {
            return fail(format!(
                "head dimension {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return fail(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !(self.rope_theta > 0.0 && self.norm_eps > 0.0) {
            return fail("rope_theta and the norm epsilon must be positive".into());
        }
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return fail(format!(
                    "{name} {id} is outside the vocabulary of {}",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }
}
