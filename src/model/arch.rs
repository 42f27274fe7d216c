//! What tells one transformers architecture from another, in one table: the HF class, the
//! module names, the layouts of attention and feed-forward, biases, the norm, the positions, the
//! activation and LoRA's default targets. Config, model, memory estimate and PEFT code read it;
//! an architecture built from these layer kinds is one more entry in [`ARCHS`].

use crate::model::ModelConfig;

/// The transformers architectures this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM`: RMSNorm, RoPE, grouped-query attention, SwiGLU.
    Llama,
    /// `Qwen2ForCausalLM`: Llama with biases on the query, key and value projections.
    Qwen2,
    /// `GPT2LMHeadModel`: LayerNorm, learned positions, GELU, fused Conv1D projections, tied head.
    Gpt2,
}

/// How a block's attention projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionLayout {
    /// `q_proj`, `k_proj`, `v_proj` (with biases when `qkv_bias`) and `o_proj` (without).
    Separate { qkv_bias: bool },
    /// One `c_attn` producing q, k and v, and `c_proj`; both with biases.
    Fused,
}

/// How a block's feed-forward is stored and what it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpLayout {
    /// `down_proj(act(gate_proj(x)) · up_proj(x))`, no biases (SwiGLU).
    Gated,
    /// `c_proj(act(c_fc(x)))`, with biases (GELU).
    Plain,
}

/// The normalisation before attention, before the feed-forward and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm: a weight.
    Rms,
    /// LayerNorm: a weight and a bias.
    Layer,
}

/// One architecture: every fact the code needs about it.
#[derive(Debug)]
pub struct ArchSpec {
    pub arch: Arch,
    /// The `architectures` entry of config.json, and the transformers module that defines it
    /// (PEFT's `auto_mapping`).
    pub class: &'static str,
    pub module: &'static str,
    /// `hidden_act` values this crate computes for it.
    pub activations: &'static [&'static str],
    pub embed_tokens: &'static str,
    /// Learned absolute positions `[max_positions, hidden]` under this name; `None`: RoPE.
    pub embed_positions: Option<&'static str>,
    /// Blocks are `{blocks}.{i}`.
    pub blocks: &'static str,
    pub final_norm: &'static str,
    /// Module names inside a block.
    pub attn_norm: &'static str,
    pub attn: &'static str,
    pub mlp_norm: &'static str,
    pub mlp: &'static str,
    pub norm: NormKind,
    pub attention: AttentionLayout,
    pub feed_forward: MlpLayout,
    /// Linear weights stored `[in, out]` (GPT-2's Conv1D; PEFT's `fan_in_fan_out`).
    pub conv1d: bool,
    /// LoRA's targets when only the attention projections train (PEFT's usual choice).
    pub lora_attention: &'static [&'static str],
}

const LLAMA: ArchSpec = ArchSpec {
    arch: Arch::Llama,
    class: "LlamaForCausalLM",
    module: "transformers.models.llama.modeling_llama",
    activations: &["silu"],
    embed_tokens: "model.embed_tokens.weight",
    embed_positions: None,
    blocks: "model.layers",
    final_norm: "model.norm",
    attn_norm: "input_layernorm",
    attn: "self_attn",
    mlp_norm: "post_attention_layernorm",
    mlp: "mlp",
    norm: NormKind::Rms,
    attention: AttentionLayout::Separate { qkv_bias: false },
    feed_forward: MlpLayout::Gated,
    conv1d: false,
    lora_attention: &["q_proj", "k_proj", "v_proj", "o_proj"],
};

pub const ARCHS: [ArchSpec; 3] = [
    LLAMA,
    ArchSpec {
        arch: Arch::Qwen2,
        class: "Qwen2ForCausalLM",
        module: "transformers.models.qwen2.modeling_qwen2",
        attention: AttentionLayout::Separate { qkv_bias: true },
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Gpt2,
        class: "GPT2LMHeadModel",
        module: "transformers.models.gpt2.modeling_gpt2",
        activations: &["gelu_new", "gelu_pytorch_tanh"],
        embed_tokens: "transformer.wte.weight",
        embed_positions: Some("transformer.wpe.weight"),
        blocks: "transformer.h",
        final_norm: "transformer.ln_f",
        attn_norm: "ln_1",
        attn: "attn",
        mlp_norm: "ln_2",
        mlp: "mlp",
        norm: NormKind::Layer,
        attention: AttentionLayout::Fused,
        feed_forward: MlpLayout::Plain,
        conv1d: true,
        lora_attention: &["c_attn", "attn.c_proj"],
    },
];

/// A linear layer as stored: sizes, bias, and the Conv1D layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearSpec {
    pub d_in: usize,
    pub d_out: usize,
    pub bias: bool,
    pub conv1d: bool,
}

impl Arch {
    pub fn spec(self) -> &'static ArchSpec {
        ARCHS
            .iter()
            .find(|s| s.arch == self)
            .expect("every Arch has an entry in ARCHS")
    }

    /// The first of `names` (config.json's `architectures`) this crate implements.
    pub fn from_classes<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<Arch> {
        names.find_map(|n| ARCHS.iter().find(|s| s.class == n).map(|s| s.arch))
    }
}

impl ArchSpec {
    /// The linear layers of one block, by name under the block, in load order.
    pub fn block_linears(&self, c: &ModelConfig) -> Vec<(String, LinearSpec)> {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        let (q, kv) = (
            c.num_attention_heads * c.head_dim(),
            c.kv_heads() * c.head_dim(),
        );
        let conv1d = self.conv1d;
        let linear = |d_in, d_out, bias| LinearSpec {
            d_in,
            d_out,
            bias,
            conv1d,
        };
        let (attn, mlp) = (self.attn, self.mlp);
        let attention = match self.attention {
            AttentionLayout::Separate { qkv_bias } => vec![
                ("q_proj", linear(d, q, qkv_bias)),
                ("k_proj", linear(d, kv, qkv_bias)),
                ("v_proj", linear(d, kv, qkv_bias)),
                ("o_proj", linear(q, d, false)),
            ],
            AttentionLayout::Fused => {
                vec![
                    ("c_attn", linear(d, 3 * d, true)),
                    ("c_proj", linear(d, d, true)),
                ]
            }
        };
        let feed_forward = match self.feed_forward {
            MlpLayout::Gated => vec![
                ("gate_proj", linear(d, f, false)),
                ("up_proj", linear(d, f, false)),
                ("down_proj", linear(f, d, false)),
            ],
            MlpLayout::Plain => vec![("c_fc", linear(d, f, true)), ("c_proj", linear(f, d, true))],
        };
        let named = |module: &str, layers: Vec<(&str, LinearSpec)>| {
            layers
                .into_iter()
                .map(move |(n, s)| (format!("{module}.{n}"), s))
                .collect::<Vec<_>>()
        };
        [named(attn, attention), named(mlp, feed_forward)].concat()
    }
}
