//! A decoder-only transformer (nanoGPT-sized modules, HF tensor layout) in the three shapes
//! transformers ships for small models: Llama (RMSNorm, rotary positions, grouped-query attention,
//! SwiGLU), Qwen2 (Llama with query/key/value biases) and GPT-2 (LayerNorm, learned positions,
//! GELU, fused Conv1D projections). One forward serves all three.
//!
//! Every linear layer and norm keeps its HF module name, so that [`CausalLm::named_tensors`]
//! yields exactly the names of a HF `model.safetensors`, LoRA targets match as PEFT matches them,
//! and an adapter exports with PEFT's tensor names. Linear weights are held `[in, out]` (see
//! `Linear`) and written in the file's layout.

mod arch;
mod attention;
mod causal_lm;
mod config;
mod layers;
mod lora;

pub use arch::{ARCHS, Arch, ArchSpec, AttentionLayout, LinearSpec, MlpLayout, NormKind};
pub use attention::KvCache;
pub use causal_lm::CausalLm;
pub use config::ModelConfig;
pub(crate) use layers::transposed;
pub use layers::{Linear, NamedTensor, TensorSource, param_id};
pub use lora::{Lora, LoraConfig, lora_target_matches};
