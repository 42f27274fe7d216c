//! webdpo: Direct Preference Optimization of a small Llama-style model, in the browser on
//! WebGPU (or the CPU) and natively, from one device-agnostic core.
//!
//! Every function that reads from the device is `async` (the only way to read on WebGPU in
//! wasm); native callers drive them with [`block_on`].

pub mod adapter;
pub mod arch;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dpo;
pub mod error;
pub mod generate;
pub mod logps;
pub mod memory;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod model_dir;
pub mod model_files;
pub mod optimizer;
pub mod pretrain;
pub mod rng;
pub mod storyworld;
pub mod tokenizer;
pub mod trainer;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use config::ModelConfig;
pub use device::ComputeDevice;
pub use error::{Error, ErrorKind, Result};

/// Runs a core future to completion on native targets.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
