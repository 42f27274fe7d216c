//! webdpo: Direct Preference Optimization of a small Llama-style model, in the browser on
//! WebGPU (or the CPU) and natively, from one device-agnostic core.
//!
//! Every function that reads from the device is `async` (the only way to read on WebGPU in
//! wasm); native callers drive them with [`block_on`].

pub mod bench;
pub mod error;
pub mod generate;
pub mod hf;
pub mod model;
pub mod rng;
pub mod runtime;
pub mod storyworld;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, ErrorKind, Result};
pub use generate::{Decoder, PairDecoder, PairStyle, SamplingConfig, generate};
#[cfg(not(target_arch = "wasm32"))]
pub use hf::ModelDir;
pub use hf::{Dtype, ModelFiles, TextTokenizer};
pub use model::{Arch, CausalLm, LoraConfig, ModelConfig};
pub use runtime::{ComputeDevice, MemoryEstimate, MemoryLimits};
pub use train::{
    DpoConfig, DpoMetrics, DpoTrainer, KtoConfig, KtoMetrics, LossType, Message, Optim, PairValues,
    PreferencePair, PretrainConfig, PretrainState, Pretrainer, RatedResponse, RatingReport,
    RatingValues, StepReport, TokenizedPair, TokenizedRating, TrainConfig, Turns,
};

/// Runs a core future to completion on native targets.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
