//! webdpo: Direct Preference Optimization of a small Llama-style model, in the browser on
//! WebGPU (or the CPU) and natively, from one device-agnostic core.
//!
//! Every function that reads from the device is `async` (the only way to read on WebGPU in
//! wasm); native callers drive them with [`block_on`].
//!
//! One preference, one DPO update: a tiny random model over bytes, a pair tokenized as TRL 1.16
//! tokenizes it, and the update's metrics under TRL's names. The policy starts equal to its
//! frozen reference, so the first loss is `−log σ(0) = ln 2`.
//!
//! ```
//! use webdpo::hf::tokenizer::byte_level_tokenizer_json;
//! use webdpo::train::Trainer;
//! # #[cfg(not(target_arch = "wasm32"))]
//! use webdpo::{
//!     CausalLm, ComputeDevice, DpoTrainer, ModelConfig, PreferencePair, TextTokenizer,
//!     TokenizedPair, TrainConfig, block_on,
//! };
//!
//! # #[cfg(target_arch = "wasm32")]
//! # fn main() {} // in wasm every read is async: see `web`
//! # #[cfg(not(target_arch = "wasm32"))]
//! # fn main() -> webdpo::Result<()> {
//! let device = ComputeDevice::cpu(); // or `block_on(ComputeDevice::gpu())?` with `wgpu`
//! let config = ModelConfig::byte_level(32, 2, 4, 64); // hidden 32, 2 layers, 4 heads
//! let policy = CausalLm::init(&config, 0, &device.device)?;
//! let tokenizer = TextTokenizer::from_bytes(byte_level_tokenizer_json().as_bytes(), &config)?;
//!
//! let pair = PreferencePair {
//!     prompt: "Q: Is the sky blue?\nA:".into(),
//!     chosen: " Yes.".into(),
//!     rejected: " No.".into(),
//! };
//! let pair = TokenizedPair::new(&tokenizer, &pair, Trainer::Dpo)?;
//!
//! // No reference given: DPO's is a frozen copy of the policy as it starts.
//! let mut trainer = DpoTrainer::new(policy, None, TrainConfig::default(), &device.device)?;
//! let batch = block_on(trainer.prepare(&[pair], tokenizer.pad_id()))?;
//! let report = block_on(trainer.step(&batch))?;
//! assert!((report.metrics.loss - std::f64::consts::LN_2).abs() < 1e-6);
//! assert_eq!(report.metrics.rewards_margins, 0.0);
//!
//! // The update moved the policy towards the chosen response.
//! let after = block_on(trainer.evaluate(&batch))?.metrics();
//! assert!(after.rewards_margins > 0.0 && after.loss < std::f64::consts::LN_2);
//! # Ok(())
//! # }
//! ```

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
