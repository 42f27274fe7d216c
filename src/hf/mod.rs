//! Hugging Face's file formats, read and written as transformers and PEFT do: safetensors, a
//! model folder (config, weights, shards, companions), PEFT adapters, and tokenizer.json with
//! its chat template; llama.cpp's GGUF, read as gguf-py reads it; and TRL training jobs.

pub mod gguf;
#[cfg(not(target_arch = "wasm32"))]
pub mod model_dir;
pub mod model_files;
pub mod peft;
pub mod safetensors;
pub mod tokenizer;
pub mod trl;

#[cfg(not(target_arch = "wasm32"))]
pub use model_dir::ModelDir;
pub use model_files::ModelFiles;
pub use safetensors::Dtype;
pub use tokenizer::{ChatTemplate, TextTokenizer};
